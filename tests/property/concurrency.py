"""The replication state machine with deliveries really in flight (issue 22's proof: "under
concurrency, not only inline").

:class:`ReplicationMachine` runs each delivery to completion inside one rule and models
interleavings as writes landing just before a conditional write. Here each consumer hands its
batches to the product's :class:`service.engine.pipeline.Replicator` with ``submit``, as the
standalone consumer does, over a :class:`tests.doubles.SteppedExecutor`: every lane the
Replicator starts is held until a ``release`` rule steps it, and a stepped lane runs until
its next conditional write (:class:`tests.doubles.PausingTable`) or its end. So between a
lane's read and its write, and between its writes, any other rule may run: local writes and
deletes (stamped or raw), more deliveries of the same key, other lanes' writes, checkpoints
and crashes; lanes are released in whatever order the schedule draws. Only one thread runs at
a time, so a schedule replays exactly.

Fault model, beyond the inline machine's (STYLE.md 17):

* a crash drops the region's consumer and starts a new one from the checkpoint, but the lanes
  the old one started keep running when released (a process that has not noticed it lost its
  lease, a Lambda invocation past its timeout): stale versions arrive after newer ones, and
  after deletes. Their results are observed (what they wrote is real) but acknowledge nothing
  for the new consumer;
* a second consumer of a region (``replay``) replicates a few consecutive records of its
  stream from any earlier position (a lease taken over while its holder still runs, a
  restart from an old checkpoint), alongside the current one: duplicate records, out of
  order with what was applied since;
* a paused conditional write may be lost on its way (the destination unreachable): the
  record fails and is delivered again, in the same consumer's per-shard scope, once that
  consumer has nothing in flight (`Replicator.forget`, as the standalone consumer does).

A record is acknowledged (its checkpoint may pass it) only when its current consumer settles
it as not failed; the end checks are the inline machine's (identical images, a deleted key
absent from every table, the ground-truth account).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Mapping
from typing import Any, Literal

from hypothesis import strategies as st
from hypothesis.stateful import precondition, rule

from service.engine.pipeline import RecordResult, Replicator
from tests.doubles import PausingTable, SteppedExecutor
from tests.property.machine import Pending, ReplicationMachine, Unreachable

# A released write that never reaches its destination, one time in this many.
LOST_WRITE = [False] * 4 + [True]

# What `write_where_a_lane_waits` may do (put then delete: the key deleted where the paused
# lane read it absent, so only the store's tombstone stands in the insert's way).
LOCAL_WRITES = (
    "sdk_put",
    "sdk_delete",
    "sdk_put_then_delete",
    "raw_put",
    "raw_rmw",
    "raw_delete",
)

Settling = tuple[str, int | None, int, Mapping[str, Any], RecordResult]


class ConcurrentReplicationMachine(ReplicationMachine):
    def start(self, n: int, nkeys: int, skews: list[int]) -> None:
        self.executor = SteppedExecutor()
        # Each region's current consumer: its generation (a crash starts the next one), the
        # scope of its lanes (one shard's) and the stream positions it has in flight.
        self.generation: dict[str, int] = defaultdict(int)
        self.scopes: dict[str, object] = defaultdict(object)
        self.submitted: dict[str, set[int]] = defaultdict(set)
        # Results settled by lanes, taken in by the test's thread (`take_settled`).
        self.settling: list[Settling] = []
        super().start(n, nkeys, skews)

    def _replicator(self, region: str) -> Replicator:
        return Replicator(
            region=region,
            settings=self.settings,
            tables={r: PausingTable(t, self.executor) for r, t in self.tables.items()},
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            now_ms=lambda: self.now,
            executor=self.executor,
        )

    # -- consumers ---------------------------------------------------------------------------

    def ready(self, region: str) -> dict[str, list[Pending]]:
        """Per key, the records ``region``'s consumer may hand its Replicator now: those
        waiting, not in flight, and after every record of the key in flight (a failed record
        is delivered again only behind nothing: per-key order within the consumer)."""
        ready: dict[str, list[Pending]] = {}
        for key, lane in self.inflight[region].items():
            flying = [i for i, (p, _) in enumerate(lane) if p in self.submitted[region]]
            waiting = [i for i, (p, _) in enumerate(lane) if p not in self.submitted[region]]
            if waiting and (not flying or max(flying) < min(waiting)):
                ready[key] = [lane[i] for i in waiting]
        return ready

    def _sources(self) -> list[str]:
        return [r for r in self.regions if self.ready(r)]

    def submit(self, region: str, batch: list[Pending]) -> None:
        """``region``'s consumer hands ``batch`` (in stream order) to its Replicator, in its
        shard's scope; the records are in flight until their lanes settle them."""
        generation = self.generation[region]
        self.submitted[region] |= {position for position, _ in batch}

        def settled(index: int, result: RecordResult) -> None:  # from a lane's thread
            position, record = batch[index]
            self.settling.append((region, generation, position, record, result))

        self.replicators[region].submit(
            [record for _, record in batch], scope=self.scopes[region], on_settled=settled
        )
        self.take_settled()

    def take_settled(self) -> None:
        """Observe every result settled since the last call; acknowledge those of a current
        consumer that did not fail (a failed record waits to be delivered again). A consumer
        with nothing left in flight forgets its scope, so what a failure held back goes."""
        while self.settling:
            region, generation, position, record, result = self.settling.pop(0)
            self._observe(region, record, result)
            if generation != self.generation[region]:
                continue  # a crashed consumer's, or a second consumer's: acknowledges nothing
            self.submitted[region].discard(position)
            if result.status != "failed":
                lane = self.inflight[region][record["dynamodb"]["Keys"]["pk"]["S"]]
                lane[:] = [pending for pending in lane if pending[0] != position]
                self.trackers[region].done(position)
            if not self.submitted[region]:
                self.replicators[region].forget(self.scopes[region])
                self.scopes[region] = object()

    @precondition(lambda self: bool(self._sources()))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """One batch to one source's Replicator, submitted and left in flight: the first
        ready records of some of its keys (keys and sources reordered, each key in order).
        Some of the lanes it starts may run at once up to their first write (read done)."""
        source = data.draw(st.sampled_from(self._sources()))
        ready = self.ready(source)
        chosen = data.draw(st.lists(st.sampled_from(sorted(ready)), min_size=1, unique=True))
        batch: list[Pending] = []
        for key in chosen:
            batch += ready[key][: data.draw(st.integers(1, len(ready[key])))]
        before = set(map(id, self.executor.tasks))
        self.submit(source, sorted(batch, key=lambda p: p[0]))
        for task in [t for t in self.executor.tasks if id(t) not in before]:
            if task in self.executor.tasks and data.draw(st.booleans()):
                self.executor.step(task)
        self.take_settled()

    @precondition(lambda self: self.store and bool(self._sources()))
    @rule(data=st.data())
    def deliver_with_its_store_down(self, data: st.DataObject) -> None:
        """`deliver`'s batch submitted while the source's tombstone store cannot be read: the
        store reads `submit` makes fail (the lanes read later, when stepped). The inline
        machine's version waits for the batch, which the gated executor never runs."""
        source = data.draw(st.sampled_from(self._sources()))
        ready = self.ready(source)
        chosen = data.draw(st.lists(st.sampled_from(sorted(ready)), min_size=1, unique=True))
        batch = [p for key in chosen for p in ready[key][: data.draw(st.integers(1, 3))]]
        with self.store_down(source):
            self.submit(source, sorted(batch, key=lambda p: p[0]))
        self.take_settled()

    @precondition(lambda self: bool(self.executor.tasks))
    @rule(data=st.data())
    def release(self, data: st.DataObject) -> None:
        """Step a few lanes in flight, whichever the schedule draws, one after the other:
        each to its next conditional write (its read done), or through that write, which may
        be lost on the way."""
        tasks = list(self.executor.tasks)
        indices = st.lists(st.integers(0, len(tasks) - 1), min_size=1, max_size=3, unique=True)
        for task in [tasks[i] for i in data.draw(indices)]:
            if task not in self.executor.tasks:
                continue  # finished already: a lane runs every task queued on it
            fail = None
            if task.paused_at is not None and data.draw(st.sampled_from(LOST_WRITE)):
                fail = Unreachable(f"{task.paused_at[0]} is unreachable")
            self.executor.step(task, fail=fail)
            self.take_settled()
            # The invariant looks after each write, as it would between rules: a stale
            # version written over a tombstone that succeeds it is a region moving back.
            self.metadata_is_valid_and_never_moves_backwards()

    @precondition(lambda self: any(self.trackers[r].read_position for r in self.regions))
    @rule(data=st.data(), count=st.integers(1, 3))
    def replay(self, data: st.DataObject, count: int) -> None:
        """A second consumer of a region, alongside the current one: a few consecutive
        records of its stream from any position read already, in flight like any delivery;
        its results acknowledge nothing."""
        regions = [r for r in self.regions if self.trackers[r].read_position]
        region = data.draw(st.sampled_from(regions))
        end = self.trackers[region].read_position
        start = data.draw(st.integers(0, end - 1))
        records = self.tables[region].records_after(start, limit=min(count, end - start))
        batch = list(enumerate(records, start))

        def settled(index: int, result: RecordResult) -> None:
            position, record = batch[index]
            self.settling.append((region, None, position, record, result))

        self._replicator(region).submit(records, on_settled=settled)
        self.take_settled()

    def crash_region(self, region: str) -> None:
        """kill -9 of the consumer, not of its lanes: those in flight run on when released
        (a zombie), and the new consumer reads again from the checkpoint."""
        self.generation[region] += 1
        self.submitted[region] = set()
        self.scopes[region] = object()
        super().crash_region(region)

    # -- local writers -----------------------------------------------------------------------

    def do_raw_put(
        self,
        region: str,
        key: str,
        *,
        copy_meta: bool = False,
        wide: bool = False,
        read: dict[str, Any] | Literal["now"] | None = "now",
    ) -> None:
        """A raw put that lands while a lane is paused between its read and its write of
        this item counts as raced (as the inline machine's raced raw writes do)."""
        where = (region, {"pk": {"S": key}})
        self.racing = any(task.paused_at == where for task in self.executor.tasks)
        try:
            super().do_raw_put(region, key, copy_meta=copy_meta, wide=wide, read=read)
        finally:
            self.racing = False

    @precondition(lambda self: any(t.paused_at is not None for t in self.executor.tasks))
    @rule(data=st.data(), kind=st.sampled_from(LOCAL_WRITES))
    def write_where_a_lane_waits(self, data: st.DataObject, kind: str) -> None:
        """A local write of the very item a paused lane has read and is about to write, in
        that region: the interleavings where concurrency bites, drawn far more often than
        the uniform writers would meet them."""
        paused = [t.paused_at for t in self.executor.tasks if t.paused_at is not None]
        region, key = data.draw(st.sampled_from(paused))
        name = key["pk"]["S"]
        if kind in ("sdk_put", "sdk_put_then_delete"):
            self.do_sdk_put(region, name)
        if kind in ("sdk_delete", "sdk_put_then_delete"):
            self.do_sdk_delete(region, name)
        if kind in ("raw_put", "raw_rmw"):
            self.do_raw_put(region, name, copy_meta=kind == "raw_rmw")
        if kind == "raw_delete":
            self.do_raw_delete(region, name)

    # -- quiescence --------------------------------------------------------------------------

    def drain(self) -> None:
        """Every lane in flight finishes (crashed consumers' too), then every consumer reads
        its whole stream and delivers everything, until quiet."""
        for _ in range(5_000):
            progressed = bool(self.executor.tasks)
            self.executor.run_all()
            self.take_settled()
            for region in self.regions:
                progressed |= self._poll(region, limit=1_000)
            for region in self.regions:
                batch = [p for lane in self.ready(region).values() for p in lane]
                if batch:
                    self.submit(region, sorted(batch, key=lambda p: p[0]))
                    progressed = True
            if not progressed:
                return
        raise AssertionError("replication did not quiesce")

    def teardown(self) -> None:
        try:
            super().teardown()
        finally:
            if hasattr(self, "executor"):
                self.executor.abandon()
