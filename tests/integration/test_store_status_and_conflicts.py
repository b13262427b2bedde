"""``georep status`` and the conflict log with the tombstone store (issue 22), over real HTTP to
the embedded server: status shows each region's store and exits 1 while one is missing or
never collects; an update concurrent with a delete is logged with its tombstone side deleted
and the table it came from (the store), and ``georep conflicts list`` shows it so."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.core.conflicts import ConflictEntry, held_in
from service.engine.wiring import Consumer, conflict_log_for
from service.surfaces.cli import main
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster

pytestmark = pytest.mark.integration

STORE = "georep-tombstones"
FIRST, SECOND, THIRD = REGIONS


def store_cluster(backend: EmbeddedBackend, tmp_path: Path) -> Cluster:
    return make_cluster(
        backend, tmp_path, replication=f'tombstone_store = true\ntombstone_table = "{STORE}"'
    )


def georep(cluster: Cluster, capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str]:
    """``georep ARGS -c <the cluster's georep.toml>`` in this process: exit code, stdout."""
    capsys.readouterr()
    code = main([*args, "-c", str(cluster.config_path)])
    return code, capsys.readouterr().out


def sdk(cluster: Cluster, region: str) -> GeorepTable:
    return GeorepTable(cluster.client(region), config=cluster.config, region=region)


