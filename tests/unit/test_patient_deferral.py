"""A patient Replicator (the standalone consumer's): a delivery `decide` defers, because the
destination holds a raw write its own consumer has not adopted yet, waits in its lane with the
record in flight, and lands once the adoption did; it never fails the record, which would stop
the shard's reads (the chaos runs with the tombstone store that never converged: each region's
shard waited on an adoption the other region had not read yet). `stop_waiting` lets it fail,
so a stopping consumer settles its records."""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future
from typing import Any

import ulid

from service.adapters.memory import MemoryTable
from service.core import hlc
from service.core.places import commit_for, read_key
from service.core.stamp import stamp
from service.engine.pipeline import RAW_NOT_ADOPTED, RecordResult, Replicator
from service.errors import RequestRejectedError
from tests.unit.test_pipeline_store import (
    KEY,
    NAME,
    REGIONS,
    SETTINGS,
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


class StoreRefused(MemoryTable):
    """r0's table, whose batch store read DynamoDB refuses (IAM denies BatchGetItem on it)."""

    def get_stored_many(self, keys: Any) -> list[dict[str, Any] | None]:
        raise RequestRejectedError("orders-tombstones: AccessDeniedException: not allowed")


def test_a_store_read_refused_refuses_the_records_that_needed_it_and_no_other() -> None:
    ts = make_tables()
    r0 = ts["r0"] = StoreRefused("r0", ("pk",), table_name=NAME, now_ms=lambda: T0)
    r0.put_raw({**KEY, "v": {"S": "1"}})
    r0.put_raw({"pk": {"S": "other"}, "v": {"S": "1"}})
    r0.delete_raw(KEY)
    *_, removed = replicate("r0", ts, r0.records_after(0))
    assert "dead-lettered" == removed.status
    assert "AccessDeniedException" in removed.reason
    other = ts["r1"].get({"pk": {"S": "other"}})
    assert other is not None and {"S": "1"} == other["v"]


class CountingReads(MemoryTable):
    """A table counting the store and table reads made while a batch is submitted."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.requests: list[tuple[str, int]] = []

    def get(self, key: Any) -> dict[str, Any] | None:
        self.requests.append(("GetItem", 1))
        return super().get(key)

    def get_stored(self, key: Any) -> dict[str, Any] | None:
        self.requests.append(("GetItem store", 1))
        return super().get_stored(key)

    def get_many(self, keys: Any) -> list[dict[str, Any] | None]:
        self.requests.append(("BatchGetItem", len(keys)))
        return [MemoryTable.get(self, key) for key in keys]

    def get_stored_many(self, keys: Any) -> list[dict[str, Any] | None]:
        self.requests.append(("BatchGetItem store", len(keys)))
        return [MemoryTable.get_stored(self, key) for key in keys]


def delete(table: MemoryTable, key: dict[str, Any], *, at_ms: int) -> None:
    """An SDK delete of ``key``: its tombstone in the store, the item out of the table."""
    state = read_key(table.get(key), table.get_stored(key), settings=SETTINGS)
    version = stamp(
        state.current,
        None,
        region=table.region,
        now_hlc=hlc.pack(at_ms),
        write_id=str(ulid.new()),
        settings=SETTINGS,
    )
    assert version is not None
    steps = commit_for(state, version, local=True, table=NAME, settings=SETTINGS)
    assert table.commit(key, table=steps[0], store=steps[1]).ok


class Held(Executor):
    """Runs nothing: the lanes' writes never start, so only `submit`'s own reads are seen."""

    def submit(self, fn: Any, /, *args: Any, **kwargs: Any) -> Future[Any]:
        return Future()


def test_a_batchs_store_reads_are_two_batch_requests_whatever_its_size() -> None:
    """Found by a long chaos run (seed 2027, session 38): `submit` read the store once per
    REMOVE and stamped INSERT, in the consumer's own thread. On a loaded server a batch of 100
    took 7 s, longer than the lease (6 s there): the consumer lost its own shard's lease every
    turn, its deferred records stopped waiting, and it read the same batch again for good
    while the regions never converged."""
    ts = make_tables()
    r0 = ts["r0"] = CountingReads("r0", ("pk",), table_name=NAME, now_ms=lambda: T0)
    keys = [{"pk": {"S": f"k{i}"}} for i in range(60)]
    for key in keys:
        r0.put_raw({**key, "v": {"S": "1"}})
    drain(ts)
    start = len(r0.stream)
    for i, key in enumerate(keys):  # SDK deletes, then copies of half the items written back
        before = r0.get(key)
        delete(r0, key, at_ms=T0 + 10)
        if i % 2 == 0:
            assert before is not None
            r0.put_raw(before)  # a stamped INSERT: the store holds the delete's tombstone
    records = r0.records_after(start)
    assert 90 == len(records)
    r0.requests.clear()
    replicator = replicator_over("r0", ts, executor=Held())
    replicator.submit(records)
    assert [("BatchGetItem store", 60), ("BatchGetItem", 30)] == r0.requests


def test_a_prepared_batch_is_submitted_without_a_request() -> None:
    """The consumer prepares a batch in its read thread (`Replicator.prepare`: the store
    reads), so that `submit`, in the loop that renews the leases, sends nothing (session 38:
    2-4 s of store reads per turn on a loaded server still lost the leases)."""
    ts = make_tables()
    r0 = ts["r0"] = CountingReads("r0", ("pk",), table_name=NAME, now_ms=lambda: T0)
    write_locally(r0, {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    delete(r0, KEY, at_ms=T0 + 10)
    records = r0.records_after(len(r0.stream) - 1)
    replicator = replicator_over("r0", ts, executor=Held())
    r0.requests.clear()
    prepared = replicator.prepare(records)
    assert [("BatchGetItem store", 1)] == r0.requests
    r0.requests.clear()
    replicator.submit(records, prepared=prepared)
    assert [] == r0.requests
