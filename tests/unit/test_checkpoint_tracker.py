"""The checkpoint rule itself (service/engine/checkpoint.py): a position is safe only once
every destination applied every record before it."""

from __future__ import annotations

from service.engine.checkpoint import CheckpointTracker


def test_a_record_applied_at_one_destination_of_two_holds_the_checkpoint_back() -> None:
    """A mutant that dropped a record's count when its first destination finished survived
    every test that ran the consumer (their destinations all answer at once, so both
    finished in the same turn): the checkpoint would pass a record the second destination
    had not applied, and a crash then would lose it there."""
    tracker = CheckpointTracker()
    tracker.read(0, tasks=2)
    tracker.read(1, tasks=2)
    tracker.done(0)
    assert 0 == tracker.safe_position()
    tracker.done(1)
    tracker.done(1)
    assert 0 == tracker.safe_position()
    tracker.done(0)
    assert 2 == tracker.safe_position()


def test_a_record_with_nothing_to_apply_never_holds_the_checkpoint_back() -> None:
    tracker = CheckpointTracker(start=5)
    tracker.read(5, tasks=0)  # an echo: nothing to write
    tracker.read(6, tasks=1)
    assert 6 == tracker.safe_position()
    tracker.done(6)
    assert 7 == tracker.safe_position()
