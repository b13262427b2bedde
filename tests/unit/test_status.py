"""What ``georep status`` makes of a region, as plain functions of what it read and the time;
and the report it prints (tables that never read values as markup, JSON that parses)."""

from __future__ import annotations

import argparse
import json

import pytest

from service.adapters.checkpoints import RepairMarker
from service.engine.status import (
    RegionView,
    ShardView,
    ago,
    consumer_state,
    is_problem,
    iterator_age,
    notes,
    region_record,
    region_row,
    shard_phase,
    shard_rows,
)
from service.ports import ConsumerStatus, ShardState
from service.surfaces.commands._common import Section, report

NOW = 1_800_000_000.0
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"


def view(**fields: object) -> RegionView:
    base: dict[str, object] = {
        "region": "eu-west-1",
        "table": "orders",
        "stream_arn": ARN,
        "followed": True,
        "latest_stream_arn": ARN,
        "dead_letters": 0,
    }
    return RegionView(**(base | fields))  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("shard", "state", "expected"),
    [
        ("parent", ShardState(sequence="9", finished=True), "finished"),
        ("parent", ShardState(sequence="5"), "reading"),
        ("child", ShardState(), "waiting"),  # its parent is listed and not finished
        ("orphan", ShardState(), "unread"),  # its parent aged out: nothing to wait for
        ("lost", ShardState(sequence="3"), "gone"),  # left the listing unfinished
    ],
)
def test_a_shard_phase_follows_the_readers_lineage_rules(
    shard: str, state: ShardState, expected: str
) -> None:
    listed = {"parent": None, "child": "parent", "orphan": "aged-out"}
    saved = {"parent": ShardState(sequence="5"), shard: state}
    assert expected == shard_phase(shard, state=state, listed=listed, saved=saved)


def test_the_iterator_age_is_the_age_of_the_oldest_unapplied_record_in_any_shard() -> None:
    shards = (
        ShardView("a", None, "reading", "5", oldest_unread=NOW - 3.0),
        ShardView("b", None, "unread", None, oldest_unread=NOW - 40.0),
        ShardView("c", None, "reading", "7"),  # caught up
        ShardView("d", None, "finished", "9"),
    )
    assert 40.0 == iterator_age(view(shards=shards), now=NOW)
    assert 0.0 == iterator_age(view(shards=shards[2:]), now=NOW)
    assert None is iterator_age(view(error="AccessDeniedException: no"), now=NOW)


def test_a_consumer_is_polling_stopped_silent_or_never_ran() -> None:
    def status(**fields: object) -> ConsumerStatus:
        return ConsumerStatus(
            **(
                {
                    "started_at": NOW - 600,
                    "polled_at": NOW - 2,
                    "applied": 3,
                    "dead_lettered": 0,
                    "lag_seconds": 0.5,
                }
                | fields
            )
        )  # type: ignore[arg-type]

    assert "polling" == consumer_state(status(), now=NOW)
    assert "silent" == consumer_state(status(polled_at=NOW - 61), now=NOW)
    assert "stopped" == consumer_state(status(stopped=True), now=NOW)
    assert "never ran" == consumer_state(None, now=NOW)


def test_a_region_needing_repair_or_unreadable_is_a_problem_and_says_why() -> None:
    marker = RepairMarker(ARN, "shard s-1: records after checkpoint 5 were trimmed", NOW - 300)
    marked = view(markers=(marker,))
    assert is_problem(marked) and is_problem(view(error="x")) and not is_problem(view())
    assert "YES (1)" == region_row(marked, now=NOW)[-1]
    [(name, line)] = notes(marked, now=NOW).items()
    assert "eu-west-1 needs repair" == name
    assert line.startswith("shard s-1: records after checkpoint 5 were trimmed (marked ")
    assert "(5 min ago)" in line
    record = region_record(marked, now=NOW)
    assert [{"reason": marker.reason, "marked_at": NOW - 300, "stream": ARN}] == record[
        "needs_repair"
    ]
    unreadable = region_row(view(error="UnrecognizedClientException: bad key"), now=NOW)
    assert ("unreadable: UnrecognizedClientException: bad key", "unknown") == (
        unreadable[2],
        unreadable[-1],
    )


def test_the_last_error_and_lag_come_from_the_consumers_heartbeat() -> None:
    status = ConsumerStatus(
        started_at=NOW - 600,
        polled_at=NOW - 1,
        applied=10,
        dead_lettered=1,
        lag_seconds=None,
        last_error="shard s-1: ThrottlingException: slow down",
        last_error_at=NOW - 7200,
    )
    region = view(consumer=status)
    row = region_row(region, now=NOW)
    assert ("idle", "polling, polled 1.0 s ago") == (row[5], row[7])
    assert {
        "eu-west-1 last error": "shard s-1: ThrottlingException: slow down "
        "(2027-01-15 06:00:00 UTC (2.0 h ago))"
    } == notes(region, now=NOW)


def test_finished_shards_are_listed_only_when_asked() -> None:
    shards = (
        ShardView("a", None, "finished", "9"),
        ShardView("b", "a", "reading", "12", probe_error="TrimmedDataAccessException"),
    )
    rows = shard_rows(view(shards=shards), now=NOW)
    assert [
        ("eu-west-1", "orders", "b", "a", "reading", "12", "unknown (TrimmedDataAccessException)")
    ] == rows
    assert 2 == len(shard_rows(view(shards=shards), now=NOW, finished=True))


@pytest.mark.parametrize(
    ("seconds", "expected"),
    [
        (None, "-"),
        (-1.0, "0.0 s"),
        (0.42, "0.4 s"),
        (42.0, "42 s"),
        (300.0, "5 min"),
        (11_520.0, "3.2 h"),
        (200_000.0, "2.3 d"),
    ],
)
def test_durations_read_well(seconds: float | None, expected: str) -> None:
    assert expected == ago(seconds)


def test_a_report_prints_brackets_as_text_and_its_json_has_every_section(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A reason may hold what rich would read as markup ("[/bold]" would even raise)."""
    sections = [Section("shards", "shards", ("shard",), [("s-[1]",)])]
    args = argparse.Namespace(json=False)
    report(
        args,
        title="t",
        columns=("why",),
        rows=[("a [/bold] b",)],
        summary={"k": "[x]"},
        sections=sections,
    )
    out = capsys.readouterr().out
    assert "a [/bold] b" in out and "s-[1]" in out and "k: [x]" in out
    report(
        argparse.Namespace(json=True),
        title="t",
        columns=("why",),
        rows=[("w",)],
        summary={"n": 1},
        sections=sections,
    )
    assert {
        "title": "t",
        "rows": [{"why": "w"}],
        "shards": [{"shard": "s-[1]"}],
        "summary": {"n": 1},
    } == json.loads(capsys.readouterr().out)
