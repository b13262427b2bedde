"""A record that failed only by waiting behind a raw write's adoption is the design working
(its region's consumer adopts it within a poll or two), so the shard's retry is logged at
INFO; any other failure, alone or beside such a wait, stays a WARNING. `make demo` with the
tombstone store printed such waits as warnings (session 36)."""

from __future__ import annotations

from service.engine.consumer import _only_waiting
from service.engine.pipeline import RAW_NOT_ADOPTED, Delivery, RecordResult

WAITING = Delivery("failed", "the raw item here is not adopted yet", RAW_NOT_ADOPTED)
BROKEN = Delivery("failed", "ConnectionError: reset", "ConnectionError")
APPLIED = Delivery("applied", "written")


def result(**deliveries: Delivery) -> RecordResult:
    return RecordResult(sequence="1", status="failed", reason="x", deliveries=deliveries)


def test_only_a_wait_behind_an_adoption_is_not_a_warning() -> None:
    assert _only_waiting(result(a=WAITING, b=APPLIED))
    assert _only_waiting(result(a=WAITING, b=WAITING))
    assert not _only_waiting(result(a=WAITING, b=BROKEN))
    assert not _only_waiting(result(a=BROKEN))
    assert not _only_waiting(result())  # failed without a delivery: a record that broke
