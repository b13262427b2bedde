"""The window (issue 9): a slow destination does not hold the other back, a slow or failing
shard does not hold the other shards back, and per-key order holds at each destination.

Not timed: each test blocks one party on an event and waits, with a generous bound, for a
state the design promises while it is blocked (the bound only turns a hang into a failure).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from resolvers import LastWriterWins
from service.adapters.checkpoints import MemoryCheckpointTable
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.adapters.streams_memory import MemoryStreams, client_error
from service.core.stored import Settings
from service.engine.pipeline import InlineExecutor, RecordResult, Replicator
from service.errors import RequestRejectedError
from tests.doubles import Clock, HeldReads, HeldReplicator, ScriptedReplicator
from tests.unit.test_pipeline import REGIONS, T0, write_locally

BOUND = 30.0  # seconds; only ever reached when the property under test does not hold


def r0_replicator(tables: Mapping[str, MemoryTable], **options: Any) -> Replicator:
    """r0's Replicator over ``tables``, with its own thread pools unless told otherwise."""
    options.setdefault("dead_letters", MemoryDeadLetters())
    return Replicator(
        region="r0",
        settings=settings(),
        tables=tables,
        metrics=MemoryMetrics(),
        **options,
    )


def settings() -> Settings:
    return Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())


def until(condition: Callable[[], bool], *, what: str) -> None:
    deadline = time.monotonic() + BOUND
    while not condition():
        assert time.monotonic() < deadline, f"gave up waiting: {what}"
        time.sleep(0.005)


class Gate:
    """Blocks every write to a table until opened (a destination far away, or stuck)."""

    def __init__(self) -> None:
        self.open = threading.Event()
        self.waiting = 0

    def __call__(self, key: Mapping[str, Any]) -> None:
        self.waiting += 1
        assert self.open.wait(BOUND), "the gate was never opened"


def local_records(count: int, *, keys: int) -> list[dict[str, Any]]:
    """``count`` stamped writes in r0 over ``keys`` keys, and r0's stream records of them."""
    source = MemoryTable("r0", ("pk",))
    for n in range(count):
        data = {"pk": {"S": f"k{n % keys}"}, "v": {"N": str(n)}}
        write_locally(source, data, at_ms=T0 + n, settings=settings())
    return source.stream


def test_a_slow_destination_does_not_stop_the_other_from_advancing() -> None:
    """r1 takes no write until the end; meanwhile r2 receives every version (before the
    window, one record's destinations were written one after the other, and r1's wait held r2
    back). Once r1 opens, every record settles and both hold the last version of every key."""
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    gate = Gate()
    tables["r1"].before_write = gate
    settled: list[RecordResult] = []
    replicator = r0_replicator(tables)
    records = local_records(60, keys=20)
    try:
        replicator.submit(records, scope="shard", on_settled=lambda i, r: settled.append(r))
        until(lambda: len(tables["r2"].items) == 20, what="r2 to receive every key")
        # Only the versions a later one of their key made redundant are done (coalesced at
        # both destinations); every record r1 must apply waits for it.
        assert 40 == len(settled)
        assert {"skipped (coalesced)"} == {str(r.deliveries["r1"]) for r in settled}
        assert {} == tables["r1"].items
        gate.open.set()
        until(lambda: len(settled) == len(records), what="every record to settle")
    finally:
        gate.open.set()
        replicator.close()
    assert {"ok"} == {r.status for r in settled}
    assert tables["r1"].items == tables["r2"].items
    assert {f"k{n % 20}": str(n) for n in range(40, 60)} == {
        item["pk"]["S"]: item["v"]["N"] for item in tables["r2"].items.values()
    }


def test_each_destination_receives_each_keys_versions_in_stream_order() -> None:
    """Many versions of few keys, every destination written in parallel: the versions a
    destination receives for one key come in the order of the stream (a lane per key and
    destination; coalescing may skip some, never reorder)."""
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    seen = ("r1", "r2")

    def interleave(key: Mapping[str, Any]) -> None:
        time.sleep(0.0005)  # let the lanes of both destinations interleave

    for region in seen:
        tables[region].before_write = interleave
    replicator = r0_replicator(tables, write_concurrency=16)
    records = local_records(400, keys=5)
    try:
        for start in range(0, len(records), 50):  # batches in flight together
            replicator.submit(records[start : start + 50], scope="shard")
        until(
            lambda: (
                all(len(tables[r].items) == 5 for r in seen)
                and all(
                    item["v"]["N"] in {str(n) for n in range(395, 400)}
                    for r in seen
                    for item in tables[r].items.values()
                )
            ),
            what="the last version of every key everywhere",
        )
    finally:
        replicator.close()
    for region in seen:
        for stream_record in tables[region].stream:
            old = stream_record["dynamodb"].get("OldImage")
            new = stream_record["dynamodb"]["NewImage"]
            if old is not None:  # a destination's versions of a key only ever go forward
                assert int(old["v"]["N"]) < int(new["v"]["N"])


