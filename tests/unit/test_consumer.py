"""The stream consumer's loop against an in-memory DynamoDB Streams
(service/adapters/streams_memory.py):
replaced streams, failing destinations, transient and permanent AWS errors, the checkpoint rule.

The property test tests/property/test_stream_reader.py drives the same loop through random
histories; these are the named cases (issue 7's findings among them)."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest

import service.engine.checkpoint
import service.engine.consumer
import service.engine.preflight
import service.engine.wiring
from service.adapters.checkpoints import MemoryCheckpointTable
from service.adapters.leases import MemoryLeaseTable
from service.adapters.metrics import MemoryMetrics
from service.adapters.streams_memory import MemoryStreams, client_error
from service.engine.checkpoint import CheckpointTracker
from service.engine.consumer import StreamConsumer, retry_delay
from service.errors import ConsumerHaltedError
from service.surfaces import cli
from tests.doubles import (
    Clock,
    HeldReplicator,
    LoggedCheckpointTable,
    ScriptedReplicator,
    Ticking,
    consumer_on,
    leased_consumer,
)


class Setup:
    def __init__(self, *, batch_size: int = 10) -> None:
        self.clock = Clock()
        self.streams = MemoryStreams(clock=self.clock)
        self.checkpoints = MemoryCheckpointTable()
        self.replicator = ScriptedReplicator()
        self.metrics = MemoryMetrics()
        self.batch_size = batch_size
        self.consumer = self.start()

    def start(self) -> StreamConsumer:
        """A consumer process (again, after a crash): only the checkpoint table survives."""
        self.consumer = consumer_on(
            self.streams,
            checkpoints=self.checkpoints,
            replicator=self.replicator,
            clock=self.clock,
            metrics=self.metrics,
            batch_size=self.batch_size,
            status_store=self.checkpoints,
        )
        return self.consumer

    def write(self, *keys: str) -> list[str]:
        records = [self.streams.write(key) for key in keys]
        return [str(r.sequence) for r in records if r is not None]

    def poll(self, times: int = 1, *, every: float = 0.0) -> None:
        for _ in range(times):
            self.consumer.poll_once()
            self.clock.advance(every)

    def repairs(self) -> list[str]:
        return [reason for store in self.checkpoints.streams.values() for reason in store.repairs]


# -- finding 5: a stream disabled and enabled again ------------------------------------------


def test_a_stream_disabled_and_enabled_again_is_followed_and_the_gap_marked_for_repair() -> None:
    """Finding 5 of issue 7: the consumer read LatestStreamArn once and stalled on the old
    stream. Now it reads the old stream to its end, follows the new one from its trim horizon
    (its own checkpoints), and marks the region for repair: the write made while no stream was
    enabled is in no stream."""
    s = Setup()
    before = s.write("k0")
    s.poll()
    old = s.consumer.reader.stream_arn  # type: ignore[union-attr]
    late = s.write("k1")  # streamed to the old stream before it is disabled
    s.streams.disable()
    s.write("k2")  # in no stream
    new = s.streams.enable()
    after = s.write("k0", "k1")
    s.poll(20, every=10.0)
    assert before + late + after == s.replicator.handed
    assert new == s.consumer.reader.stream_arn  # type: ignore[union-attr]
    assert new == s.checkpoints.followed
    assert 1 == s.metrics.total("stream_gaps")
    assert [f"{old} to {new}" in reason for reason in s.repairs()] == [True]
    assert {"shardId"} == {k[:7] for k in s.checkpoints.streams[new].shards}
    assert after[-1] == max(
        (st.sequence or "" for st in s.checkpoints.streams[new].shards.values()), default=""
    )


def test_a_restart_after_the_stream_was_replaced_reads_the_old_stream_to_its_end_first() -> None:
    """The stream was replaced while the consumer was stopped: the restart starts with the
    stream it followed (recorded in the checkpoint table), not the table's latest one."""
    s = Setup()
    s.write("k0")
    s.poll()
    unread = s.write("k1", "k2")
    s.streams.disable()
    s.streams.enable()
    after = s.write("k1")
    s.start()
    s.poll(20, every=10.0)
    assert unread + after == s.replicator.handed[1:]
    assert 1 == len(s.repairs())


