"""``georep status`` and ``georep dlq`` as subprocesses against the moto server: exit codes,
what they print, and ``--json`` documents that parse."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.checkpoints import DynamoCheckpointTable
from service.adapters.deadletter import DynamoDeadLetters
from service.adapters.streams_memory import client_error
from service.config import load_config
from service.engine.wiring import Consumer
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
FIRST, SECOND, THIRD = REGIONS


def georep(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    """``georep ARGS -c <the cluster's georep.toml>`` in a child process, wide enough that
    rich does not wrap the tables' cells."""
    return subprocess.run(
        [sys.executable, "-m", "service.surfaces.cli", *args, "-c", str(cluster.config_path)],
        env={**os.environ, **cluster.env(), "COLUMNS": "250", "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )


def georep_json(cluster: Cluster, *args: str) -> tuple[int, dict[str, Any]]:
    done = georep(cluster, *args, "--json")
    assert "" == done.stderr.strip() or done.returncode != 0, done.stderr
    return done.returncode, json.loads(done.stdout)


def consumers(cluster: Cluster, config_path: Path | None = None) -> list[Consumer]:
    config = load_config(config_path) if config_path else cluster.config
    return [Consumer(config, region=r, session=cluster.session()) for r in REGIONS]


def letters(cluster: Cluster, region: str) -> DynamoDeadLetters:
    table = cluster.config.replication.dead_letter_table
    return DynamoDeadLetters(cluster.client(region), table_name=table)


def by_region(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["region"]: row for row in document["rows"]}


class TrimmedStream:
    """The consumer's DynamoDB Streams client, except that every GetRecords is answered as AWS
    answers once the records after the checkpoint aged out of the 24 h retention (moto never
    trims its streams)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def get_records(self, **_: Any) -> Any:
        raise client_error(
            "TrimmedDataAccessException", "GetRecords", message="the data was trimmed"
        )


def test_status_shows_a_needs_repair_marker_set_by_trimmed_data_and_exits_1(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """A healthy replica set: status exits 0, with each region's shard checkpoint and a
    polling consumer. The first region's consumer then meets trimmed data (the path it takes on
    AWS after a long outage): status prints the marker with its reason and exits 1, as text and
    as JSON. ``georep verify --repair`` then mends the write the trimmed stream lost and, its
    pass clean, clears the marker: status exits 0 again, and so does a plain ``verify``."""
    cluster = make_cluster(backend, tmp_path)
    GeorepTable(cluster.client(FIRST), config=cluster.config, region=FIRST).put(
        {"pk": {"S": "k"}, "v": {"S": "1"}}
    )
    running = consumers(cluster)
    drain(running)

    healthy = georep(cluster, "status")
    assert 0 == healthy.returncode, healthy.stdout + healthy.stderr
    assert "needing repair: none" in healthy.stdout
    assert "polling" in healthy.stdout
    code, document = georep_json(cluster, "status")
    assert 0 == code
    first = by_region(document)[FIRST]
    assert ([], 0, 0.0) == (first["needs_repair"], first["dead_letters"], first["iterator_age"])
    [shard] = [s for s in document["shards"] if s["region"] == FIRST]
    assert shard["checkpoint"] in healthy.stdout  # the position the consumer reached
    assert ("reading", None) == (shard["state"], shard["oldest_unread"])

    consumer = running[0]
    assert consumer.reader is not None
    consumer.reader.streams = TrimmedStream(consumer.reader.streams)
    GeorepTable(cluster.client(FIRST), config=cluster.config, region=FIRST).put(
        {"pk": {"S": "k"}, "v": {"S": "2"}}
    )
    consumer.poll_once()
    for c in running:
        c.close()

    marked = georep(cluster, "status")
    assert 1 == marked.returncode, marked.stdout + marked.stderr
    assert f"needing repair: {FIRST}" in marked.stdout
    assert f"{FIRST} needs repair: shard {shard['shard']}: records after checkpoint" in " ".join(
        marked.stdout.split()
    )
    assert "trimmed before they were read" in " ".join(marked.stdout.split())
    code, document = georep_json(cluster, "status")
    assert 1 == code
    regions = by_region(document)
    [marker] = regions[FIRST]["needs_repair"]
    assert "TrimmedDataAccessException" in marker["reason"]
    assert [] == regions[SECOND]["needs_repair"] == regions[THIRD]["needs_repair"]
    assert 0 < regions[FIRST]["iterator_age"]  # the write nobody could read is waiting
    assert regions[FIRST]["consumer"]["polled_at"] <= time.time()

    # The write the trimmed stream lost is mended by `verify --repair`, which then clears the
    # marker (its pass was clean); status is healthy again.
    repaired = georep(cluster, "verify", "--repair", "--timeout", "3")
    assert 0 == repaired.returncode, repaired.stdout + repaired.stderr
    checkpoints = DynamoCheckpointTable(
        cluster.client(FIRST),
        table_name=cluster.config.replication.checkpoint_table,
        replica_table=cluster.table_name,
    )
    assert [] == checkpoints.repair_markers()
    assert 0 == georep(cluster, "status").returncode
    assert 0 == georep(cluster, "verify").returncode


def test_dlq_replay_re_drives_a_letter_after_its_cause_is_fixed(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """A rule that raises dead-letters a conflict (in the first and second regions). A replay
    while the rule is still broken keeps each letter, once, with the new reason, and exits 1;
    after the rule is fixed, replay applies the letters, removes them and exits 0, and the
    regions converge."""
    cluster = make_cluster(
        backend,
        tmp_path,
        resolver="rules",
        resolver_options='{ rule = "tests.integration.rules:explode_on_conflict", unsafe = true }',
    )
    GeorepTable(cluster.client(FIRST), config=cluster.config, region=FIRST).put(
        {"pk": {"S": "contested"}, "v": {"S": "from the first"}}
    )
    GeorepTable(cluster.client(SECOND), config=cluster.config, region=SECOND).put(
        {"pk": {"S": "contested"}, "v": {"S": "from the second"}}
    )
    running = consumers(cluster)
    drain(running)
    for c in running:
        c.close()
    assert not cluster.identical()

    code, listed = georep_json(cluster, "dlq", "list", "--region", FIRST)
    assert 0 == code
    [letter] = listed["rows"]
    assert ("RuleError", {"pk": "contested"}, 0) == (
        letter["error"],
        letter["key"],
        letter["replays"],
    )
    shown = georep(cluster, "dlq", "show", letter["id"], "--region", FIRST)
    assert 0 == shown.returncode, shown.stderr
    assert "rejected (RuleError: rule" in shown.stdout and "from the first" in shown.stdout
    code, status = georep_json(cluster, "status")
    assert (0, 1) == (code, by_region(status)[FIRST]["dead_letters"])

    config = cluster.config_path.read_text()
    cluster.config_path.write_text(config.replace("explode_on_conflict", "explode_differently"))
    still = georep(cluster, "dlq", "replay", "--all", "--region", FIRST)
    assert 1 == still.returncode, still.stdout + still.stderr
    assert "still failing: 1" in still.stdout
    [kept] = letters(cluster, FIRST).letters()  # the same letter, not a second one
    assert (letter["id"], 1) == (kept.id, kept.replays)
    assert "still broken after the first fix" in kept.reason

    cluster.config_path.write_text(
        config.replace("explode_on_conflict", "newest").replace(", unsafe = true", "")
    )
    for region in (FIRST, SECOND):
        code, replayed = georep_json(cluster, "dlq", "replay", "--all", "--region", region)
        assert 0 == code, replayed
        assert ["applied"] == [row["outcome"] for row in replayed["rows"]]
        assert 0 == letters(cluster, region).count()
    running = consumers(cluster, cluster.config_path)
    drain(running)
    for c in running:
        c.close()
    assert cluster.identical()
    assert 0 == sum(len(c.dead_letters.entries()) for c in running)


def test_unknown_regions_and_letters_are_refused_with_one_line_and_exit_2(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    cluster = make_cluster(backend, tmp_path)
    for args in (
        ("status", "--region", "mars-north-1"),
        ("dlq", "list", "--region", "mars-north-1"),
        ("dlq", "show", "01NOSUCHLETTER0000000000000", "--region", FIRST),
        ("dlq", "replay", "--region", FIRST),
    ):
        done = georep(cluster, *args)
        assert 2 == done.returncode, (args, done.stdout, done.stderr)
        assert 1 == len(done.stderr.strip().splitlines()), done.stderr
    assert 0 == georep(cluster, "dlq", "list", "--region", FIRST).returncode  # no table yet
