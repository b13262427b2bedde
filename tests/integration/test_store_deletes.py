"""Deletes that look like deletes (issue 22), over real HTTP to the embedded server: with the
tombstone store, a delete made in any region by a plain boto3 client, the resource API or
georep's SDK leaves no item in any region's table once replication settles; each region's
stream carries a REMOVE for it, and its tombstone lives in the region's store."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.dynamo import ensure_store_table
from service.adapters.metrics import MemoryMetrics
from service.core.places import read_key
from service.core.tombstones import store_key
from service.engine.wiring import Consumer
from service.surfaces.local import REGIONS, LocalReplicaSet, drain, local_replica_set
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import make_cluster
from tests.integration.streams import read_stream

pytestmark = pytest.mark.integration

STORE = "georep-tombstones"


def replica_set(backend: EmbeddedBackend, tmp_path: Path) -> tuple[LocalReplicaSet, list[Consumer]]:
    made = local_replica_set(
        backend,
        tmp_path,
        replication=f'tombstone_store = true\ntombstone_table = "{STORE}"',
    )
    consumers = [
        Consumer(made.config, region=r, session=made.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()  # creates each region's store, TTL on
    return made, consumers


def settle(consumers: list[Consumer]) -> None:
    drain(consumers)


def read_everywhere(made: LocalReplicaSet, key: dict[str, Any]) -> dict[str, Any]:
    return {
        r: made.client(r)
        .get_item(TableName=made.table_name, Key=key, ConsistentRead=True)
        .get("Item")
        for r in REGIONS
    }


def stream_events(made: LocalReplicaSet, region: str, key: dict[str, Any]) -> list[str]:
    client = made.client(region)
    streams = made.session().client(
        "dynamodbstreams", region_name=region, endpoint_url=client.meta.endpoint_url
    )
    arn = client.describe_table(TableName=made.table_name)["Table"]["LatestStreamArn"]
    records = read_stream(streams, arn, expected=1)
    return [r["eventName"] for r in records if r["dynamodb"]["Keys"] == key]


def stored(made: LocalReplicaSet, region: str, key: dict[str, Any]) -> dict[str, Any] | None:
    """The region's store item for ``key``, as DynamoDB returns it."""
    item: dict[str, Any] | None = (
        made.client(region)
        .get_item(TableName=STORE, Key=store_key(made.config.table.name, key), ConsistentRead=True)
        .get("Item")
    )
    return item


def assert_deleted_everywhere(made: LocalReplicaSet, key: dict[str, Any]) -> None:
    assert {r: None for r in REGIONS} == read_everywhere(made, key)
    for region in REGIONS:
        client = made.client(region)
        scanned = client.scan(TableName=made.table_name, ConsistentRead=True)["Items"]
        assert key not in [{"pk": item["pk"]} for item in scanned], region
        assert "REMOVE" in stream_events(made, region, key), region
        state = read_key(None, stored(made, region, key), settings=made.config.settings())
        assert state.tombstone is not None and state.tombstone.meta.deleted, region


def test_a_raw_boto3_delete_leaves_no_item_in_any_region(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    made, consumers = replica_set(backend, tmp_path)
    key = {"pk": {"S": "order#1"}}
    made.client(REGIONS[0]).put_item(TableName=made.table_name, Item={**key, "n": {"N": "1"}})
    settle(consumers)
    assert all(read_everywhere(made, key).values())
    made.client(REGIONS[1]).delete_item(TableName=made.table_name, Key=key)
    settle(consumers)
    assert_deleted_everywhere(made, key)
    for consumer in consumers:
        consumer.close()


def test_a_resource_api_delete_leaves_no_item_in_any_region(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    made, consumers = replica_set(backend, tmp_path)
    resource = made.session().resource(
        "dynamodb", region_name=REGIONS[2], endpoint_url=backend.endpoint_url
    )
    table = resource.Table(made.table_name)
    table.put_item(Item={"pk": "order#2", "n": 2})
    settle(consumers)
    table.delete_item(Key={"pk": "order#2"})
    settle(consumers)
    assert_deleted_everywhere(made, {"pk": {"S": "order#2"}})
    for consumer in consumers:
        consumer.close()


def test_an_sdk_delete_leaves_no_item_and_a_write_after_it_lives_again(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    made, consumers = replica_set(backend, tmp_path)
    key = {"pk": {"S": "order#3"}}
    sdk = GeorepTable(made.client(REGIONS[0]), config=made.config, region=REGIONS[0])
    sdk.put({**key, "n": {"N": "3"}})
    settle(consumers)
    assert sdk.delete(key) is not None
    assert made.client(REGIONS[0]).get_item(TableName=made.table_name, Key=key).get("Item") is None
    settle(consumers)
    assert_deleted_everywhere(made, key)
    assert sdk.get(key) is None

    elsewhere = GeorepTable(made.client(REGIONS[1]), config=made.config, region=REGIONS[1])
    elsewhere.put({**key, "n": {"N": "4"}})
    settle(consumers)
    for region, item in read_everywhere(made, key).items():
        assert item is not None and {"N": "4"} == item["n"], region
        stored = (
            made.client(region)
            .get_item(
                TableName=STORE, Key=store_key(made.config.table.name, key), ConsistentRead=True
            )
            .get("Item")
        )
        assert read_key(item, stored, settings=made.config.settings()).tombstone is None, region
    for consumer in consumers:
        consumer.close()


def test_a_backfill_with_the_store_delivers_and_never_brings_a_deleted_key_back(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """`georep backfill` goes through the Replicator's store path: raw items of the source
    reach the destination, and a key whose delete won there (tombstone in its store, the
    source's copy older than it) stays absent from its table."""
    cluster = make_cluster(
        backend, tmp_path, replication=f'tombstone_store = true\ntombstone_table = "{STORE}"'
    )
    source, target = REGIONS[0], REGIONS[1]
    for region in (source, target):
        ensure_store_table(cluster.client(region), table_name=STORE)
    gone = {"pk": {"S": "gone"}}
    old = GeorepTable(cluster.client(source), config=cluster.config, region=source)
    old.put({**gone, "n": {"N": "1"}})  # the source's copy, older than the delete
    there = GeorepTable(cluster.client(target), config=cluster.config, region=target)
    there.put({**gone, "n": {"N": "2"}})
    assert there.delete(gone) is not None
    for i in range(5):
        cluster.client(source).put_item(
            TableName=cluster.table_name, Item={"pk": {"S": f"k{i}"}, "n": {"N": str(i)}}
        )

    done = subprocess.run(
        [
            *(sys.executable, "-m", "service.surfaces.cli", "backfill"),
            *("-c", str(cluster.config_path), "--from", source, "--to", target, "--json"),
        ],
        env={**os.environ, **cluster.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )

    assert 0 == done.returncode, done.stderr
    assert {f"k{i}" for i in range(5)} == set(cluster.scan(target))
    assert (
        cluster.client(target).get_item(TableName=cluster.table_name, Key=gone).get("Item") is None
    )
