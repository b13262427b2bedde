"""Replaying dead letters through the real Replicator over in-memory tables: a letter whose
cause is fixed applies and is removed; one whose cause is not stays, once, with its new reason."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resolvers import Side, UserRule
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.engine.pipeline import Replicator
from service.engine.replay import CapturingSink, key_of, replay
from tests.unit.test_pipeline import REGIONS, T0, Refusing, settings_for, write_locally

KEY = {"pk": {"S": "k"}}


class Flagged:
    """A user rule with a bug that can be fixed while the test runs (``broken`` says how it
    fails; None: last writer wins)."""

    def __init__(self) -> None:
        self.broken: str | None = "the rule has a bug"

    def __call__(self, a: Side, b: Side) -> Mapping[str, Any]:
        if self.broken is not None:
            raise ValueError(self.broken)
        return max(a, b, key=lambda side: side.meta.lww_key).data


def conflicted(rule: Flagged) -> tuple[dict[str, Any], list[dict[str, Any]], MemoryDeadLetters]:
    """r0 and r1 write the key concurrently; r0's record is dead-lettered (r1's rule raises)."""
    settings = settings_for(UserRule(rule, "flagged"))
    tables: dict[str, Any] = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    write_locally(tables["r1"], {**KEY, "v": {"S": "r1"}}, at_ms=T0, settings=settings)
    write_locally(tables["r0"], {**KEY, "v": {"S": "r0"}}, at_ms=T0 + 1, settings=settings)
    dead = MemoryDeadLetters()
    records = tables["r0"].records_after(0)
    [result] = replicator(tables, dead, rule).process(records)
    assert "dead-lettered" == result.status
    return tables, records, dead


def replicator(tables: Mapping[str, Any], sink: Any, rule: Flagged) -> Replicator:
    return Replicator(
        region="r0",
        settings=settings_for(UserRule(rule, "flagged")),
        tables=tables,
        dead_letters=sink,
        metrics=MemoryMetrics(),
    )


def test_a_letter_whose_cause_is_fixed_applies_and_is_removed() -> None:
    rule = Flagged()
    tables, _, dead = conflicted(rule)
    [letter] = dead.letters()
    rule.broken = None
    sink = CapturingSink()

    replayed = replay(letter, replicator=replicator(tables, sink, rule), sink=sink, store=dead)

    assert ("applied", False) == (replayed.outcome, replayed.still_failing)
    assert "applied (merged)" == replayed.destinations["r1"]
    assert [] == dead.letters()
    assert [] == sink.caught
    assert {"S": "r0"} == tables["r1"].get(KEY)["v"]  # the later write wins the merge


def test_a_letter_that_fails_again_stays_once_with_its_new_reason() -> None:
    """Replayed while the rule still raises (with another message): the same letter, not a
    second one, now says the new reason, and counts the replay."""
    rule = Flagged()
    tables, _, dead = conflicted(rule)
    [letter] = dead.letters()
    rule.broken = "still broken"
    sink = CapturingSink()

    replayed = replay(letter, replicator=replicator(tables, sink, rule), sink=sink, store=dead)

    assert ("dead-lettered", True) == (replayed.outcome, replayed.still_failing)
    [kept] = dead.letters()
    assert (letter.id, 1, "RuleError") == (kept.id, kept.replays, kept.error)
    assert "still broken" in kept.reason and "has a bug" not in kept.reason
    assert kept.destinations["r1"].startswith("rejected (RuleError:")
    assert "skipped (duplicate)" == kept.destinations["r2"]  # applied the first time


def test_a_transient_failure_keeps_the_letter_with_the_error_as_its_reason() -> None:
    rule = Flagged()
    tables, _, dead = conflicted(rule)
    [letter] = dead.letters()
    rule.broken = None
    tables["r1"] = Refusing(ConnectionError("r1 is unreachable"))
    sink = CapturingSink()

    replayed = replay(letter, replicator=replicator(tables, sink, rule), sink=sink, store=dead)

    assert "failed" == replayed.outcome
    [kept] = dead.letters()
    assert ("ConnectionError", 1) == (kept.error, kept.replays)
    assert kept.reason.startswith("not applied yet: r1: failed (ConnectionError")


def test_a_letter_removed_meanwhile_is_reported_gone_not_recreated() -> None:
    rule = Flagged()
    tables, _, dead = conflicted(rule)
    [letter] = dead.letters()
    dead.remove(letter.id)  # a concurrent replay applied it
    sink = CapturingSink()

    replayed = replay(letter, replicator=replicator(tables, sink, rule), sink=sink, store=dead)

    assert ("gone", False) == (replayed.outcome, replayed.still_failing)
    assert [] == dead.letters()


def test_a_letter_names_its_item_key() -> None:
    rule = Flagged()
    _, _, dead = conflicted(rule)
    assert "pk=k" == key_of(dead.letters()[0])
