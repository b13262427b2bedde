"""The consumer's status tracker: what a heartbeat says, and when it is due."""

from __future__ import annotations

from service.engine.heartbeat import LAG, StatusTracker
from service.engine.pipeline import RecordResult
from service.ports import ConsumerStatus

T0 = 1_700_000_000.0


def test_the_lag_is_the_largest_seen_since_the_previous_save() -> None:
    """Each saved status reports the worst write-to-applied lag of its own window; a window
    in which nothing was applied says None (idle), not the previous window's lag."""
    tracker = StatusTracker(started_at=T0)
    tracker.observe(LAG, {"source": "a", "destination": "b"}, 0.2)
    tracker.observe(LAG, {"source": "a", "destination": "c"}, 1.5)
    tracker.observe("iterator_age_seconds", {"region": "a"}, 99.0)  # not a lag
    assert 1.5 == tracker.snapshot(T0 + 1).lag_seconds
    assert None is tracker.snapshot(T0 + 7).lag_seconds


def test_a_status_is_due_at_once_then_every_interval() -> None:
    tracker = StatusTracker(started_at=T0, every=5.0)
    assert tracker.due(T0)
    tracker.snapshot(T0)
    assert not tracker.due(T0 + 4.9)
    assert tracker.due(T0 + 5.0)


def test_counts_and_the_last_error_accumulate_and_a_restart_resumes_the_error() -> None:
    tracker = StatusTracker(started_at=T0)
    tracker.settled(
        [
            RecordResult("1", "ok"),
            RecordResult("2", "dead-lettered", "rule raised"),
            RecordResult("3", "failed", "throttled"),
        ]
    )
    tracker.error(T0 + 2, "shard s-1:\n  1 of 3 records   not applied yet")
    tracker.polled(T0 + 3)
    expected = ConsumerStatus(
        started_at=T0,
        polled_at=T0 + 3,
        applied=1,
        dead_lettered=1,
        lag_seconds=None,
        last_error="shard s-1: 1 of 3 records not applied yet",
        last_error_at=T0 + 2,
    )
    assert expected == tracker.snapshot(T0 + 3)

    restarted = StatusTracker(started_at=T0 + 10)
    restarted.resume(expected)
    status = restarted.snapshot(T0 + 11, stopped=True)
    assert (expected.last_error, expected.last_error_at) == (
        status.last_error,
        status.last_error_at,
    )
    assert (0, True) == (status.applied, status.stopped)
