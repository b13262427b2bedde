"""GeorepTable and georep's own attributes in application data, over real HTTP.

The common case: an application reads an item with plain boto3 (so it gets ``_georep``, and
``_georep_ttl`` on a tombstone), changes it and writes it back through ``GeorepTable.put``.
"""

from __future__ import annotations

import re
import threading
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from boto3.dynamodb.conditions import Attr, Key
from boto3.dynamodb.types import Binary, TypeSerializer
from botocore.exceptions import ClientError

from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.core.stored import Stamped, read_item
from service.core.values import same_item
from service.core.version import META_ATTR, TTL_ATTR, Order, compare
from service.engine.wiring import Consumer
from service.errors import BatchWriteError, MetadataError, RawWritePendingError
from service.surfaces.local import REGIONS, LocalReplicaSet, drain, local_replica_set
from service.surfaces.sdk import GeorepTable
from service.surfaces.sdk_resource import ResourceTable
from tests.integration.cluster import make_cluster, wait_for

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
KEY = {"pk": {"S": "user#1"}}


def setup(
    backend: EmbeddedBackend, tmp_path: Path, *, store: bool = True
) -> tuple[LocalReplicaSet, GeorepTable, Any]:
    """Two regions; ``store=False``: tombstones stay in the table (``tombstone_store =
    false``), for the tests about tombstone items."""
    made = local_replica_set(
        backend,
        tmp_path,
        regions=(REGION, "us-east-1"),
        replication="" if store else "tombstone_store = false",
    )
    client = made.client(REGION)
    return made, GeorepTable(client, config=made.config, region=REGION), client


