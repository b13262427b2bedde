"""The conflict log over the moto server: two regions write one key concurrently, every
region's consumer drains, and each merge written is in the conflict table of the region whose
consumer wrote it, once."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from service.adapters.backends import EmbeddedBackend
from service.core.stored import Stamped, read_item
from service.engine.wiring import Consumer, conflict_log_for
from service.surfaces.cli import main
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, make_cluster

pytestmark = pytest.mark.integration


def test_a_concurrent_write_in_two_regions_is_logged_once_per_destination(
    backend: EmbeddedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """r0 and r1 write "k" before any consumer runs. r0's consumer merges at r1 and logs it in
    r0's table; r1's merges at r0 and logs it in r1's; r2 merges whichever came second. So
    three entries, one per destination, each naming both writes and the winner every region
    now holds; draining again (a replay of nothing new) adds none."""
    cluster = make_cluster(backend, tmp_path)
    first, second, third = REGIONS
    key = {"pk": {"S": "k"}}
    written = {
        region: GeorepTable(cluster.client(region), config=cluster.config, region=region).put(
            {**key, "v": {"S": region}}
        )
        for region in (first, second)
    }
    consumers = [Consumer(cluster.config, region=r, session=cluster.session()) for r in REGIONS]
    try:
        drain(consumers)
        logs = {}
        for region in REGIONS:
            log = conflict_log_for(cluster.config, cluster.client(region))
            assert log is not None
            logs[region] = log
        entries = {region: logs[region].entries() for region in REGIONS}
        drain(consumers)
        assert entries == {region: logs[region].entries() for region in REGIONS}
    finally:
        for consumer in consumers:
            consumer.close()

    assert cluster.identical()
    final = read_item(cluster.scan(first)["k"], settings=cluster.config.settings())
    assert isinstance(final, Stamped)
    logged = [entry for found in entries.values() for entry in found]
    assert sorted(REGIONS) == sorted(e.destination for e in logged)
    assert [second] == [e.destination for e in entries[first] if e.destination != third]
    assert [first] == [e.destination for e in entries[second] if e.destination != third]
    assert [] == entries[third]  # r2 wrote nothing, so its consumer merged nothing
    writes = {v.meta.write_id for v in written.values() if v is not None}
    for entry in logged:
        assert key == entry.key
        assert entry.source in (first, second)
        assert entry.destination != entry.source
        assert writes == {entry.existing.write_id, entry.incoming.write_id}
        assert ("lww", final.version.meta.write_id) == (entry.resolver, entry.result_write_id)
        assert entry.winner in ("existing", "incoming")

    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)  # the CLI's clients reach the same database
    capsys.readouterr()
    assert 0 == main(["conflicts", "list", "-c", str(cluster.config_path), "--json"])
    listed = json.loads(capsys.readouterr().out)
    assert sorted(e.id for e in logged) == sorted(row["id"] for row in listed["rows"])
    assert all({"pk": "k"} == row["key"] for row in listed["rows"])
    assert 0 == main(["conflicts", "list", "-c", str(cluster.config_path), "--region", third])


def test_raw_items_backfilled_then_consumed_log_no_conflict_over_moto(
    backend: EmbeddedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Issue 16, finding 6, as a new user ran it: raw items written with no consumer running,
    ``georep backfill``, then the consumers. Each item was written once, so ``georep
    conflicts list`` lists nothing (it listed one entry per item and destination, winner
    ``incoming``: an adoption meeting the backfill stamp of its own data)."""
    cluster = make_cluster(backend, tmp_path)
    source = REGIONS[0]
    for i in range(12):
        cluster.client(source).put_item(
            TableName=cluster.table_name, Item={"pk": {"S": f"k{i}"}, "v": {"N": str(i)}}
        )
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    config = str(cluster.config_path)
    assert 0 == main(["backfill", "--from", source, "-c", config])
    consumers = [Consumer(cluster.config, region=r, session=cluster.session()) for r in REGIONS]
    try:
        drain(consumers)
    finally:
        for consumer in consumers:
            consumer.close()
    assert cluster.identical()
    assert 12 == len(cluster.scan(REGIONS[1]))
    capsys.readouterr()
    assert 0 == main(["conflicts", "list", "-c", config, "--json"])
    assert [] == json.loads(capsys.readouterr().out)["rows"]