def test_a_replaced_stream_gone_past_retention_marks_its_unread_records_lost() -> None:
    """A restart more than a day after the stream was replaced: the old stream is gone
    (ResourceNotFound), with records the consumer never read. Both losses are marked."""
    s = Setup()
    s.write("k0")
    s.poll()
    s.write("k1")
    s.streams.disable()
    s.streams.enable()
    s.clock.advance(25 * 3600)
    after = s.write("k2")
    s.start()
    s.poll(20, every=10.0)
    assert after == s.replicator.handed[-1:]
    assert 1 == s.metrics.total("stream_gaps")
    repairs = s.repairs()
    assert any("no longer exists" in reason for reason in repairs), repairs


def test_a_disabled_stream_without_a_new_one_is_said_once_and_waited_for() -> None:
    s = Setup()
    s.write("k0")
    s.streams.disable()
    s.poll(30, every=10.0)
    assert 1 == len(s.replicator.handed)
    assert 1 == s.metrics.total("stream_disabled")
    assert [] == s.repairs()  # not yet: the gap ends when a stream is enabled again


# -- finding 8: failures back off, transient errors never kill the consumer --------------------


def test_a_destination_that_keeps_failing_is_retried_with_capped_exponential_backoff() -> None:
    """Finding 8 of issue 7: a batch whose records all failed was retried at once, forever
    (7,220 GetRecords calls in one second). Now: exponential backoff with jitter, capped, for
    that shard; the records are applied once the destination is back."""
    s = Setup()
    written = s.write("k0", "k1")
    s.replicator.fail_all = "AccessDeniedException: not authorized"
    s.poll(6000, every=0.01)  # a minute of polling as fast as the loop goes
    calls = s.streams.calls["get_records"]
    assert 8 <= calls <= 15, calls  # 0.1 s doubling to a 20 s cap: about 11 tries in 60 s
    s.replicator.fail_all = None
    s.poll(3000, every=0.01)
    assert set(written) <= s.replicator.applied
    assert [] == s.repairs()


@pytest.mark.parametrize(
    ("operation", "code", "status"),
    [
        ("get_records", "InternalFailure", 500),
        ("get_records", "LimitExceededException", 400),
        ("get_shard_iterator", "InternalServerError", 500),
        ("describe_stream", "ThrottlingException", 400),
        ("describe_table", "InternalServerError", 500),
        ("get_records", "AccessDeniedException", 400),
    ],
)
def test_a_transient_stream_error_is_counted_backed_off_and_retried(
    operation: str, code: str, status: int
) -> None:
    """Any stream error other than expired or trimmed escaped Consumer.run. Now it is counted
    (stream_errors, labelled with the code), logged, and retried after a backoff."""
    s = Setup()
    s.poll()  # started: an error while starting stops the consumer (botocore retried already)
    written = s.write("k0")
    s.clock.advance(16 * 60)  # DescribeTable is due, and the shard iterator expired
    for _ in range(3):
        s.streams.fail(operation, client_error(code, operation, status=status))
    s.poll(200, every=0.05)
    assert written == s.replicator.handed
    assert 1 <= s.metrics.counters[("stream_errors", (("error", code), ("region", "r0")))]
    assert [] == s.repairs()


@pytest.mark.parametrize("code", ["UnrecognizedClientException", "InvalidSignatureException"])
def test_rejected_credentials_halt_the_consumer(code: str) -> None:
    s = Setup()
    s.write("k0")
    s.streams.fail("get_records", client_error(code, "GetRecords"))
    with pytest.raises(ConsumerHaltedError, match="credentials"):
        s.poll()