class SlowShard:
    """MemoryStreams whose GetRecords blocks on one shard until released, and fails on
    another, for as long as the test says."""

    def __init__(self, streams: MemoryStreams) -> None:
        self.streams = streams
        self.shard_of: dict[str, str] = {}
        self.blocked: str | None = None
        self.failing: str | None = None
        self.release = threading.Event()

    def __getattr__(self, name: str) -> Any:
        return getattr(self.streams, name)

    def get_shard_iterator(self, **kwargs: Any) -> dict[str, Any]:
        response = self.streams.get_shard_iterator(**kwargs)
        self.shard_of[response["ShardIterator"]] = kwargs["ShardId"]
        return response

    def get_records(self, *, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:
        shard = self.shard_of.get(ShardIterator)
        if shard is not None and shard == self.failing:
            raise client_error("InternalServerError", "the shard's partition is unavailable")
        if shard is not None and shard == self.blocked:
            assert self.release.wait(BOUND), "never released"
        response = self.streams.get_records(ShardIterator=ShardIterator, Limit=Limit)
        following = response.get("NextShardIterator")
        if following and shard is not None:
            self.shard_of[following] = shard
        return response


def two_shards() -> tuple[Clock, MemoryStreams, list[str], dict[str, list[str]]]:
    """A stream split in two open shards, with records of several keys in each."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    (parent,) = streams.open_shards()
    children = streams.split(parent)
    by_shard: dict[str, list[str]] = {c: [] for c in children}
    for n in range(40):
        record = streams.write(f"k{n}")
        assert record is not None
        by_shard[record.shard_id].append(str(record.sequence))
    assert all(by_shard.values()), "both shards hold records"
    return clock, streams, children, by_shard


def consumer(streams: Any, replicator: ScriptedReplicator, clock: Clock, **kwargs: Any) -> Any:
    from service.engine.consumer import StreamConsumer

    return StreamConsumer(
        region="r0",
        table_name=streams.table_name,
        dynamodb=streams,
        streams=streams,
        checkpoints=MemoryCheckpointTable(),
        replicator=replicator,
        metrics=MemoryMetrics(),
        batch_size=kwargs.pop("batch_size", 5),
        clock=clock,
        wall=clock,
        jitter=lambda: 0.5,
        **kwargs,
    )


def test_a_slow_shard_does_not_stop_the_other_shards() -> None:
    """GetRecords of one shard hangs; the other shard is read and applied to its end in the
    meantime (reads run one per shard, in parallel). Released, the slow one follows."""
    clock, streams, (slow, fast), by_shard = two_shards()
    faulty = SlowShard(streams)
    faulty.blocked = slow
    replicator = ScriptedReplicator()
    with ThreadPoolExecutor(4) as reads:
        c = consumer(faulty, replicator, clock, read_executor=reads)

        def handed(shard: str) -> bool:
            c.poll_once()
            return set(by_shard[shard]) <= set(replicator.handed)

        until(lambda: handed(fast), what="the other shard to be read to its end")
        assert not set(by_shard[slow]) & set(replicator.handed)
        faulty.release.set()
        until(lambda: handed(slow), what="the slow shard once released")


def test_a_failing_shard_does_not_stop_the_other_shards() -> None:
    """GetRecords of one shard keeps failing; it backs off alone, and the other shard is read
    and checkpointed to its end. Once the error clears, the failing shard is read too."""
    clock, streams, (failing, fine), by_shard = two_shards()
    faulty = SlowShard(streams)
    faulty.failing = failing
    replicator = ScriptedReplicator()
    c = consumer(faulty, replicator, clock)
    for _ in range(30):
        c.poll_once()
        clock.advance(1.0)
    assert set(by_shard[fine]) <= set(replicator.handed)
    assert not set(by_shard[failing]) & set(replicator.handed)
    assert failing in c._retry_at  # backing off, alone
    assert fine not in c._retry_at
    faulty.failing = None
    for _ in range(60):
        c.poll_once()
        clock.advance(1.0)
    assert set(by_shard[failing]) <= set(replicator.handed)
    assert sorted(replicator.handed) == sorted(replicator.applied)


def test_records_in_flight_past_a_lost_iterator_are_not_handed_out_twice() -> None:
    """Read ahead: the shard's next batch is read while the previous one is being written. An
    iterator lost meanwhile (expired) resumes after the last record handed out, not at the
    checkpoint, so nothing in flight is handed to the replicator a second time."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    sequences = [str(streams.write(f"k{n}").sequence) for n in range(12)]  # type: ignore[union-attr]
    held: list[tuple[Callable[[int, RecordResult], None], list[Any]]] = []

    class Holding(ScriptedReplicator):
        def submit(self, records: Any, *, scope: object = None, on_settled: Any = None) -> Any:
            self.handed.extend(r["dynamodb"]["SequenceNumber"] for r in records)
            held.append((on_settled, list(records)))
            return None

    replicator = Holding()
    c = consumer(streams, replicator, clock)
    c.poll_once()  # reads 5, holds them in flight, reads the next 5 ahead
    streams.fail("get_records", client_error("ExpiredIteratorException", "expired"))
    for _ in range(4):
        c.poll_once()
    assert sequences == replicator.handed  # each once, in order
    for on_settled, records in held:
        for index, record in enumerate(records):
            on_settled(index, RecordResult(record["dynamodb"]["SequenceNumber"], "ok"))
    c.poll_once()
    (store,) = c.checkpoints.streams.values()
    assert {sequences[-1]} == {state.sequence for state in store.shards.values()}


class Abort(BaseException):
    """What Hypothesis raises to end a test from inside a draw (StopTest is a BaseException)."""


def test_what_escapes_a_lane_run_inline_reaches_the_caller_instead_of_hanging_it() -> None:
    """The state machine lands local writes from inside the Replicator's conditional writes
    and Hypothesis may end the test there. Run inline, a lane that stops on such an exception
    left its record unsettled and `process` waited forever; now the exception reaches the
    caller of `process`."""
    from service.engine.pipeline import InlineExecutor

    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}

    def abort(key: Mapping[str, Any]) -> None:
        raise Abort

    tables["r1"].before_write = abort
    replicator = r0_replicator(tables, executor=InlineExecutor())
    finished = threading.Event()
    outcome: list[BaseException] = []

    def run() -> None:
        try:
            replicator.process(local_records(1, keys=1))
        except Abort as error:
            outcome.append(error)
        finally:
            finished.set()

    threading.Thread(target=run, daemon=True).start()
    assert finished.wait(BOUND), "process() hung on a lane that stopped"
    assert [Abort] == [type(e) for e in outcome]


