"""TTL deletions, which moto never performs, through the real pipeline over HTTP.

moto records a table's TTL setting but never expires an item (docs/backends.md, moto 6), so a
REMOVE by DynamoDB's TTL cannot be had from it. AWS streams a TTL deletion as the REMOVE record
of an ordinary DeleteItem plus ``userIdentity {"Type": "Service", "PrincipalId":
"dynamodb.amazonaws.com"}`` (GetRecords; Lambda events spell the keys ``type``/``principalId``).
So each test deletes the item in moto (as TTL would), takes moto's own REMOVE record for it,
adds that identity, and hands the record to the consumer's replicator: the record has exactly
the shape DynamoDB emits, and everything after it (parsing, translation, the conditional
writes to every region) is the code that runs in production.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.core.records import parse_record
from service.core.stored import Stamped
from service.engine.wiring import Consumer
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster
from tests.integration.streams import read_stream

pytestmark = pytest.mark.integration

TTL_IDENTITY = {"PrincipalId": "dynamodb.amazonaws.com", "Type": "Service"}
KEY = {"pk": {"S": "k"}}


def replicated(cluster: Cluster, metrics: MemoryMetrics) -> list[Consumer]:
    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=metrics)
        for r in REGIONS
    ]
    drain(consumers)
    return consumers


def removed_by_ttl(cluster: Cluster, region: str, *, by_ttl: bool = True) -> dict[str, Any]:
    """Delete ``KEY`` in ``region`` as TTL would, and return the REMOVE record AWS would
    stream for it (moto's own record of the delete, plus TTL's identity)."""
    client = cluster.client(region)
    client.delete_item(TableName=cluster.table_name, Key=KEY)
    streams = cluster.session().client(
        "dynamodbstreams", region_name=region, endpoint_url=cluster.backend.endpoint_url
    )
    arn = client.describe_table(TableName=cluster.table_name)["Table"]["LatestStreamArn"]
    records = read_stream(streams, arn, expected=1)
    record = copy.deepcopy(records[-1])
    assert "REMOVE" == record["eventName"]
    if by_ttl:
        record["userIdentity"] = dict(TTL_IDENTITY)
    assert by_ttl == parse_record(record).ttl_delete
    return record


def items(cluster: Cluster) -> dict[str, dict[str, Any] | None]:
    return {r: cluster.scan(r).get("k") for r in REGIONS}


def test_a_ttl_removal_of_a_tombstone_is_garbage_collection_and_writes_nothing(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Every region's tombstone carries the same expiry and each region's TTL collects its
    own copy: the REMOVE is dropped as collected, no region is written. (Tombstone items in
    the table, ``tombstone_store = false``: with the store, TTL collects the store's items,
    whose REMOVEs are in no stream georep reads.)"""
    cluster = make_cluster(backend, tmp_path, replication="tombstone_store = false")
    sdk = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    sdk.put({**KEY, "v": {"S": "x"}})
    sdk.delete(KEY)
    metrics = MemoryMetrics()
    consumers = replicated(cluster, metrics)
    before = items(cluster)
    assert all(before.values())
    record = removed_by_ttl(cluster, REGIONS[0])

    results = consumers[0].replicator.process([record])

    assert ["ok"] == [r.status for r in results]
    assert 1 == metrics.total("dropped_collected")
    assert {**before, REGIONS[0]: None} == items(cluster)
    for c in consumers:
        c.close()


def test_the_same_removal_by_a_person_is_put_back_until_the_horizon(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Control for the test above: without TTL's identity the REMOVE of a tombstone is a
    hand deletion, and the tombstone is restored, so the identity is what decided."""
    cluster = make_cluster(backend, tmp_path, replication="tombstone_store = false")
    sdk = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    sdk.put({**KEY, "v": {"S": "x"}})
    sdk.delete(KEY)
    consumers = replicated(cluster, MemoryMetrics())
    before = items(cluster)
    record = removed_by_ttl(cluster, REGIONS[0], by_ttl=False)

    consumers[0].replicator.process([record])

    assert before == items(cluster)
    for c in consumers:
        c.close()


@pytest.mark.parametrize(("policy", "deleted_everywhere"), [("delete", True), ("ignore", False)])
def test_a_ttl_removal_of_a_live_item_follows_the_ttl_live_policy(
    backend: EmbeddedBackend, tmp_path: Path, policy: str, deleted_everywhere: bool
) -> None:
    """An application's own TTL on a live item: ``delete`` replicates it as a delete (the
    key absent from every table, one tombstone in every region's store), ``ignore`` keeps
    the expiry local to the region."""
    cluster = make_cluster(backend, tmp_path, ttl_live_policy=policy)
    GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0]).put(
        {**KEY, "v": {"S": "x"}}
    )
    consumers = replicated(cluster, MemoryMetrics())
    before = items(cluster)
    record = removed_by_ttl(cluster, REGIONS[0])

    consumers[0].replicator.process([record])
    # Not region 0's consumer: its moto stream also holds the plain REMOVE that stood in for
    # TTL's deletion, which on AWS would not exist.
    drain(consumers[1:])

    after = items(cluster)
    if deleted_everywhere:
        assert all(item is None for item in after.values())
        current = {region: cluster.current(region, "k") for region in REGIONS}
        for region, stored in current.items():
            assert isinstance(stored, Stamped), region
            assert stored.version.meta.deleted, region
        assert len({str(stored) for stored in current.values()}) == 1
    else:
        assert {**before, REGIONS[0]: None} == after
    for c in consumers:
        c.close()