def test_a_deleted_table_halts_the_consumer_with_its_name() -> None:
    s = Setup()
    s.poll()
    s.streams.delete_table()
    s.clock.advance(61)
    with pytest.raises(ConsumerHaltedError, match=f"table {s.streams.table_name} does not exist"):
        s.poll()


def test_georep_run_prints_one_line_and_exits_1_when_the_consumer_halts(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    class Halting:
        dynamodb: dict[str, object] = {}

        def __init__(self, *_: object, **__: object) -> None:
            pass

        def setup(self) -> None:
            raise ConsumerHaltedError("us-east-1: AWS rejected the credentials (...)")

    config = tmp_path / "georep.toml"
    config.write_text(
        '[table]\nname = "orders"\npartition_key = "pk"\n\n'
        '[[regions]]\nname = "us-east-1"\n\n[[regions]]\nname = "eu-west-1"\n'
    )
    monkeypatch.setattr(service.engine.wiring, "Consumer", Halting)
    monkeypatch.setattr(service.engine.preflight, "check_tables", lambda *_, **__: {})
    monkeypatch.setattr(service.engine.preflight, "probe", lambda *_, **__: {})
    assert 1 == cli.main(["run", "--region", "us-east-1", "-c", str(config)])
    assert "georep: us-east-1: AWS rejected the credentials (...)\n" == capsys.readouterr().err


def test_run_keeps_going_through_failures_and_exits_when_idle() -> None:
    """``run`` (what ``georep run`` calls) survives a failing destination and a throttled stream,
    waits between polls (never spins), and is not idle while a retry is pending."""
    s = Setup()
    written = s.write("k0", "k1")
    s.replicator.failing = {"k1"}
    s.streams.fail("get_records", client_error("ThrottlingException", "GetRecords"))
    waits: list[float] = []

    class Stop:
        def is_set(self) -> bool:
            if len(waits) == 50:
                s.replicator.failing = set()
            return False

        def wait(self, seconds: float) -> bool:
            waits.append(seconds)
            s.clock.advance(seconds)
            return False

    s.consumer.run(stop=Stop(), idle_exit_after=5.0)  # type: ignore[arg-type]
    assert set(written) <= s.replicator.applied
    assert all(w > 0 for w in waits)
    assert s.clock.now - Clock().now >= 5.0


def test_retry_delays_grow_exponentially_with_jitter_up_to_the_cap() -> None:
    delays = [retry_delay(n, base=0.1, cap=20.0, jitter=lambda: 1.0) for n in range(1, 12)]
    assert [0.1, 0.2, 0.4, 0.8, 1.6, 3.2, 6.4, 12.8, 20.0, 20.0, 20.0] == pytest.approx(delays)
    assert 0.05 == pytest.approx(retry_delay(1, base=0.1, cap=20.0, jitter=lambda: 0.0))
    assert 20.0 == retry_delay(10**6, base=0.1, cap=20.0, jitter=lambda: 1.0)


# -- one checkpoint rule -----------------------------------------------------------------------


def test_the_consumer_checkpoints_by_the_rule_the_model_proves() -> None:
    """The consumer commits through service.engine.checkpoint.CheckpointTracker, the class the
    property model (tests/property/machine.py) drives: no second copy of the rule."""
    assert service.engine.consumer.CheckpointTracker is service.engine.checkpoint.CheckpointTracker


def test_breaking_the_models_checkpoint_rule_breaks_the_consumer(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The teeth test's break (checkpoint what was read, tests/property/test_teeth.py) makes the
    consumer checkpoint past a failed record too: it has no rule of its own."""
    s = Setup()
    failed, fine = s.write("k1", "k0")
    s.replicator.failing = {"k1"}
    s.poll()
    (store,) = s.checkpoints.streams.values()
    assert all(state.sequence is None for state in store.shards.values())  # nothing committed
    monkeypatch.setattr(CheckpointTracker, "safe_position", lambda self: self.read_position)
    s.clock.advance(60)
    s.poll()
    assert {fine} == {state.sequence for state in store.shards.values()}
    assert failed not in s.replicator.applied


# -- the consumer's status, for georep status ---------------------------------------------------


def test_the_consumer_saves_its_status_every_few_seconds_with_counts_and_its_last_error() -> None:
    """The status item is written at the first poll, then at most every 5 s however often the
    loop polls; it counts settled records and says why a record is not applied yet."""
    s = Setup()
    s.write("k0", "k1")
    s.replicator.failing = {"k1"}
    s.poll(40, every=0.1)  # 4 s of polling: only the first poll saves
    [first] = s.checkpoints.statuses
    assert (1, 0) == (first.applied, first.dead_lettered)
    assert first.last_error is not None and "not applied yet" in first.last_error
    assert "AccessDeniedException" in first.last_error
    assert Clock().now == first.last_error_at == first.polled_at  # saved at the first poll
    s.replicator.failing = set()
    s.poll(100, every=0.1)  # 10 s more: saved at 5 s and 10 s
    assert 3 == len(s.checkpoints.statuses)
    latest = s.checkpoints.statuses[-1]
    assert 2 == latest.applied
    # The last error, not the current one: kept, with its time, after the record is applied.
    assert latest.last_error is not None and "1 of 1 records not applied" in latest.last_error
    assert latest.last_error_at is not None and latest.last_error_at < 5.0 + Clock().now
    assert not latest.stopped


def test_a_restarted_consumer_keeps_the_last_error_and_says_when_it_stops() -> None:
    """The process after a restart still shows its predecessor's last error until a newer
    one; ``run`` saves a final status marked stopped."""
    s = Setup()
    s.write("k0")
    s.streams.fail("get_records", client_error("ThrottlingException", "GetRecords"))
    s.poll(3, every=1.0)
    error = s.checkpoints.statuses[-1].last_error
    assert error is not None and "ThrottlingException" in error
    s.start()

    class StopAfterIdle:
        def is_set(self) -> bool:
            return False

        def wait(self, seconds: float) -> bool:
            s.clock.advance(seconds)
            return False

    s.consumer.run(stop=StopAfterIdle(), idle_exit_after=1.0)  # type: ignore[arg-type]
    final = s.checkpoints.statuses[-1]
    assert final.stopped
    assert error == final.last_error
    assert 0 == final.applied  # k0 was applied by the process before the restart


def test_a_status_that_cannot_be_saved_never_stops_replication() -> None:
    """The status is for people: a checkpoint table refusing it is logged, not retried."""
    s = Setup()

    class Refusing(MemoryCheckpointTable):
        def save_status(self, status: object) -> None:
            raise client_error("ProvisionedThroughputExceededException", "PutItem")

    s.checkpoints = Refusing()
    s.start()
    written = s.write("k0", "k1")
    s.poll(3, every=10.0)
    assert set(written) == s.replicator.applied


# -- issue 16: a region's consumers sharing its shards through leases -------------------------

LEASE = 3.0  # lease_seconds: renewed every second


class Region:
    """Two (or more) consumer processes of one region: one stream, one checkpoint table, one
    lease table, one clock."""

    def __init__(self, *, clock: Clock | None = None) -> None:
        self.clock = clock if clock is not None else Clock()
        self.streams = MemoryStreams(clock=self.clock)
        self.checkpoints = LoggedCheckpointTable()
        self.leases = MemoryLeaseTable()

    def consumer(self, name: str, replicator: ScriptedReplicator, **options: Any) -> StreamConsumer:
        return leased_consumer(
            self.streams,
            name=name,
            checkpoints=self.checkpoints,
            leases=self.leases,
            replicator=replicator,
            clock=self.clock,
            lease_seconds=LEASE,
            **options,
        )

    def write(self, count: int) -> list[str]:
        return [str(self.streams.write(f"k{n % 3}").sequence) for n in range(count)]  # type: ignore[union-attr]

    def stored(self) -> str | None:
        (state,) = self.checkpoints.stored().values()
        return "finished" if state.finished else state.sequence

    def backwards(self) -> list[str]:
        """Positions a consumer tried to save below what was stored (creating a shard's empty
        state at discovery, refused when it exists, is not one)."""
        stored: dict[str, int] = {}
        wrong = []
        for save in self.checkpoints.saves:
            at = stored.get(save.shard, -1)
            if save.sequence is None and not save.finished:
                pass  # a create
            elif at == math.inf or (not save.finished and int(save.sequence or -1) < at):
                wrong.append(f"{save} over {at}")
            if save.accepted:
                stored[save.shard] = math.inf if save.finished else int(save.sequence or -1)
        return wrong


def test_a_consumer_starting_beside_a_peer_never_resets_the_peers_checkpoint() -> None:
    """Finding 1 of issue 16: a consumer started beside one that had checkpointed a shard saved
    an empty state for it at discovery, without holding its lease (stored #10 -> None); the next
    holder read the shard again from its trim horizon. Discovery now creates a shard's state
    only if absent, and the standby that takes over starts after the peer's checkpoint."""
    region = Region()
    written = region.write(10)
    a_sees, b_sees = ScriptedReplicator(), ScriptedReplicator()
    a, b = region.consumer("a", a_sees), region.consumer("b", b_sees)
    b.setup()  # b starts (and loads the checkpoints: none yet) ...
    for _ in range(6):  # ... a reads the shard and checkpoints it ...
        a.poll_once()
    assert written == a_sees.handed
    assert written[-1] == region.stored()
    b.poll_once()  # ... and b lists the shard for the first time: a holds its lease
    assert written[-1] == region.stored()
    region.clock.advance(LEASE + 0.1)  # a dies; b takes its lease
    for _ in range(3):
        b.poll_once()
        region.clock.advance(1.0)
    assert b.leases is not None and b.leases.held()
    assert [] == b_sees.handed
    assert [] == region.backwards()


def test_a_lease_lost_and_taken_back_resumes_from_the_stored_checkpoint() -> None:
    """Finding 2 of issue 16: a consumer paused past its lease, whose shard another consumer
    read further (stored #12) and then died, took the lease back while its own old records
    were still in flight, and read and saved from its stale position (#6, #8, #10). Taking a
    lease now always starts the shard from its stored checkpoint."""
    region = Region()
    written = region.write(12)
    a_sees, b_sees = HeldReplicator(), ScriptedReplicator()
    a, b = region.consumer("a", a_sees), region.consumer("b", b_sees)
    a.poll_once()  # a takes the shard and reads two batches ahead
    b.poll_once()  # b stands by
    a_sees.settle(2)
    a.poll_once()
    assert written[1] == region.stored()
    region.clock.advance(LEASE + 0.1)  # a pauses, its records still in flight
    for _ in range(8):
        b.poll_once()
        region.clock.advance(0.5)
    assert written[-1] == region.stored()  # b read the rest and checkpointed it
    # b dies; a wakes up, loses the shard, and takes it back lease_seconds later, while its
    # old records are still in flight
    for _ in range(10):
        a.poll_once()
        region.clock.advance(0.5)
    assert a.leases is not None and a.leases.held()
    a_sees.settle_all()
    before = len(a_sees.handed)
    for _ in range(6):
        a.poll_once()
        region.clock.advance(0.5)
    assert [] == a_sees.handed[before:]
    assert written[-1] == region.stored()
    assert [] == region.backwards()


def test_a_graceful_stop_checkpoints_what_it_applied_when_draining_outlasts_the_lease() -> None:
    """Finding 3 of issue 16: `finish` never renewed leases, so a drain longer than
    lease_seconds (here: a destination answering after 1.5 s, leases of 0.9 s) let the lease
    lapse, and the applied records were dropped uncheckpointed (applied 5/5, stored None).
    Leases are renewed while draining now, so the stop checkpoints, then releases."""
    region = Region(clock=Ticking(step=0.02))
    written = region.write(5)
    slow = HeldReplicator()
    a = leased_consumer(
        region.streams,
        name="a",
        checkpoints=region.checkpoints,
        leases=region.leases,
        replicator=slow,
        clock=region.clock,
        lease_seconds=0.9,
        batch_size=5,
    )
    a.poll_once()
    assert written == slow.handed
    region.clock.at(region.clock.now + 1.5, slow.settle_all)  # type: ignore[attr-defined]
    a.finish()
    assert set(written) == slow.applied
    assert written[-1] == region.stored()
    assert {None} == {lease.owner for lease in region.leases.items.values()}  # released


class FailingTable:
    """One process's DescribeTable, failing the next ``times`` calls (the others' works)."""

    def __init__(self, streams: MemoryStreams, *, times: int) -> None:
        self.streams, self.times = streams, times

    def describe_table(self, **kwargs: Any) -> Any:
        if self.times:
            self.times -= 1
            raise client_error("InternalServerError", "DescribeTable", status=500)
        return self.streams.describe_table(**kwargs)


def test_leases_are_renewed_while_the_stream_backs_off() -> None:
    """Finding 3 of issue 16: renewal ran only in the poll's "due" block, so a stream-level
    backoff (up to 20 s) let every lease lapse and a standby took the shards of a live
    consumer. Renewal now has its own cadence."""
    region = Region()
    region.write(4)
    table = FailingTable(region.streams, times=0)
    a = region.consumer("a", ScriptedReplicator(), dynamodb=table)
    b = region.consumer("b", ScriptedReplicator())
    a.poll_once()
    b.poll_once()
    table.times = 8  # a's stream backs off 0.075 s, then twice as long each time, to 9.6 s
    region.clock.advance(61.0)  # DescribeTable is due
    assert a.leases is not None and b.leases is not None
    for _ in range(120):
        a.poll_once()
        b.poll_once()
        assert frozenset() == b.leases.held(), f"b took a's shard at {region.clock.now}"
        region.clock.advance(0.25)
    assert 0 == table.times
    assert a.leases.held()


class ListingHook(MemoryLeaseTable):
    """One process's view of the shared lease table: runs ``then`` once, right before its next
    listing (what other processes do between this one's reload and its lease tick)."""

    def __init__(self, shared: MemoryLeaseTable) -> None:
        super().__init__()
        self.items = shared.items
        self.then: Any = None

    def list(self, *, stream_arn: str) -> Any:
        if self.then is not None:
            then, self.then = self.then, None
            then()
        return super().list(stream_arn=stream_arn)


def test_a_lease_taken_starts_from_the_checkpoint_stored_when_it_was_taken() -> None:
    """The checkpoints a consumer reloads before its lease tick can be stale by the time the
    tick takes a lease: here the holder checkpoints further and stops between the two. The
    shard taken starts from its checkpoint as stored after the take (LeaseKeeper.last_taken),
    so nothing the holder applied is handed out again."""
    region = Region()
    written = region.write(8)
    a_sees, b_sees = ScriptedReplicator(), ScriptedReplicator()
    a = region.consumer("a", a_sees)
    b_leases = ListingHook(region.leases)
    b = leased_consumer(
        region.streams,
        name="b",
        checkpoints=region.checkpoints,
        leases=b_leases,
        replicator=b_sees,
        clock=region.clock,
        lease_seconds=LEASE,
    )
    a.poll_once()
    b.poll_once()
    assert written[1] == region.stored()

    def a_goes_on_then_stops() -> None:
        for _ in range(2):
            a.poll_once()
        a.finish()

    b_leases.then = a_goes_on_then_stops
    region.clock.advance(1.1)  # b's lease tick is due: reload, list (a stops), take
    for _ in range(4):
        b.poll_once()
    assert written[6:] == b_sees.handed
    assert written[-1] == region.stored()
    assert [] == region.backwards()
