"""``--json`` a script can rely on (issue 18, point 10): every reporting command, check-rule
and deploy render included, prints snake_case keys and typed values (numbers as numbers,
lists as lists, an item's key as an object), under the names its table shows with spaces;
``conflicts list`` filters by key and time and keeps the most recent N."""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.engine.wiring import Consumer
from service.surfaces.cli import main
from service.surfaces.commands.conflicts import COLUMNS as CONFLICT_COLUMNS
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster

pytestmark = pytest.mark.integration

SNAKE = re.compile(r"^[a-z][a-z0-9_]*$")
# Objects that hold other people's names: an item's data and key, a stream record, the
# consumer's shard counts by phase, each destination's outcome by region.
FREE_FORM = {"value", "key", "record", "shards", "destinations"}


def names_in(document: Any, path: str = "") -> Iterator[str]:
    """Every object key of a JSON document, except inside the free-form objects."""
    if isinstance(document, dict):
        for name, value in document.items():
            yield f"{path}.{name}"
            if name not in FREE_FORM:
                yield from names_in(value, f"{path}.{name}")
    elif isinstance(document, list):
        for value in document:
            yield from names_in(value, f"{path}[]")


def with_conflicts(backend: EmbeddedBackend, tmp_path: Path) -> Cluster:
    """Two regions write ``cart#1`` before any consumer runs: a conflict per destination."""
    cluster = make_cluster(backend, tmp_path)
    for region in REGIONS[:2]:
        GeorepTable(cluster.client(region), config=cluster.config, region=region).put(
            {"pk": {"S": "cart#1"}, "items": {"SS": [region]}}
        )
    consumers = [Consumer(cluster.config, region=r, session=cluster.session()) for r in REGIONS]
    try:
        drain(consumers)
    finally:
        for consumer in consumers:
            consumer.close()
    return cluster


def run_json(
    capsys: pytest.CaptureFixture[str], cluster: Cluster, *argv: str
) -> tuple[int, dict[str, Any]]:
    capsys.readouterr()
    code = main([*argv, "-c", str(cluster.config_path), "--json"])
    return code, json.loads(capsys.readouterr().out)


def test_every_reporting_command_prints_snake_case_keys_and_typed_values(
    backend: EmbeddedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = with_conflicts(backend, tmp_path)
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    documents = {}
    for argv in (
        ["init"],
        ["status"],
        ["verify", "--show"],
        ["verify", "--key", "cart#1", "--show"],
        ["conflicts", "list"],
        ["dlq", "list", "--region", REGIONS[0]],
        ["backfill", "--from", REGIONS[0]],
        ["check-rule"],
    ):
        code, documents[" ".join(argv)] = run_json(capsys, cluster, *argv)
        assert 0 == code, (argv, documents[" ".join(argv)])
    bad = {
        command: sorted({n for n in names_in(doc) if not SNAKE.match(n.rsplit(".", 1)[-1])})
        for command, doc in documents.items()
    }
    assert {command: [] for command in documents} == bad

    conflicts = documents["conflicts list"]
    row = conflicts["rows"][0]
    assert set(CONFLICT_COLUMNS) == set(row)
    assert {"pk": "cart#1"} == row["key"]  # an object, not "pk=cart#1"
    assert isinstance(row["at"], int | float) and row["winner"] in ("existing", "incoming", None)
    assert REGIONS == tuple(conflicts["summary"]["regions"])  # a list, not "a, b, c"
    status = documents["status"]["summary"]
    assert ([], [], 0) == (status["needing_repair"], status["unreadable"], status["dead_letters"])
    verify = documents["verify --key cart#1 --show"]
    held = [v["value"]["items"] for v in verify["values"]]  # lww: one write won, everywhere
    assert [held[0]] * len(REGIONS) == held and held[0] in ([r] for r in REGIONS[:2])
    assert "built in" == documents["check-rule"]["summary"]["result"]
    assert isinstance(documents["backfill --from eu-west-1"]["summary"]["elapsed_seconds"], float)


def test_conflicts_list_filters_by_key_and_time_and_keeps_the_most_recent(
    backend: EmbeddedBackend,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    cluster = with_conflicts(backend, tmp_path)
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    _, everything = run_json(capsys, cluster, "conflicts", "list")
    rows = everything["rows"]
    assert len(rows) >= 2
    assert rows == run_json(capsys, cluster, "conflicts", "list", "--key", "cart#1")[1]["rows"]
    assert [] == run_json(capsys, cluster, "conflicts", "list", "--key", "cart#2")[1]["rows"]
    assert rows[-1:] == run_json(capsys, cluster, "conflicts", "list", "--limit", "1")[1]["rows"]
    assert rows == run_json(capsys, cluster, "conflicts", "list", "--since", "1h")[1]["rows"]
    later = run_json(capsys, cluster, "conflicts", "list", "--since", "2999-01-01T00:00:00")
    assert ([], len(rows)) == (later[1]["rows"], later[1]["summary"]["logged"])
    capsys.readouterr()
    with pytest.raises(SystemExit) as usage:  # argparse: the usage, then the error
        main(["conflicts", "list", "-c", str(cluster.config_path), "--since", "soon"])
    assert 2 == usage.value.code
    assert "is neither a duration" in capsys.readouterr().err
