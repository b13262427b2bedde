"""GeorepTable and georep's own attributes in application data, over real HTTP.

The common case: an application reads an item with plain boto3 (so it gets ``_georep``, and
``_georep_ttl`` on a tombstone), changes it and writes it back through ``GeorepTable.put``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.core.stored import Stamped, read_item
from service.core.version import META_ATTR, TTL_ATTR, Order, compare
from service.errors import MetadataError
from service.surfaces.local import LocalReplicaSet, local_replica_set
from service.surfaces.sdk import GeorepTable

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
KEY = {"pk": {"S": "user#1"}}


def setup(backend: EmbeddedBackend, tmp_path: Path) -> tuple[LocalReplicaSet, GeorepTable, Any]:
    made = local_replica_set(backend, tmp_path, regions=(REGION, "us-east-1"))
    client = made.client(REGION)
    return made, GeorepTable(client, config=made.config, region=REGION), client


def raw_get(made: LocalReplicaSet, client: Any) -> dict[str, Any]:
    item: dict[str, Any] = client.get_item(TableName=made.table_name, Key=KEY, ConsistentRead=True)[
        "Item"
    ]
    return item


def test_an_item_read_with_boto3_and_written_back_through_the_sdk_is_a_stamped_successor(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """The copied ``_georep`` is dropped: what is stored is a properly stamped version (its
    metadata describes exactly its data) whose vector succeeds the version that was read."""
    made, table, client = setup(backend, tmp_path)
    table.put({**KEY, "name": {"S": "Ada"}, "n": {"N": "1"}})
    read = raw_get(made, client)
    assert META_ATTR in read
    before = read_item(read, settings=table.settings)
    assert isinstance(before, Stamped)

    changed = {**read, "name": {"S": "Ada L."}}
    written = table.put(changed)

    stored = read_item(raw_get(made, client), settings=table.settings)
    assert isinstance(stored, Stamped)
    assert {**KEY, "name": {"S": "Ada L."}, "n": {"N": "1"}} == dict(stored.version.data)
    assert written.meta == stored.version.meta
    assert Order.AFTER == compare(stored.version.meta, before.version.meta)
    assert {"name": {"S": "Ada L."}, "n": {"N": "1"}, **KEY} == table.get(KEY)


def test_a_tombstone_read_with_boto3_and_written_back_is_a_live_stamped_item_without_expiry(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """A deleted item read with boto3 carries the tombstone's ``_georep_ttl``; writing it back
    with new data brings the item back as a stamped successor of the tombstone that TTL will
    not collect."""
    made, table, client = setup(backend, tmp_path)
    table.put({**KEY, "name": {"S": "Ada"}})
    table.delete(KEY)
    tombstone = raw_get(made, client)
    assert TTL_ATTR in tombstone
    deleted = read_item(tombstone, settings=table.settings)
    assert isinstance(deleted, Stamped)
    assert deleted.version.meta.deleted

    table.put({**tombstone, "name": {"S": "Ada again"}})

    item = raw_get(made, client)
    assert TTL_ATTR not in item
    stored = read_item(item, settings=table.settings)
    assert isinstance(stored, Stamped)
    assert not stored.version.meta.deleted
    assert Order.AFTER == compare(stored.version.meta, deleted.version.meta)
    assert {**KEY, "name": {"S": "Ada again"}} == table.get(KEY)


def test_a_ttl_attribute_set_by_the_application_is_refused_and_nothing_is_written(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """``_georep_ttl`` on a live item is refused (the table's TTL collects tombstones only)
    rather than silently dropped (the item would never expire) or stored (as a raw write)."""
    made, table, client = setup(backend, tmp_path)
    expiring = {**KEY, "name": {"S": "Ada"}, TTL_ATTR: {"N": "1700000000"}}

    with pytest.raises(MetadataError, match=f"{TTL_ATTR} is georep's tombstone expiry"):
        table.put(expiring)

    assert "Item" not in client.get_item(TableName=made.table_name, Key=KEY)


def test_put_if_unchanged_writes_over_what_was_read_and_nothing_once_it_changed(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """The read-modify-write merge rules need: a write succeeding exactly the item read, and
    None (nothing written) when another write came in between."""
    made, table, client = setup(backend, tmp_path)
    assert table.put_if_unchanged({**KEY, "n": {"N": "1"}}, read=None) is not None
    assert table.put_if_unchanged({**KEY, "n": {"N": "9"}}, read=None) is None  # it exists now
    read = raw_get(made, client)
    table.put({**KEY, "n": {"N": "2"}})  # another writer, after the read
    assert table.put_if_unchanged({**read, "n": {"N": "3"}}, read=read) is None
    assert {**KEY, "n": {"N": "2"}} == table.get(KEY)
    read = raw_get(made, client)
    written = table.put_if_unchanged({**read, "n": {"N": "4"}}, read=read)
    assert written is not None
    before = read_item(read, settings=table.settings)
    assert isinstance(before, Stamped)
    assert Order.AFTER == compare(written.meta, before.version.meta)
    assert {**KEY, "n": {"N": "4"}} == table.get(KEY)
