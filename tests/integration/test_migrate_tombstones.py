"""Tables written before the tombstone store (issue 22), over real HTTP to the embedded server:
a cluster runs without the store, so its deletes leave tombstone items in every region's
table; the store is turned on and ``georep migrate-tombstones`` (or ``georep init``) moves them.
Plain boto3 then finds no deleted key in any region's table, every store holds its tombstone,
the consumers read the move's REMOVE records as echoes (nothing forwarded, adopted or
restored: the regions stay identical, with no new version), a second run changes nothing, and
a stale put replayed after the move does not bring a key back."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.dynamo import ensure_store_table
from service.adapters.metrics import MemoryMetrics
from service.config import Config, load_config
from service.core.places import read_key
from service.core.stored import Stamped, read_item
from service.core.tombstones import DATA_ATTR, store_key
from service.core.version import Version
from service.engine.wiring import Consumer, replicator_for
from service.surfaces.local import REGIONS, drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import Cluster, make_cluster
from tests.integration.streams import read_stream

pytestmark = pytest.mark.integration


def store_of(cluster: Cluster) -> str:
    """The cluster's store: named after its table, as its other georep tables are (the
    commands' processes share the server's default account with every test of the module)."""
    return f"{cluster.table_name}-tombstones"


def earlier_version(backend: EmbeddedBackend, tmp_path: Path, **options: str) -> Cluster:
    """A cluster as an earlier georep left it: the tombstone store off, so deletes leave
    tombstone items in the tables (its store's name is `store_of`, unused until turned on)."""
    return make_cluster(backend, tmp_path, replication="tombstone_store = false", **options)


def with_store(cluster: Cluster, tmp_path: Path) -> Path:
    """A copy of the cluster's georep.toml with the tombstone store on (`store_of`)."""
    text = cluster.config_path.read_text()
    assert "tombstone_store = false" in text and f'"{store_of(cluster)}"' in text
    path = tmp_path / "store.toml"
    path.write_text(text.replace("tombstone_store = false", "tombstone_store = true"))
    return path


def run_consumers(config: Config, cluster: Cluster, metrics: MemoryMetrics) -> None:
    """Start a consumer per region (from their saved checkpoints), drain every stream, stop."""
    consumers = [
        Consumer(config, region=r, session=cluster.session(), metrics=metrics) for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    try:
        drain(consumers)
    finally:
        for consumer in consumers:
            consumer.finish()  # checkpoints, and releases its leases for the next consumers
            consumer.close()


def georep(cluster: Cluster, *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.surfaces.cli", *argv],
        env={**os.environ, **cluster.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def table_tombstone(cluster: Cluster, region: str, key: dict[str, Any]) -> Version:
    """The tombstone item georep wrote before the store, as plain boto3 reads it."""
    item = (
        cluster.client(region)
        .get_item(TableName=cluster.table_name, Key=key, ConsistentRead=True)
        .get("Item")
    )
    held = read_item(item, settings=cluster.config.settings())
    assert isinstance(held, Stamped) and held.version.meta.deleted, (region, item)
    return held.version


def stored(cluster: Cluster, region: str, key: dict[str, Any]) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        cluster.client(region)
        .get_item(
            TableName=store_of(cluster),
            Key=store_key(cluster.config.table.name, key),
            ConsistentRead=True,
        )
        .get("Item")
    )
    return item


def stream_events(cluster: Cluster, region: str, key: dict[str, Any]) -> list[str]:
    client = cluster.client(region)
    streams = cluster.session().client(
        "dynamodbstreams", region_name=region, endpoint_url=client.meta.endpoint_url
    )
    arn = client.describe_table(TableName=cluster.table_name)["Table"]["LatestStreamArn"]
    return [
        r["eventName"]
        for r in read_stream(streams, arn, expected=1)
        if r["dynamodb"]["Keys"] == key
    ]


def everything(cluster: Cluster, keys: list[dict[str, Any]]) -> dict[str, Any]:
    """Each region's table (a Scan) and store items for ``keys``: what must stay the same."""
    return {r: (cluster.scan(r), [stored(cluster, r, key) for key in keys]) for r in REGIONS}


def assert_moved(cluster: Cluster, config: Config, key: dict[str, Any], tombstone: Version) -> None:
    """``key`` is in no region's table (get_item, Scan), and each region's store holds
    ``tombstone``, the version its tombstone item held."""
    for region in REGIONS:
        client = cluster.client(region)
        got = client.get_item(TableName=cluster.table_name, Key=key, ConsistentRead=True)
        assert "Item" not in got, region
        assert key["pk"]["S"] not in cluster.scan(region), region
        state = read_key(None, stored(cluster, region, key), settings=config.settings())
        assert tombstone == state.tombstone, region


def test_tombstone_items_of_an_earlier_version_move_to_the_store_and_stay_deleted(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    cluster = earlier_version(backend, tmp_path)
    before = MemoryMetrics()
    keys = [{"pk": {"S": name}} for name in ("sdk-deleted", "raw-deleted", "live")]
    sdk_gone, raw_gone, live = keys
    eu = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    stale = eu.put({**sdk_gone, "v": {"S": "before the delete"}})
    eu.put({**raw_gone, "v": {"S": "x"}})
    eu.put({**live, "v": {"S": "stays"}})
    run_consumers(cluster.config, cluster, before)
    us = GeorepTable(cluster.client(REGIONS[1]), config=cluster.config, region=REGIONS[1])
    assert us.delete(sdk_gone) is not None
    cluster.client(REGIONS[2]).delete_item(TableName=cluster.table_name, Key=raw_gone)
    run_consumers(cluster.config, cluster, before)
    # The way earlier versions delete: a tombstone item in every region's table.
    tombstones = {
        key["pk"]["S"]: {r: table_tombstone(cluster, r, key) for r in REGIONS}
        for key in (sdk_gone, raw_gone)
    }
    for name, held in tombstones.items():
        assert 1 == len({v.meta for v in held.values()}), name
    live_before = {r: cluster.scan(r)["live"] for r in REGIONS}

    on = with_store(cluster, tmp_path)
    done = georep(cluster, "init", "-c", str(on), "--json")  # creates the stores, moves too
    assert 0 == done.returncode, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert all("2 tombstones moved to the store" in row["result"] for row in rows), rows
    config = load_config(on)
    for key in (sdk_gone, raw_gone):
        assert_moved(cluster, config, key, tombstones[key["pk"]["S"]][REGIONS[0]])
    for region in REGIONS:
        assert "REMOVE" == stream_events(cluster, region, sdk_gone)[-1], region

    # The consumers, now with the store, read the moves' REMOVE records: echoes.
    after = MemoryMetrics()
    settled = everything(cluster, keys)
    run_consumers(config, cluster, after)
    assert settled == everything(cluster, keys)  # no new version anywhere
    assert 3 * 2 == after.total("dropped_echo")
    assert 0 == after.total("raw_writes_adopted")
    assert live_before == {r: cluster.scan(r)["live"] for r in REGIONS}

    again = georep(cluster, "migrate-tombstones", "-c", str(on), "--json")
    assert 0 == again.returncode, again.stderr
    summary = json.loads(again.stdout)["summary"]
    assert (0, 0, 0, 0) == (
        summary["moved"],
        summary["already_moved"],
        summary["skipped"],
        summary["failed"],
    )
    assert settled == everything(cluster, keys)

    # A stale put replayed after the move (a duplicate record, a lagging region).
    replicator = replicator_for(
        config,
        region=REGIONS[0],
        clients={r: cluster.client(r) for r in REGIONS},
        dead_letters=MemoryDeadLetters(),
        metrics=MemoryMetrics(),
    )
    outcomes = replicator.deliver(stale, REGIONS)
    replicator.close()
    assert {r: "skipped" for r in REGIONS} == {r: d.handled for r, d in outcomes.items()}
    assert settled == everything(cluster, keys)


def test_the_migration_command_refuses_without_the_store_and_dry_runs_before_it_moves(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Under version counters: without the store configured, or created, the command
    refuses (exit 2); ``--dry-run`` counts and writes nothing; ``--segments 2`` moves each
    region's tombstone item into its store, and no region's table keeps it. (Under merge
    rules, which keep the deleted data in the tombstone, the store is refused until it is
    proven there: docs/decisions.md; the pure move of that data is
    test_under_merge_rules_the_deleted_data_moves_into_the_stores_data.)"""
    cluster = earlier_version(backend, tmp_path, resolver="version-counter")
    metrics = MemoryMetrics()
    key = {"pk": {"S": "profile#1"}}
    eu = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    eu.put({**key, "tags": {"SS": ["a", "b"]}, "score": {"N": "7"}})
    run_consumers(cluster.config, cluster, metrics)
    assert eu.delete(key) is not None
    run_consumers(cluster.config, cluster, metrics)
    held = table_tombstone(cluster, REGIONS[1], key)
    assert key == held.data  # a whole-item resolver's tombstone keeps the key only

    refused = georep(cluster, "migrate-tombstones", "-c", str(cluster.config_path))
    assert 2 == refused.returncode
    assert "tombstone store, which is off" in refused.stderr

    on = with_store(cluster, tmp_path)
    missing = georep(cluster, "migrate-tombstones", "-c", str(on))
    assert 2 == missing.returncode  # no store yet: one line, run georep init
    assert f"table {store_of(cluster)}" in missing.stderr and "georep init" in missing.stderr
    for region in REGIONS:
        ensure_store_table(cluster.client(region), table_name=store_of(cluster))
    dry = georep(cluster, "migrate-tombstones", "-c", str(on), "--dry-run", "--json")
    assert 0 == dry.returncode, dry.stderr
    assert 3 == json.loads(dry.stdout)["summary"]["moved"]
    assert held == table_tombstone(cluster, REGIONS[1], key)  # nothing written
    done = georep(cluster, "migrate-tombstones", "-c", str(on), "--segments", "2", "--json")
    assert 0 == done.returncode, done.stderr
    rows = json.loads(done.stdout)["rows"]
    assert {r: 1 for r in REGIONS} == {row["region"]: row["moved"] for row in rows}

    config = load_config(on)
    for region in REGIONS:
        item = stored(cluster, region, key)
        assert item is not None and key == item[DATA_ATTR]["M"], region
        assert held == read_key(None, item, settings=config.settings()).tombstone, region
        assert "Item" not in cluster.client(region).get_item(
            TableName=cluster.table_name, Key=key, ConsistentRead=True
        )
    run_consumers(config, cluster, metrics)
    for region in REGIONS:
        assert key["pk"]["S"] not in cluster.scan(region), region


def test_a_migration_beside_running_consumers_and_writers_deletes_no_write_and_converges(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """The move runs while every region's consumer runs with the store and applications
    write over some of the deleted keys (through the SDK and with plain boto3): no write is
    ever deleted by it, and once the streams drain every region holds the same tables and
    stores, each written key live, every other key absent with its tombstone in the store."""
    import threading

    from service.engine.migrate import migration_for

    cluster = earlier_version(backend, tmp_path)
    names = [f"k{n}" for n in range(12)]
    eu = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    for name in names:
        eu.put({"pk": {"S": name}, "v": {"S": "first"}})
    run_consumers(cluster.config, cluster, MemoryMetrics())
    for name in names:
        assert eu.delete({"pk": {"S": name}}) is not None
    run_consumers(cluster.config, cluster, MemoryMetrics())

    on = with_store(cluster, tmp_path)
    config = load_config(on)
    metrics = MemoryMetrics()
    consumers = [
        Consumer(config, region=r, session=cluster.session(), metrics=metrics) for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    stop = threading.Event()
    threads = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
    for thread in threads:
        thread.start()
    rewritten = {name: f"again-{name}" for name in names[::3]}

    def write() -> None:
        for n, (name, value) in enumerate(rewritten.items()):
            region = REGIONS[n % len(REGIONS)]
            if n % 2:
                cluster.client(region).put_item(
                    TableName=cluster.table_name, Item={"pk": {"S": name}, "v": {"S": value}}
                )
            else:
                sdk = GeorepTable(cluster.client(region), config=config, region=region)
                sdk.put({"pk": {"S": name}, "v": {"S": value}})

    writer = threading.Thread(target=write)
    writer.start()
    try:
        for region in REGIONS:
            result = migration_for(
                config, region=region, client=cluster.client(region), segments=2
            ).run()
            assert result.complete, result
        writer.join()
    finally:
        stop.set()
        for thread in threads:
            thread.join()
    try:
        drain(consumers)
    finally:
        for consumer in consumers:
            consumer.finish()
            consumer.close()
    again = [migration_for(config, region=r, client=cluster.client(r)).run().tally for r in REGIONS]
    assert [0, 0, 0] == [t.moved + t.already_moved for t in again]

    keys = [{"pk": {"S": name}} for name in names]

    def region_state(region: str) -> Any:
        """The region's table, and its store's tombstones (its deletions are its own)."""
        held = [
            read_key(None, stored(cluster, region, k), settings=config.settings()) for k in keys
        ]
        return cluster.scan(region), [s.tombstone for s in held]

    first, *others = (region_state(r) for r in REGIONS)
    for region, other in zip(REGIONS[1:], others, strict=True):
        assert first == other, region
    for region in REGIONS:
        table = cluster.scan(region)
        assert set(rewritten) == set(table), region
        assert rewritten == {name: item["v"]["S"] for name, item in table.items()}, region
        for name in set(names) - set(rewritten):
            state = read_key(
                None, stored(cluster, region, {"pk": {"S": name}}), settings=config.settings()
            )
            assert state.tombstone is not None, (region, name)
    assert 0 == metrics.total("dead_lettered")
