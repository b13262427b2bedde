"""A stateful test of a region's consumer processes sharing its shards: two or three real
StreamConsumers over one in-memory stream (service/adapters/streams_memory.py), one checkpoint
table, one lease table and one fake clock, each handing records to a destination that keeps
them in flight until the test settles them.

Fault model: processes start late, die (kill -9: their records in flight never settle), pause
(they are simply not polled while time passes, so their leases lapse mid-window), stop
gracefully while a slow destination drains (`finish`, the destination answering after up to
three lease periods); records fail at the destination; shards split.

Properties:
* a stored checkpoint never moves backwards, and never passes a record no destination applied;
* only the holder of a shard's lease saves a position or a finish for it (discovery only
  creates);
* after settling (every process polled, every record settled, for a while), no shard has two
  readers: at most one process holds its lease and at most one reads it;
* at the end nothing is skipped: every record written was applied.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    invariant,
    precondition,
    rule,
)

from service.adapters.checkpoints import MemoryCheckpoints, MemoryCheckpointTable
from service.adapters.leases import MemoryLeaseTable
from service.adapters.streams_memory import MemoryStreams, StreamedRecord
from service.engine.consumer import StreamConsumer
from service.ports import ShardState
from tests.doubles import Clock, HeldReplicator, leased_consumer

KEYS = ("k0", "k1", "k2")
LEASE = 3.0
STEPS = (0.1, 0.5, 1.0, LEASE / 2, LEASE + 0.5)


class FakeWake:
    """The consumer's wake-up event, whose wait moves the shared clock instead of sleeping and
    lets a slow destination answer once its time came (`finish` waits on it)."""

    def __init__(self, clock: Clock) -> None:
        self.clock = clock
        self.flag = False
        self.alarm: tuple[float, Callable[[], None]] | None = None

    def set(self) -> None:
        self.flag = True

    def clear(self) -> None:
        self.flag = False

    def is_set(self) -> bool:
        return self.flag

    def wait(self, timeout: float | None = None) -> bool:
        if not self.flag:
            self.clock.advance(timeout or 0.0)
        if self.alarm is not None and self.alarm[0] <= self.clock.now:
            _, action = self.alarm
            self.alarm = None
            action()
        return self.flag


class Guarded(MemoryCheckpoints):
    """One process's view of a stream's shared checkpoints: checks that a save naming a
    position or a finish comes from the shard's lease holder."""

    def __init__(self, shared: MemoryCheckpoints, process: Process) -> None:
        super().__init__()
        self.shared, self.process = shared, process
        self.shards, self.repairs = shared.shards, shared.repairs

    def save(self, shard_id: str, state: ShardState) -> bool:
        if state.sequence is not None or state.finished:
            leases = self.process.consumer.leases
            assert leases is not None and leases.holds(shard_id), (
                f"{self.process.name} saved {state} for {shard_id} without its lease"
            )
            # The store would refuse it; the holder should not even try (it read from a
            # position it did not take from the store).
            stored = self.shards.get(shard_id)
            assert stored is None or not stored.finished, f"{state} over finished {shard_id}"
            if stored is not None and stored.sequence is not None and not state.finished:
                assert state.sequence is not None and int(state.sequence) > int(stored.sequence), (
                    f"{self.process.name} saved {state} over {stored} for {shard_id}"
                )
        return self.shared.save(shard_id, state)


class GuardedTable(MemoryCheckpointTable):
    def __init__(self, shared: MemoryCheckpointTable, process: Process) -> None:
        super().__init__()
        self.shared, self.process = shared, process

    def for_stream(self, stream_arn: str) -> MemoryCheckpoints:
        return Guarded(self.shared.for_stream(stream_arn), self.process)

    def followed_stream(self) -> str | None:
        return self.shared.followed_stream()

    def follow(self, stream_arn: str) -> None:
        self.shared.follow(stream_arn)


@dataclass
class Process:
    name: str
    destination: HeldReplicator
    wake: FakeWake
    consumer: StreamConsumer = field(init=False)


class ConsumersMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.clock = Clock()
        self.streams = MemoryStreams(clock=self.clock)
        self.checkpoints = MemoryCheckpointTable()
        self.leases = MemoryLeaseTable()
        self.processes: dict[str, Process] = {}
        self.started = 0
        self.destinations: list[HeldReplicator] = []  # every process's, the dead's included
        self.written: list[StreamedRecord] = []
        self.failed: set[str] = set()  # sequences a destination answered with a failure
        self.positions: dict[str, float] = {}  # shard -> the stored position seen last
        self.start()

    # -- helpers -------------------------------------------------------------------------------

    def applied(self) -> set[str]:
        return {s for d in self.destinations for s in d.applied}

    def stored(self) -> dict[str, ShardState]:
        return {
            s: st for store in self.checkpoints.streams.values() for s, st in store.shards.items()
        }

    def turn(self, process: Process) -> None:
        process.consumer.poll_once()
        self.check()

    # -- rules ---------------------------------------------------------------------------------

    @precondition(lambda self: len(self.processes) < 3)
    @rule()
    def start(self) -> None:
        """A process starts (late, beside running ones, or after all died)."""
        name = f"p{self.started}"
        self.started += 1
        destination = HeldReplicator()
        process = Process(name, destination, FakeWake(self.clock))
        process.consumer = leased_consumer(
            self.streams,
            name=name,
            checkpoints=GuardedTable(self.checkpoints, process),
            leases=self.leases,
            replicator=destination,
            clock=self.clock,
            lease_seconds=LEASE,
            batch_size=2,
            window_records=4,
            wake=process.wake,  # type: ignore[arg-type]
        )
        self.processes[name] = process
        self.destinations.append(destination)

    @rule(keys=st.lists(st.sampled_from(KEYS), min_size=1, max_size=4))
    def write(self, keys: list[str]) -> None:
        for key in keys:
            record = self.streams.write(key)
            assert record is not None
            self.written.append(record)

    @precondition(lambda self: len(self.streams.open_shards()) < 3)
    @rule(data=st.data())
    def split(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(self.streams.open_shards()), label="splits")
        self.streams.split(shard, children=data.draw(st.sampled_from([1, 2]), label="into"))

    @rule(seconds=st.sampled_from(STEPS))
    def advance(self, seconds: float) -> None:
        """Time passes; whoever is not polled now is paused."""
        self.clock.advance(seconds)

    @precondition(lambda self: bool(self.processes))
    @rule(data=st.data(), times=st.integers(1, 4), every=st.sampled_from([0.0, 0.3, 1.0]))
    def poll(self, data: st.DataObject, times: int, every: float) -> None:
        name = data.draw(st.sampled_from(sorted(self.processes)), label="polls")
        for _ in range(times):
            self.turn(self.processes[name])
            self.clock.advance(every)

    @precondition(lambda self: bool(self.processes))
    @rule(data=st.data())
    def poll_all(self, data: st.DataObject) -> None:
        for name in data.draw(st.permutations(sorted(self.processes)), label="order"):
            self.turn(self.processes[name])
        self.clock.advance(0.5)

    @precondition(lambda self: any(p.destination.held for p in self.processes.values()))
    @rule(data=st.data(), count=st.integers(1, 4), failed=st.booleans())
    def destination_answers(self, data: st.DataObject, count: int, failed: bool) -> None:
        busy = sorted(n for n, p in self.processes.items() if p.destination.held)
        name = data.draw(st.sampled_from(busy), label="answers")
        settled = self.processes[name].destination.settle(count, failed=failed)
        if failed:
            self.failed.update(settled)

    @precondition(lambda self: bool(self.processes))
    @rule(data=st.data())
    def die(self, data: st.DataObject) -> None:
        """kill -9: the process's records in flight never settle, its leases lapse."""
        name = data.draw(st.sampled_from(sorted(self.processes)), label="dies")
        del self.processes[name]

    @precondition(lambda self: bool(self.processes))
    @rule(data=st.data(), after=st.sampled_from([0.0, 0.5, LEASE, 3 * LEASE]))
    def stop(self, data: st.DataObject, after: float) -> None:
        """A graceful stop while the destination takes ``after`` seconds to apply what is in
        flight: the process drains, checkpoints what was applied, releases its leases."""
        name = data.draw(st.sampled_from(sorted(self.processes)), label="stops")
        process = self.processes.pop(name)
        consumer = process.consumer
        # What the stop must checkpoint: every shard read under a lease held now, up to the
        # last record handed out (the destination applies everything in flight).
        # A record the destination failed and nothing applied since is not owed, nor anything
        # after it: the next holder replays it (found by a deep run, seed 4282501956: the
        # failure settled just before the stop, so the flow had not taken it in yet).
        unapplied = self.failed - process.destination.applied
        owed = {
            shard: max(
                int(sequence)
                for sequence in flow.sequences.values()
                if sequence and int(sequence) < first_failed
            )
            for shard, flow in consumer._flows.items()
            if consumer.leases is not None and consumer.leases.holds(shard)
            if not flow.lost and flow.failed is None and any(flow.sequences.values())
            for first_failed in [
                min(
                    [int(q) for q in flow.sequences.values() if q and q in unapplied],
                    default=math.inf,
                )
            ]
            if any(s and int(s) < first_failed for s in flow.sequences.values())
        }
        process.wake.alarm = (self.clock.now + after, process.destination.settle_all)
        consumer.finish(timeout=10 * LEASE)
        assert not consumer.busy, "finish gave up while the destination answered"
        self.check()
        for shard, sequence in owed.items():
            assert self.positions.get(shard, -1) >= sequence, (
                f"{name} stopped without checkpointing {shard} up to {sequence}"
            )

    # -- properties ----------------------------------------------------------------------------

    @invariant()
    def check(self) -> None:
        applied = self.applied()
        for shard, state in self.stored().items():
            at = math.inf if state.finished else int(state.sequence or -1)
            assert at >= self.positions.get(shard, -1), f"{shard} went back to {state}"
            self.positions[shard] = at
        for record in self.written:
            at = self.positions.get(record.shard_id, -1)
            if at >= record.sequence:
                assert str(record.sequence) in applied, (
                    f"the checkpoint of {record.shard_id} passed {record.sequence}, never applied"
                )

    def settle(self) -> None:
        """Every process polled and every record in flight answered, until nothing moves."""
        if not self.processes:
            self.start()
        quiet = 0
        for _ in range(1000):
            for name in sorted(self.processes):
                self.turn(self.processes[name])
                self.processes[name].destination.settle_all()
            self.clock.advance(0.5)
            done = {str(r.sequence) for r in self.written} <= self.applied()
            quiet = quiet + 1 if done else 0
            if quiet > 4 * LEASE:  # two lease periods with nothing left to apply
                return

    @rule()
    def settle_and_check_one_reader_per_shard(self) -> None:
        self.settle()
        for shard in self.streams.lineage:
            holders = [
                n
                for n, p in self.processes.items()
                if p.consumer.leases is not None and p.consumer.leases.holds(shard)
            ]
            readers = [
                n
                for n, p in self.processes.items()
                if shard in p.consumer._flows and not p.consumer._flows[shard].lost
            ]
            assert len(holders) <= 1, f"{shard} held by {holders}"
            assert len(readers) <= 1, f"{shard} read by {readers}"

    def teardown(self) -> None:
        self.settle()
        missing = [str(r.sequence) for r in self.written if str(r.sequence) not in self.applied()]
        assert [] == missing, "written, never applied"