def setup_resource(
    backend: EmbeddedBackend, tmp_path: Path, *, store: bool = True
) -> tuple[LocalReplicaSet, ResourceTable, Any]:
    made, _, client = setup(backend, tmp_path, store=store)
    return made, GeorepTable.resource(client, config=made.config, region=REGION), client


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
    not collect (without the tombstone store: with it, a deleted key has no item to read)."""
    made, table, client = setup(backend, tmp_path, store=False)
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


# -- the application SDK (issue 20): both forms, conditions, batches, reads ---------------------

LOW_LEVEL_ITEM: dict[str, Any] = {
    "pk": {"S": "types#1"},
    "s": {"S": "text"},
    "empty": {"S": ""},
    "n": {"N": "12345678901234567890123456789012345678"},
    "f": {"N": "-0.5"},
    "b": {"B": b"\x00\xff"},
    "ss": {"SS": ["a", "b"]},
    "ns": {"NS": ["1", "2.5"]},
    "bs": {"BS": [b"a", b"\x00"]},
    "t": {"BOOL": True},
    "z": {"NULL": True},
    "l": {"L": [{"N": "1"}, {"S": "two"}, {"NULL": True}, {"M": {"x": {"B": b"\x01"}}}]},
    "m": {"M": {"deep": {"M": {"ss": {"SS": ["c"]}}}, "none": {"L": []}, "nothing": {"M": {}}}},
}
RESOURCE_ITEM: dict[str, Any] = {
    "pk": "types#2",
    "s": "text",
    "empty": "",
    "n": Decimal("12345678901234567890123456789012345678"),
    "f": Decimal("-0.5"),
    "b": b"\x00\xff",
    "ss": {"a", "b"},
    "ns": {Decimal(1), Decimal("2.5")},
    "bs": {b"a", b"\x00"},
    "t": True,
    "z": None,
    "l": [Decimal(1), "two", None, {"x": Binary(b"\x01")}],
    "m": {"deep": {"ss": {"c"}}, "none": [], "nothing": {}},
}


def wire(item: dict[str, Any]) -> dict[str, Any]:
    """A resource-form item in DynamoDB JSON (boto3's TypeSerializer)."""
    return {name: TypeSerializer().serialize(value) for name, value in item.items()}


def test_every_dynamodb_type_round_trips_through_the_sdk_in_both_forms(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Low-level DynamoDB JSON and resource-style Python values, written and read back by
    get_item, query, scan and update_item's ALL_NEW: the same values, stored stamped (the
    metadata describes exactly this data), without georep's attributes."""
    made, table, client = setup(backend, tmp_path)
    resource = GeorepTable.resource(client, config=made.config, region=REGION)
    table.put_item(Item=LOW_LEVEL_ITEM)
    resource.put_item(Item=RESOURCE_ITEM)
    for expected in (LOW_LEVEL_ITEM, wire(RESOURCE_ITEM)):
        key = {"pk": expected["pk"]}
        assert same_item(expected, table.get_item(Key=key, ConsistentRead=True)["Item"])
        queried = table.query(
            KeyConditionExpression="pk = :k", ExpressionAttributeValues={":k": key["pk"]}
        )["Items"]
        assert [True] == [same_item(expected, item) for item in queried]
        stored = made.client(REGION).get_item(TableName=made.table_name, Key=key)["Item"]
        assert isinstance(read_item(stored, settings=table.settings), Stamped)
    scanned = {item["pk"]["S"]: item for item in table.scan()["Items"]}
    assert same_item(LOW_LEVEL_ITEM, scanned["types#1"])
    assert same_item(wire(RESOURCE_ITEM), scanned["types#2"])

    as_python = resource.get_item(Key={"pk": "types#1"})["Item"]
    assert same_item(LOW_LEVEL_ITEM, wire(as_python))
    assert isinstance(as_python["n"], Decimal) and {b"a", b"\x00"} == as_python["bs"]
    assert RESOURCE_ITEM == {
        **resource.get_item(Key={"pk": "types#2"})["Item"],
        "b": b"\x00\xff",
    }
    updated = resource.update_item(
        Key={"pk": "types#2"},
        UpdateExpression="SET m.deep.ss = :c REMOVE z ADD ns :three",
        ExpressionAttributeValues={":c": {"c", "d"}, ":three": {Decimal(3)}},
        ReturnValues="ALL_NEW",
    )["Attributes"]
    assert {"c", "d"} == updated["m"]["deep"]["ss"] and "z" not in updated
    assert {Decimal(1), Decimal("2.5"), Decimal(3)} == updated["ns"]


@pytest.mark.parametrize("store", [True, False], ids=["tombstone-store", "tombstone-items"])
def test_query_and_scan_hide_tombstones_and_metadata_and_paginate(
    backend: EmbeddedBackend, tmp_path: Path, store: bool
) -> None:
    """Deleted items and ``_georep``/``_georep_ttl`` never reach the application, page by
    page; a projection is applied to what is left. With the store (the default) a deleted key
    is absent from the table; without it its tombstone item is there, and hidden."""
    made, resource, _ = setup_resource(backend, tmp_path, store=store)
    for n in range(7):
        resource.put_item(Item={"pk": f"item#{n}", "n": n, "tags": {"x"}})
    for n in (1, 4, 6):
        resource.delete_item(Key={"pk": f"item#{n}"})
    raw = made.client(REGION).scan(TableName=made.table_name)["Items"]
    assert (4 if store else 7) == len(raw) and all(META_ATTR in item for item in raw)

    pages = list(resource.get_paginator("scan").paginate(Limit=2, ConsistentRead=True))
    assert len(pages) >= (2 if store else 4)  # Limit=2 over 4 items, or over 7 read
    seen = sorted(item["pk"] for page in pages for item in page["Items"])
    assert ["item#0", "item#2", "item#3", "item#5"] == seen
    assert all(set(item) == {"pk", "n", "tags"} for page in pages for item in page["Items"])
    assert 4 == sum(page["Count"] for page in pages)

    projected = resource.scan(ProjectionExpression="#n", ExpressionAttributeNames={"#n": "n"})
    assert sorted([0, 2, 3, 5]) == sorted(item["n"] for item in projected["Items"])
    assert all(set(item) == {"n"} for item in projected["Items"])
    deleted = resource.query(KeyConditionExpression=Key("pk").eq("item#4"))
    assert (0, []) == (deleted["Count"], deleted["Items"])
    assert (
        1 == resource.query(KeyConditionExpression=Key("pk").eq("item#5"), Select="COUNT")["Count"]
    )
    assert {} == resource.get_item(Key={"pk": "item#6"})


@pytest.mark.parametrize("operation", ["put_item", "update_item", "delete_item"])
def test_an_application_condition_that_fails_raises_and_writes_nothing(
    backend: EmbeddedBackend, tmp_path: Path, operation: str
) -> None:
    """boto3's own ConditionalCheckFailedException, at once (no retry), the table unchanged;
    with ReturnValuesOnConditionCheckFailure=ALL_OLD the item as the application sees it."""
    made, resource, client = setup_resource(backend, tmp_path)
    resource.put_item(Item={"pk": "user#1", "state": "active", "n": 1})
    before = raw_get(made, client)
    request: dict[str, Any] = {
        "put_item": {"Item": {"pk": "user#1", "state": "new"}},
        "update_item": {
            "Key": {"pk": "user#1"},
            "UpdateExpression": "ADD n :one",
            "ExpressionAttributeValues": {":one": 1},
        },
        "delete_item": {"Key": {"pk": "user#1"}},
    }[operation]
    with pytest.raises(client.exceptions.ConditionalCheckFailedException) as failed:
        getattr(resource, operation)(
            **request,
            ConditionExpression=Attr("state").eq("closed"),
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )
    assert "ConditionalCheckFailedException" == failed.value.response["Error"]["Code"]
    assert {**KEY, "state": {"S": "active"}, "n": {"N": "1"}} == failed.value.response["Item"]
    assert before == raw_get(made, client)


def test_a_condition_on_a_deleted_item_sees_no_item(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """``attribute_not_exists`` holds on a deleted item (DynamoDB alone would judge it on the
    tombstone, which has a key); a create-only put succeeds once and then fails."""
    _, resource, client = setup_resource(backend, tmp_path)
    create = {"ConditionExpression": Attr("pk").not_exists()}
    resource.put_item(Item={"pk": "user#1", "v": 1}, **create)
    resource.delete_item(Key={"pk": "user#1"})
    resource.put_item(Item={"pk": "user#1", "v": 2}, **create)
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        resource.put_item(Item={"pk": "user#1", "v": 3}, **create)
    assert {"pk": "user#1", "v": 2} == resource.get_item(Key={"pk": "user#1"})["Item"]


def test_a_condition_dynamodb_finds_false_at_write_time_raises_and_is_not_retried(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """The application's condition holds on what the SDK read; a raw write lands before the
    SDK's PutItem and changes the data but not ``_georep``, so georep's precondition still
    holds and DynamoDB refuses the application's part: one PutItem, then the exception."""
    made, table, client = setup(backend, tmp_path)
    table.put_item(Item={**KEY, "state": {"S": "active"}})
    # Another application's client (`made.client` hands back the SDK's own, which the hook
    # below watches).
    other = made.session().client(
        "dynamodb", region_name=REGION, endpoint_url=made.backend.endpoint_url
    )
    puts: list[str] = []

    def raw_write_first(**_: Any) -> None:
        puts.append("PutItem")
        if len(puts) == 1:
            other.update_item(
                TableName=made.table_name,
                Key=KEY,
                UpdateExpression="SET #s = :closed",
                ExpressionAttributeNames={"#s": "state"},
                ExpressionAttributeValues={":closed": {"S": "closed"}},
            )

    client.meta.events.register("before-call.dynamodb.PutItem", raw_write_first)
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        table.update_item(
            Key=KEY,
            UpdateExpression="SET visits = :one",
            ConditionExpression="#s = :active",
            ExpressionAttributeNames={"#s": "state"},
            ExpressionAttributeValues={":active": {"S": "active"}, ":one": {"N": "1"}},
        )
    assert ["PutItem"] == puts
    assert {**KEY, "state": {"S": "closed"}} == table.get(KEY)


def test_application_placeholders_named_like_georeps_own_do_not_collide(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """``#g``, ``:g`` and ``#pk`` are georep's placeholders too; the application's mean what
    the application says."""
    _, table, client = setup(backend, tmp_path)
    table.put_item(Item={**KEY, "g": {"S": "one"}})
    condition = {
        "ConditionExpression": "#g = :g AND attribute_exists(#pk)",
        "ExpressionAttributeNames": {"#g": "g", "#pk": "pk"},
    }
    table.put_item(
        Item={**KEY, "g": {"S": "two"}}, **condition, ExpressionAttributeValues={":g": {"S": "one"}}
    )
    with pytest.raises(client.exceptions.ConditionalCheckFailedException):
        table.put_item(
            Item={**KEY, "g": {"S": "three"}},
            **condition,
            ExpressionAttributeValues={":g": {"S": "one"}},
        )
    assert {**KEY, "g": {"S": "two"}} == table.get(KEY)


def test_an_expression_dynamodb_refuses_raises_a_validation_exception_and_writes_nothing(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    made, table, client = setup(backend, tmp_path)
    table.put_item(Item={**KEY, "n": {"N": "1"}})
    before = raw_get(made, client)
    for request in (
        {"UpdateExpression": "SET missing.x = :v", "ExpressionAttributeValues": {":v": {"N": "1"}}},
        {
            "UpdateExpression": "SET n = :v",
            "ExpressionAttributeValues": {":v": {"N": "1"}, ":unused": {"N": "2"}},
        },
        {"UpdateExpression": "SET pk = :v", "ExpressionAttributeValues": {":v": {"S": "x"}}},
    ):
        with pytest.raises(ClientError) as refused:
            table.update_item(Key=KEY, **request)
        assert "ValidationException" == refused.value.response["Error"]["Code"]
    assert before == raw_get(made, client)


def test_two_threads_updating_one_item_both_apply_every_update(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Contention is retried: every ADD of both threads is in the final item."""
    _, resource, _ = setup_resource(backend, tmp_path)
    per_thread = 12

    def add(thread: int) -> None:
        for n in range(per_thread):
            resource.update_item(
                Key={"pk": "counter"},
                UpdateExpression="ADD hits :one, seen :me",
                ExpressionAttributeValues={":one": 1, ":me": {f"{thread}-{n}"}},
            )

    threads = [threading.Thread(target=add, args=(t,)) for t in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    item = resource.get_item(Key={"pk": "counter"}, ConsistentRead=True)["Item"]
    assert 2 * per_thread == item["hits"]
    assert {f"{t}-{n}" for t in range(2) for n in range(per_thread)} == item["seen"]


def test_a_batch_writer_makes_every_request_its_own_stamped_write(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """boto3's BatchWriter over the SDK: no BatchWriteItem reaches DynamoDB (it cannot carry
    a condition); every item is a stamped version, deletes are tombstones (in the table here,
    ``tombstone_store = false``, to see them with a Scan)."""
    made, table, client = setup(backend, tmp_path, store=False)
    resource = GeorepTable.resource(client, config=made.config, region=REGION)
    batches: list[str] = []
    client.meta.events.register(
        "before-call.dynamodb.BatchWriteItem", lambda **_: batches.append("BatchWriteItem")
    )
    with resource.batch_writer() as batch:
        for n in range(30):
            batch.put_item(Item={"pk": f"k{n}", "n": n})
        batch.delete_item(Key={"pk": "k3"})
        batch.put_item(Item={"pk": "k4", "n": 40})
    assert [] == batches
    stored = made.scan(REGION)
    assert 30 == len(stored)
    versions = [read_item(item, settings=table.settings) for item in stored.values()]
    assert all(isinstance(v, Stamped) for v in versions)
    assert ["k3"] == [
        v.version.data["pk"]["S"]
        for v in versions
        if isinstance(v, Stamped) and v.version.meta.deleted
    ]
    assert {"pk": "k4", "n": 40} == resource.get_item(Key={"pk": "k4"})["Item"]
    assert 29 == resource.scan(Select="COUNT")["Count"]


def test_updates_of_one_item_in_two_regions_replicate_and_converge_on_both(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Under field rules, two regions update different attributes of one item before either
    sees the other's update; with the consumers running, every region ends with both, because
    an update written whole stamps only the attributes it changed."""
    cluster = make_cluster(
        backend,
        tmp_path,
        resolver="rules",
        resolver_options='{ rule = "tests.property.example_rules:profile" }',
    )
    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    eu, us = (
        GeorepTable.resource(cluster.client(r), config=cluster.config, region=r)
        for r in REGIONS[:2]
    )
    key = {"pk": "user#1"}
    eu.put_item(Item={**key, "city": "Oslo", "nick": "ada", "tags": {"a"}, "old": "x"})
    drain(consumers)
    eu.update_item(
        Key=key,
        UpdateExpression="SET nick = :nick ADD tags :b",
        ExpressionAttributeValues={":nick": "Ada L.", ":b": {"b"}},
    )
    us.update_item(
        Key=key,
        UpdateExpression="SET city = :city ADD tags :c REMOVE #old",
        ExpressionAttributeNames={"#old": "old"},
        ExpressionAttributeValues={":city": "Paris", ":c": {"c"}},
    )
    stop = threading.Event()
    pollers = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
    for thread in pollers:
        thread.start()
    try:
        expected = {**key, "city": "Paris", "nick": "Ada L.", "tags": {"a", "b", "c"}}
        for region in REGIONS:
            table = GeorepTable.resource(
                cluster.client(region), config=cluster.config, region=region
            )
            wait_for(
                lambda t=table: expected == t.get_item(Key=key, ConsistentRead=True).get("Item"),
                timeout=30,
                what=f"{region} did not receive both updates",
            )
    finally:
        stop.set()
        for thread in pollers:
            thread.join()
    drain(consumers)
    for consumer in consumers:
        consumer.close()
    assert cluster.identical()


def test_the_readmes_sdk_example_runs_as_written(backend: EmbeddedBackend, tmp_path: Path) -> None:
    """README, "Writing: through the SDK, or with plain boto3": its Python block, with only
    the configuration file and the client pointed at the test's backend."""
    made, _, client = setup(backend, tmp_path)
    readme = (Path(__file__).resolve().parents[2] / "README.md").read_text()
    section = readme[readme.index("## Writing: through the SDK") :]
    (code,) = re.findall(r"```python\n(.*?)```", section[: section.index("\n## ")], flags=re.S)
    for written, here in (
        ('load_config("georep.toml")', f"load_config({str(made.config_path)!r})"),
        ('boto3.client("dynamodb", region_name="eu-west-1")', "test_client"),
    ):
        assert written in code
        code = code.replace(written, here)
    namespace: dict[str, Any] = {"test_client": client}
    exec(compile(code, "README.md", "exec"), namespace)
    item = namespace["users"].get_item(Key={"pk": "user#1"})["Item"]
    assert {"pk": "user#1", "city": "Paris", "visits": 1, "tags": {"new", "vip"}} == item
    assert {} == namespace["users"].get_item(Key={"pk": "user#3"})


def test_a_batch_request_that_fails_is_reported_and_the_others_are_written(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Each request of a batch is its own write: one refused (an application ``_georep_ttl``)
    raises BatchWriteError naming it once the others are written."""
    _, table, _ = setup(backend, tmp_path)
    bad = {"PutRequest": {"Item": {"pk": {"S": "bad"}, TTL_ATTR: {"N": "1"}}}}
    good = [{"PutRequest": {"Item": {"pk": {"S": f"good{n}"}}}} for n in range(3)]
    with pytest.raises(BatchWriteError) as failed:
        table.batch_write_item(RequestItems={table.table_name: [*good[:2], bad, good[2]]})
    ((request, error),) = failed.value.failures
    assert bad == request and isinstance(error, MetadataError)
    assert ["good0", "good1", "good2"] == sorted(i["pk"]["S"] for i in table.scan()["Items"])


def test_under_merge_rules_a_write_over_a_raw_item_waits_for_its_adoption(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """An item written with plain boto3 and not adopted yet: under merge rules the SDK's write
    over it waits (reading again between pauses) and raises RawWritePendingError, having
    written nothing, if no adoption comes; once this region's consumer has adopted the raw
    write, the same write goes through and succeeds the adoption."""
    cluster = make_cluster(
        backend,
        tmp_path,
        resolver="rules",
        resolver_options='{ rule = "tests.property.example_rules:profile" }',
    )
    client = cluster.client(REGION)
    raw = {"pk": {"S": "user#1"}, "tags": {"SS": ["raw"]}}
    client.put_item(TableName=cluster.config.table_name(REGION), Item=raw)
    pauses: list[float] = []
    table = GeorepTable(client, config=cluster.config, region=REGION, sleep=pauses.append)

    with pytest.raises(RawWritePendingError, match="has not adopted yet"):
        table.put({"pk": {"S": "user#1"}, "tags": {"SS": ["sdk"]}})

    assert len(pauses) > 5 and 9 <= sum(pauses) <= 11
    assert (
        raw
        == client.get_item(
            TableName=cluster.config.table_name(REGION), Key=KEY, ConsistentRead=True
        )["Item"]
    )
    consumer = Consumer(
        cluster.config, region=REGION, session=cluster.session(), metrics=MemoryMetrics()
    )
    consumer.setup()
    drain([consumer])
    written = table.put({"pk": {"S": "user#1"}, "tags": {"SS": ["sdk"]}})
    stored = read_item(raw_get_in(cluster, client), settings=table.settings)
    assert isinstance(stored, Stamped) and written.meta == stored.version.meta
    assert {"SS": ["sdk"]} == stored.version.data["tags"]


def raw_get_in(cluster: Any, client: Any) -> dict[str, Any]:
    item: dict[str, Any] = client.get_item(
        TableName=cluster.config.table_name(REGION), Key=KEY, ConsistentRead=True
    )["Item"]
    return item