# -- issue 16: teeth where records really are in flight ----------------------------------------


class Then(Gate):
    """A gate that, once opened, fails the write it held with ``error``."""

    def __init__(self, error: Exception) -> None:
        super().__init__()
        self.error = error

    def __call__(self, key: Mapping[str, Any]) -> None:
        super().__call__(key)
        raise self.error


def test_a_record_rejected_at_one_destination_waits_for_the_others_and_is_retried() -> None:
    """r1 rejects the record (permanent), r2 is unreachable (transient, answering late): the
    record settles only once r2 answered, and as failed (retried from the checkpoint, where
    r2 may apply it), not dead-lettered at r1's answer."""
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    rejected: list[bool] = []

    def reject(key: Mapping[str, Any]) -> None:
        rejected.append(True)
        raise RequestRejectedError("ValidationException: item too deep")

    tables["r1"].before_write = reject
    late = Then(ConnectionError("r2 unreachable"))
    tables["r2"].before_write = late
    dead = MemoryDeadLetters()
    settled: list[RecordResult] = []
    replicator = r0_replicator(tables, dead_letters=dead)
    try:
        replicator.submit(local_records(1, keys=1), on_settled=lambda i, r: settled.append(r))
        until(lambda: bool(rejected) and late.waiting == 1, what="r1 to reject, r2 to be tried")
        assert ([], []) == (settled, dead.entries)
        late.open.set()
        until(lambda: bool(settled), what="the record to settle")
    finally:
        late.open.set()
        replicator.close()
    assert ["failed"] == [r.status for r in settled]
    assert [] == dead.entries