TestConsumers = ConsumersMachine.TestCase


def test_the_machine_runs_with_three_processes_a_split_and_a_slow_stop() -> None:
    """A named schedule through every rule, so a change that breaks one shows at once."""
    m = ConsumersMachine()
    m.write(["k0", "k1", "k2", "k0"])
    m.start()
    m.poll_all(Scripted(["p0", "p1"]))  # type: ignore[arg-type]
    m.split(Scripted(m.streams.open_shards()[0], 2))  # type: ignore[arg-type]
    m.write(["k1", "k2"])
    m.start()
    m.poll_all(Scripted(["p2", "p1", "p0"]))  # type: ignore[arg-type]
    m.destination_answers(Scripted("p0"), count=1, failed=True)  # type: ignore[arg-type]
    m.advance(LEASE + 0.5)
    m.poll(Scripted("p1"), times=3, every=1.0)  # type: ignore[arg-type]
    m.stop(Scripted("p1"), after=3 * LEASE)  # type: ignore[arg-type]
    m.die(Scripted("p0"))  # type: ignore[arg-type]
    m.settle_and_check_one_reader_per_shard()
    m.teardown()


def test_a_graceful_stop_just_after_a_failed_answer_owes_no_checkpoint_past_it() -> None:
    """Found by a deep run (seed 4282501956), a fault of the machine's own account: the
    destination failed two records just before a graceful stop, the flow had not taken the
    failure in yet, and the stop was asked to checkpoint past them. The consumer was right
    not to (the next holder replays them); the account now owes nothing from a failed record
    on."""
    m = ConsumersMachine()
    m.write(["k0"])
    m.settle_and_check_one_reader_per_shard()
    m.settle_and_check_one_reader_per_shard()
    m.stop(Scripted("p0"), after=3.0)  # type: ignore[arg-type]
    m.write(["k0", "k2", "k0", "k2"])
    m.advance(0.5)
    m.start()
    m.split(Scripted("shardId-00000000000000000001-8cdab36c", 2))  # type: ignore[arg-type]
    m.write(["k1"])
    m.poll_all(Scripted(["p1"]))  # type: ignore[arg-type]
    m.destination_answers(Scripted("p1"), count=2, failed=True)  # type: ignore[arg-type]
    m.write(["k1", "k1", "k1", "k1"])
    m.write(["k0"])
    m.stop(Scripted("p1"), after=3.0)  # type: ignore[arg-type]
    m.teardown()


class Scripted:
    """Stands in for ``st.data()``: hands out the given draws in order."""

    def __init__(self, *draws: object) -> None:
        self.draws = list(draws)

    def draw(self, strategy: object, label: str = "") -> object:
        return self.draws.pop(0)
