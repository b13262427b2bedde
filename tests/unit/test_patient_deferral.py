"""A patient Replicator (the standalone consumer's): a delivery `decide` defers, because the
destination holds a raw write its own consumer has not adopted yet, waits in its lane with the
record in flight, and lands once the adoption did; it never fails the record, which would stop
the shard's reads (the chaos runs with the tombstone store that never converged: each region's
shard waited on an adoption the other region had not read yet). `stop_waiting` lets it fail,
so a stopping consumer settles its records."""

from __future__ import annotations

import threading
from typing import Any

from service.adapters.memory import MemoryTable
from service.engine.pipeline import RAW_NOT_ADOPTED, RecordResult, Replicator
from tests.unit.test_pipeline_store import (
    KEY,
    NAME,
    REGIONS,
    T0,
    drain,
    replicate,
    replicator_over,
    write_locally,
)
from tests.unit.test_pipeline_store import tables as make_tables


def replicator(region: str, ts: dict[str, MemoryTable], *, patient: bool) -> Replicator:
    return replicator_over(region, ts, patient=patient)


def deferred_at_r1() -> tuple[dict[str, MemoryTable], list[Any]]:
    """r1 holds a raw put made after a delete (beside the stored tombstone), not adopted yet;
    r0's next write (concurrent with it) waits on r1 for that adoption."""
    ts = make_tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    write_locally(ts["r1"], None, at_ms=T0 + 10)
    drain(ts)
    ts["r1"].put_raw({**KEY, "v": {"S": "raw after the delete"}})
    write_locally(ts["r0"], {**KEY, "v": {"S": "2"}}, at_ms=T0 + 20)
    return ts, ts["r0"].records_after(len(ts["r0"].stream) - 1)


class Settles:
    def __init__(self) -> None:
        self.results: list[RecordResult] = []
        self.done = threading.Event()

    def __call__(self, index: int, result: RecordResult) -> None:
        self.results.append(result)
        self.done.set()


def test_an_impatient_replicator_fails_the_deferred_record() -> None:
    ts, records = deferred_at_r1()
    (result,) = replicate("r0", ts, records)
    assert "failed" == result.status
    assert RAW_NOT_ADOPTED == result.deliveries["r1"].error


def test_a_deferred_delivery_waits_in_flight_and_lands_after_the_adoption() -> None:
    ts, records = deferred_at_r1()
    patient = replicator("r0", ts, patient=True)
    settles = Settles()
    try:
        patient.submit(records, scope="shard", on_settled=settles)
        assert not settles.done.wait(0.5), settles.results  # waits: not failed
        # r1's consumer adopts its raw write; the waiting delivery then lands.
        (adopted,) = replicate("r1", ts, ts["r1"].records_after(len(ts["r1"].stream) - 1))
        assert "ok" == adopted.status
        assert settles.done.wait(10)
    finally:
        patient.close()
    (result,) = settles.results
    assert "ok" == result.status, result
    drain(ts)
    items = [ts[r].get(KEY) for r in REGIONS]
    assert items[0] is not None and all(item == items[0] for item in items)


def test_stop_waiting_settles_a_deferred_record_as_failed() -> None:
    ts, records = deferred_at_r1()
    patient = replicator("r0", ts, patient=True)
    settles = Settles()
    try:
        patient.submit(records, scope="shard", on_settled=settles)
        assert not settles.done.wait(0.3)
        patient.stop_waiting("another shard")
        assert not settles.done.wait(0.3)
        patient.stop_waiting("shard")
        assert settles.done.wait(5)
    finally:
        patient.close()
    (result,) = settles.results
    assert "failed" == result.status
    assert RAW_NOT_ADOPTED == result.deliveries["r1"].error


class StoreUnreachable(MemoryTable):
    """r0's table, whose tombstone store cannot be read right now (a partition)."""

    down = False

    def get_stored(self, key: Any) -> dict[str, Any] | None:
        if self.down:
            raise ConnectionError("the store is unreachable")
        return super().get_stored(key)


def test_a_store_read_that_fails_fails_its_record_and_the_keys_later_ones_and_raises_nothing() -> (
    None
):
    """Found by a chaos run (session 37): the store read `submit` makes for a REMOVE escaped
    it, and stopped `georep run` for good during a partition of its own region."""
    ts = make_tables()
    r0 = ts["r0"] = StoreUnreachable("r0", ("pk",), table_name=NAME, now_ms=lambda: T0)
    write_locally(r0, {**KEY, "v": {"S": "1"}}, at_ms=T0)
    r0.put_raw({"pk": {"S": "other"}, "v": {"S": "1"}})
    drain(ts)
    r0.delete_raw(KEY)  # its REMOVE is explained from the store
    r0.put_raw({"pk": {"S": "other"}, "v": {"S": "2"}})
    r0.put_raw({**KEY, "v": {"S": "after"}})
    records = r0.records_after(len(r0.stream) - 3)
    r0.down = True
    try:
        removed, other, after = replicate("r0", ts, records)
    finally:
        r0.down = False
    assert ("failed", "failed") == (removed.status, after.status)
    assert "reading the tombstone store: ConnectionError" in removed.reason
    assert after.reason.startswith("behind record")
    # Another key's record is attempted on its own (its adoption reads r0's store too).
    assert not other.reason.startswith("behind") and other.deliveries
    drain(ts)  # read again: applied in order
    assert all(t.get(KEY) == ts["r0"].get(KEY) for t in ts.values())