def test_a_later_version_waits_behind_a_failure_held_by_a_drained_lane() -> None:
    """The first version of a key fails at r1 and its lane empties; a later version of the
    key submitted in the same scope (read ahead, before the shard is forgotten) must wait
    there, not overtake the failed one (which comes back from the checkpoint)."""
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    failures = [ConnectionError("throttled")]

    def fail_once(key: Mapping[str, Any]) -> None:
        if failures:
            raise failures.pop()

    tables["r1"].before_write = fail_once
    replicator = r0_replicator(tables, executor=InlineExecutor())
    first, later = local_records(2, keys=1)
    results: list[RecordResult] = []
    replicator.submit([first], scope="shard", on_settled=lambda i, r: results.append(r))
    replicator.submit([later], scope="shard", on_settled=lambda i, r: results.append(r))
    assert ["failed", "failed"] == [r.status for r in results]
    assert "waiting" == results[1].deliveries["r1"].handled
    assert {} == tables["r1"].items


def test_the_window_holds_exactly_window_records() -> None:
    """Nothing settles: the consumer reads batches while the records in flight and the batch
    to read fit in ``window_records`` (4 = two batches of 2), and not one more; one record
    settled makes room for nothing (3 + 2 > 4), two make room for one batch."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    written = [str(streams.write(f"k{n}").sequence) for n in range(10)]  # type: ignore[union-attr]
    held = HeldReplicator()
    c = consumer(streams, held, clock, window_records=4, batch_size=2)
    for _ in range(5):
        c.poll_once()
    assert written[:4] == held.handed
    held.settle(1)
    c.poll_once()
    assert written[:4] == held.handed
    held.settle(1)
    for _ in range(3):
        c.poll_once()
    assert written[:6] == held.handed


def test_three_shards_in_a_window_of_two_batches_are_all_read() -> None:
    """Regression, found by tests/property/test_consumers.py: reads started in listing order
    filled the window with the first two shards every turn, and the third was never read."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    (parent,) = streams.open_shards()
    first, _ = streams.split(parent)
    streams.split(first)
    assert 3 == len(streams.open_shards())
    written = [str(streams.write(f"k{n}").sequence) for n in range(12)]  # type: ignore[union-attr]
    replicator = ScriptedReplicator()
    c = consumer(streams, replicator, clock, window_records=4, batch_size=2)
    for _ in range(20):
        c.poll_once()
    assert sorted(written) == sorted(replicator.handed)


def stored_of(c: Any) -> dict[str, Any]:
    return {s: st for store in c.checkpoints.streams.values() for s, st in store.shards.items()}


def test_a_failed_shard_is_read_again_only_once_its_records_in_flight_settled() -> None:
    """The first record fails while the rest of its batch and the batch read ahead are in
    flight: the shard is neither checkpointed nor read again meanwhile (that would hand the
    records in flight out twice), and once they settle it is read again from its
    checkpoint after the backoff, handing over again only the record that failed: the others
    settled for good (session 38: re-applying whole batches after every failure loaded the
    embedded server and slowed convergence after a chaos run's faults to minutes)."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    written = [str(streams.write(f"k{n}").sequence) for n in range(4)]  # type: ignore[union-attr]
    held = HeldReplicator()
    c = consumer(streams, held, clock, batch_size=2)
    c.poll_once()
    c.poll_once()
    assert written == held.handed
    held.settle(1, failed=True)
    for _ in range(5):
        c.poll_once()
        clock.advance(1.0)
    assert written == held.handed
    assert {None} == {st.sequence for st in stored_of(c).values()}
    held.settle_all()
    for _ in range(3):
        c.poll_once()
        clock.advance(1.0)
    assert written + written[:1] == held.handed
    held.settle_all()
    for _ in range(3):
        c.poll_once()
        clock.advance(1.0)
    assert {written[-1]} == {st.sequence for st in stored_of(c).values()}


def test_a_failed_shard_stops_its_records_waiting_for_adoptions_and_is_read_again() -> None:
    """Found by a long chaos run (seed 2027, session 38): a record failed (a connection
    closed) while the rest of its shard's records in flight waited patiently for adoptions in
    other regions, whose own shards waited likewise. The shard, read again only once every
    record settled, was never read again, in any of the three regions. Now a failed shard's
    waits end: its records settle, and it is read again from its checkpoint."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    written = [str(streams.write(f"k{n}").sequence) for n in range(4)]  # type: ignore[union-attr]
    held = HeldReplicator(waiting=True)
    c = consumer(streams, held, clock, batch_size=2)
    c.poll_once()
    c.poll_once()
    assert written == held.handed
    assert [] == held.stopped  # waiting is what a healthy shard's records may do
    held.settle(1, failed=True)  # the other three wait for adoptions
    for _ in range(5):
        c.poll_once()
        clock.advance(1.0)
    assert held.stopped  # told to stop waiting: they settled, and it was read again
    assert written + written == held.handed[:8]