def test_status_shows_each_regions_store_and_exits_1_while_one_is_missing_or_never_collects(
    backend: EmbeddedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Before any consumer ran no region has its store: exit 1, every region named, the note
    says deletes cannot be applied and what creates it. Once the consumers set up (each creates
    its store, TTL on) and a delete replicated: exit 0, each store shown with TTL on. TTL turned
    off by hand in one region: exit 1 naming that region only."""
    cluster = store_cluster(backend, tmp_path)
    for region in REGIONS:  # as a deployment that never ran `georep init` with the store
        cluster.client(region).delete_table(TableName=STORE)
        cluster.client(region).get_waiter("table_not_exists").wait(TableName=STORE)
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "250")

    code, out = georep(cluster, capsys, "status", "--json")
    document = json.loads(out)
    assert 1 == code
    assert sorted(REGIONS) == sorted(document["summary"]["tombstone_store_problems"])
    for row in document["rows"]:
        store = row["tombstone_store"]
        assert (STORE, False, None) == (store["table"], store["exists"], store["item_count"])
        assert "does not exist" in store["problem"], row["region"]
        assert None is row["error"]  # the fields status had are all still there
    code, out = georep(cluster, capsys, "status")
    assert 1 == code
    assert f"{FIRST} tombstone store" in out and f"{STORE} MISSING" in out

    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    try:
        for consumer in consumers:
            consumer.setup()
        key = {"pk": {"S": "gone"}}
        sdk(cluster, FIRST).put({**key, "v": {"S": "1"}})
        drain(consumers)
        assert sdk(cluster, SECOND).delete(key) is not None
        drain(consumers)
    finally:
        for consumer in consumers:
            consumer.close()

    code, out = georep(cluster, capsys, "status", "--json")
    document = json.loads(out)
    assert 0 == code, out
    assert [] == document["summary"]["tombstone_store_problems"]
    for row in document["rows"]:
        store = row["tombstone_store"]
        assert (True, "ENABLED", "_georep_ttl", None) == (
            store["exists"],
            store["ttl"],
            store["ttl_attribute"],
            store["problem"],
        ), row["region"]
        assert isinstance(store["item_count"], int), row["region"]
    code, out = georep(cluster, capsys, "status")
    assert 0 == code and f"{STORE}, ~" in out and "TTL on" in out

    cluster.client(THIRD).update_time_to_live(
        TableName=STORE,
        TimeToLiveSpecification={"Enabled": False, "AttributeName": "_georep_ttl"},
    )
    code, out = georep(cluster, capsys, "status", "--json")
    document = json.loads(out)
    assert (1, [THIRD]) == (code, document["summary"]["tombstone_store_problems"])
    (third,) = [row for row in document["rows"] if row["region"] == THIRD]
    assert "never collected" in third["tombstone_store"]["problem"]


def logged(cluster: Cluster) -> list[tuple[str, ConflictEntry]]:
    found = []
    for region in REGIONS:
        log = conflict_log_for(cluster.config, cluster.client(region))
        assert log is not None
        found += [(region, entry) for entry in log.entries()]
    return found


def rows_for(document: dict[str, Any], entries: list[ConflictEntry]) -> list[dict[str, Any]]:
    ids = {e.id for e in entries}
    return [row for row in document["rows"] if row["id"] in ids]


def test_an_update_concurrent_with_a_delete_is_logged_with_the_tombstone_from_the_store(
    backend: EmbeddedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Two keys, each written everywhere, then changed in two regions before any consumer
    reads: on "revived" a delete in r1 and a later update in r0 (the update wins), on "gone"
    an update in r0 and a later delete in r1 (the delete wins). Where the update met r1's
    tombstone, which lives in r1's store, the entry says the existing side is deleted and
    came from the store; where the delete met r0's live item, the incoming side is deleted,
    the existing one came from r0's table and the result is deleted. `georep conflicts list`
    shows both, as text and as JSON (the fields it had unchanged)."""
    cluster = store_cluster(backend, tmp_path)
    consumers = [Consumer(cluster.config, region=r, session=cluster.session()) for r in REGIONS]
    revived, gone = {"pk": {"S": "revived"}}, {"pk": {"S": "gone"}}
    try:
        for consumer in consumers:
            consumer.setup()
        for key in (revived, gone):
            sdk(cluster, FIRST).put({**key, "v": {"S": "0"}})
        drain(consumers)
        assert sdk(cluster, SECOND).delete(revived) is not None
        update = sdk(cluster, FIRST).put({**revived, "v": {"S": "after the delete"}})
        sdk(cluster, FIRST).put({**gone, "v": {"S": "before the delete"}})
        delete = sdk(cluster, SECOND).delete(gone)
        assert update is not None and delete is not None
        drain(consumers)
    finally:
        for consumer in consumers:
            consumer.close()

    for region in REGIONS:
        table = cluster.client(region)
        item = table.get_item(TableName=cluster.table_name, Key=revived, ConsistentRead=True)
        assert {"S": "after the delete"} == item["Item"]["v"], region
        assert "Item" not in table.get_item(TableName=cluster.table_name, Key=gone), region

    entries = logged(cluster)
    over_tombstone = [e for _, e in entries if e.key == revived and e.existing.deleted]
    over_item = [e for _, e in entries if e.key == gone and e.incoming.deleted]
    assert over_tombstone and over_item, entries
    assert SECOND in {e.destination for e in over_tombstone}  # r1's own store, at least
    for entry in over_tombstone:
        assert (STORE, "store", "stream") == (
            entry.tombstone_table,
            held_in(entry, "existing"),
            held_in(entry, "incoming"),
        )
        assert (False, "incoming", update.meta.write_id) == (
            entry.incoming.deleted,
            entry.winner,
            entry.result_write_id,
        )
        assert not entry.result_deleted
    assert FIRST in {e.destination for e in over_item}
    for entry in over_item:
        assert ("table", False) == (held_in(entry, "existing"), entry.existing.deleted)
        assert (True, "incoming", delete.meta.write_id) == (
            entry.result_deleted,
            entry.winner,
            entry.result_write_id,
        )

    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("COLUMNS", "250")
    code, out = georep(cluster, capsys, "conflicts", "list", "--json")
    assert 0 == code
    document = json.loads(out)
    assert len(entries) == len(document["rows"])
    for row in rows_for(document, over_tombstone):
        existing, incoming = row["existing"], row["incoming"]
        assert (True, "store", STORE) == (
            existing["deleted"],
            existing["held_in"],
            existing["table"],
        )
        assert (False, "stream", cluster.table_name) == (
            incoming["deleted"],
            incoming["held_in"],
            incoming["table"],
        )
        assert ({"pk": "revived"}, "incoming", False) == (
            row["key"],
            row["winner"],
            row["result"]["deleted"],
        )
    for row in rows_for(document, over_item):
        assert (False, "table", cluster.table_name) == (
            row["existing"]["deleted"],
            row["existing"]["held_in"],
            row["existing"]["table"],
        )
        assert (True, True) == (row["incoming"]["deleted"], row["result"]["deleted"])

    code, out = georep(cluster, capsys, "conflicts", "list", "--key", "revived")
    assert 0 == code
    assert f"{SECOND} delete ({STORE})" in out and f"{FIRST} write ({cluster.table_name})" in out
    assert "live" in out
    code, out = georep(cluster, capsys, "conflicts", "list", "--key", "gone")
    assert f"{FIRST} write ({cluster.table_name})" in out and "deleted" in out