def test_a_failed_shard_is_not_read_again_while_its_read_ahead_is_in_flight() -> None:
    """A record fails while the shard's next GetRecords is still running: the shard waits
    for that read too (one read in flight per shard, and nothing handed out twice)."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    written = [str(streams.write(f"k{n}").sequence) for n in range(6)]  # type: ignore[union-attr]
    held, reads = HeldReplicator(), HeldReads()
    c = consumer(streams, held, clock, batch_size=2, read_executor=reads)
    c.poll_once()
    reads.release()
    c.poll_once()  # hands the first batch out, reads ahead
    (shard,) = reads.in_flight()
    held.settle(2, failed=True)
    for _ in range(4):
        c.poll_once()
        clock.advance(1.0)
        assert [shard] == reads.in_flight()
    assert written[:2] == held.handed
    reads.release()
    for _ in range(4):
        c.poll_once()
        clock.advance(1.0)
        assert len(reads.in_flight()) <= 1
        reads.release()
    assert written[:2] == held.handed[:2] and written[:2] == held.handed[2:4]


def test_a_closed_shard_is_finished_only_once_its_records_settled() -> None:
    """The parent's last batch is in flight: the parent is not finished (its children would
    be read, and a crash would skip those records) until they settle."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    written = [str(streams.write(f"k{n}").sequence) for n in range(2)]  # type: ignore[union-attr]
    (parent,) = streams.open_shards()
    streams.split(parent, children=1)
    held = HeldReplicator()
    c = consumer(streams, held, clock, batch_size=5)
    for _ in range(3):
        c.poll_once()
    assert written == held.handed
    assert not stored_of(c)[parent].finished
    held.settle_all()
    c.poll_once()
    assert stored_of(c)[parent].finished


def test_a_lost_iterator_resumes_after_the_last_record_handed_out_not_the_checkpoint() -> None:
    """Records 1-2 are applied and checkpointed, 3-4 are in flight when the iterator expires:
    it is taken again after 4 (the last handed out), not after the checkpoint (2), which
    would hand 3-4 out a second time."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    written = [str(streams.write(f"k{n}").sequence) for n in range(6)]  # type: ignore[union-attr]
    held = HeldReplicator()
    c = consumer(streams, held, clock, batch_size=2)
    c.poll_once()
    held.settle_all()
    c.poll_once()  # checkpoints 2, reads 3-4
    assert {written[1]} == {st.sequence for st in stored_of(c).values()}
    streams.fail("get_records", client_error("ExpiredIteratorException", "expired"))
    for _ in range(3):
        c.poll_once()
        clock.advance(1.0)
    assert written == held.handed


def test_a_batch_is_prepared_in_the_read_thread_and_submitted_prepared() -> None:
    """`prepare` (the replicator's requests for a batch, before it plans it) runs where
    GetRecords runs, not in the consumer's loop, and its result reaches `submit`."""
    clock = Clock()
    streams = MemoryStreams(clock=clock)
    for n in range(3):
        streams.write(f"k{n}")
    seen: list[tuple[str, Any]] = []

    class Preparing(ScriptedReplicator):
        def prepare(self, records: Any) -> Any:
            seen.append(("prepare", threading.current_thread().name))
            return ("prepared", len(records))

        def submit(self, records: Any, **kwargs: Any) -> Any:
            seen.append(("submit", kwargs.get("prepared")))
            return super().submit(records, scope=kwargs["scope"], on_settled=kwargs["on_settled"])

    reads = ThreadPoolExecutor(1, thread_name_prefix="reader")
    try:
        c = consumer(streams, Preparing(), clock, read_executor=reads)
        until(lambda: c.poll_once() > 0 or bool(c.poll_once()), what="a batch handed over")
    finally:
        reads.shutdown(wait=True)
    (prepare, submit) = seen[:2]
    assert "prepare" == prepare[0] and prepare[1].startswith("reader")
    assert ("submit", ("prepared", 3)) == submit
