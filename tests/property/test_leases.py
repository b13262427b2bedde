"""Shard leases under a fault model: several LeaseKeepers over one in-memory lease table.

Fault model: workers start (each with its own monotonic clock: an arbitrary offset, the same
rate), die without releasing, pause for whole ticks, or pause in the middle of a tick (after
listing, before or after one of their writes) while the others go on; shards become ready and
finish. Time moves in ticks of ``lease_seconds / 3``, and every running worker ticks once per
tick, in an order Hypothesis picks.

Properties:
* at most one holder: at any time, a shard is held (``holds``) by at most one worker, paused
  ones included, and whoever holds it is the owner stored in the table;
* liveness: a ready shard not held by a running worker is taken within ``lease_seconds`` plus
  one tick of the later of its last holder's last sign of life (holding it, or a write of its
  lease landing) and some worker running without pause (a dead holder's shards included);
* fair share: after settling (a dozen ticks with no other event), every ready shard is held
  and each running worker holds between floor and ceil of ready shards / running workers.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
    run_state_machine_as_test,
)

from service.adapters.leases import MemoryLeaseTable
from service.core.leases import Lease
from service.engine.leases import LeaseKeeper

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
POOL = ("s0", "s1", "s2", "s3")
LEASE_SECONDS = 3.0
TICK = LEASE_SECONDS / 3
SETTLE_TICKS = 12


@dataclass
class Worker:
    name: str
    keeper: LeaseKeeper
    running_since: float
    dead: bool = False
    paused_ticks: int = 0  # whole ticks skipped
    mid_tick: bool = False  # paused inside its own tick

    @property
    def running(self) -> bool:
        return not (self.dead or self.paused_ticks or self.mid_tick)


class PausingTable:
    """One worker's view of the shared table: can stop the worker around one of its writes
    while the rest of the world runs (a GC pause between deciding and writing)."""

    def __init__(self, table: MemoryLeaseTable, machine: LeaseMachine, name: str) -> None:
        self.table, self.machine, self.name = table, machine, name
        self.pause: tuple[int, int, bool] | None = None  # (nth write, ticks, after the write)
        self.writes = 0

    def list(self, *, stream_arn: str) -> list[Lease]:
        return self.table.list(stream_arn=stream_arn)

    def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool:
        pause, self.writes = self.pause, self.writes + 1
        if pause is not None and pause[0] == self.writes and not pause[2]:
            self.pause = None
            self.machine.world_runs_without(self.name, pause[1])
        ok = self.table.put(new, stream_arn=stream_arn, expected=expected)
        if ok and new.owner is not None:
            self.machine.shards[new.shard].last_held = self.machine.now  # a live holder wrote
        if pause is not None and pause[0] == self.writes and pause[2]:
            self.pause = None
            self.machine.world_runs_without(self.name, pause[1])
        return ok


@dataclass
class ShardWatch:
    ready: bool = False
    # When a live worker last held it, or wrote it as its own (a renewal that lands while its
    # writer is paused, which then dies), or it became ready.
    last_held: float = 0.0


class LeaseMachine(RuleBasedStateMachine):
    def __init__(self) -> None:
        super().__init__()
        self.now = 0.0
        self.table = MemoryLeaseTable()
        self.workers: dict[str, Worker] = {}
        self.proxies: dict[str, PausingTable] = {}
        self.shards: dict[str, ShardWatch] = {s: ShardWatch() for s in POOL}
        self.finished: set[str] = set()

    # -- helpers -------------------------------------------------------------------------------

    def ready(self) -> list[str]:
        return sorted(s for s, w in self.shards.items() if w.ready)

    def alive(self) -> list[Worker]:
        return [w for w in self.workers.values() if not w.dead]

    def tick_world(self, order: list[str], *, without: str | None = None) -> None:
        self.now += TICK
        ready = self.ready()
        for name in order:
            worker = self.workers[name]
            if worker.dead or worker.mid_tick or name == without:
                continue
            if worker.paused_ticks:
                worker.paused_ticks -= 1
                if not worker.paused_ticks:
                    worker.running_since = self.now
                continue
            self.proxies[name].writes = 0
            worker.keeper.tick(ready)
        self.check_one_holder()
        self.check_liveness()

    def world_runs_without(self, name: str, ticks: int) -> None:
        worker = self.workers[name]
        worker.mid_tick = True
        for _ in range(ticks):
            self.tick_world(sorted(self.workers), without=name)
        worker.mid_tick = False
        worker.running_since = self.now

    def holders(self, shard: str) -> list[str]:
        return [w.name for w in self.alive() if w.keeper.holds(shard)]

    # -- properties ----------------------------------------------------------------------------

    def check_one_holder(self) -> None:
        for shard in POOL:
            holders = self.holders(shard)
            assert len(holders) <= 1, f"{shard} held by {holders} at {self.now}"
            for name in holders:
                stored = self.table.items.get((ARN, shard))
                assert stored is not None and name == stored.owner, (shard, name, stored)

    def check_liveness(self) -> None:
        # A paused holder still holds its shards until its lease runs out on its own clock.
        alive = self.alive()
        running = [w for w in alive if w.running]
        for shard, watch in self.shards.items():
            if not watch.ready:
                continue
            if any(w.keeper.holds(shard) for w in alive):
                watch.last_held = self.now
                continue
            for worker in running:
                waited = self.now - max(watch.last_held, worker.running_since)
                assert waited <= LEASE_SECONDS + TICK + 1e-9, (
                    f"{shard} unheld for {waited} s while {worker.name} ran (at {self.now})"
                )

    @invariant()
    def at_most_one_holder(self) -> None:
        self.check_one_holder()

    # -- rules ---------------------------------------------------------------------------------

    @initialize(ready=st.sets(st.sampled_from(POOL), min_size=1, max_size=3))
    def make_ready(self, ready: set[str]) -> None:
        for shard in ready:
            self.shards[shard].ready = True

    @precondition(lambda self: len(self.alive()) < 3 and len(self.workers) < 6)
    @rule(offset=st.integers(-1000, 1000))
    def start_worker(self, offset: int) -> None:
        name = f"w{len(self.workers)}"
        proxy = PausingTable(self.table, self, name)
        keeper = LeaseKeeper(
            proxy,
            stream_arn=ARN,
            owner=name,
            lease_seconds=LEASE_SECONDS,
            clock=lambda: self.now + offset,
        )
        self.workers[name] = Worker(name, keeper, running_since=self.now)
        self.proxies[name] = proxy

    @precondition(lambda self: bool(self.workers))
    @rule(data=st.data())
    def tick(self, data: st.DataObject) -> None:
        order = data.draw(st.permutations(sorted(self.workers)), label="order")
        self.tick_world(order)

    @precondition(lambda self: bool(self.alive()))
    @rule(data=st.data())
    def kill(self, data: st.DataObject) -> None:
        worker = data.draw(st.sampled_from(self.alive()), label="dies")
        worker.dead = True

    @precondition(lambda self: any(w.running for w in self.workers.values()))
    @rule(data=st.data(), ticks=st.integers(1, 6))
    def pause(self, data: st.DataObject, ticks: int) -> None:
        running = [w for w in self.workers.values() if w.running]
        worker = data.draw(st.sampled_from(running), label="pauses")
        worker.paused_ticks = ticks

    @precondition(lambda self: any(w.running for w in self.workers.values()))
    @rule(data=st.data(), nth=st.integers(1, 3), ticks=st.integers(1, 6), after=st.booleans())
    def pause_mid_tick(self, data: st.DataObject, nth: int, ticks: int, after: bool) -> None:
        """The worker lists and decides, then stops around its nth write while time goes on."""
        running = [w for w in self.workers.values() if w.running]
        worker = data.draw(st.sampled_from(running), label="pauses mid-tick")
        proxy = self.proxies[worker.name]
        proxy.pause, proxy.writes = (nth, ticks, after), 0
        worker.keeper.tick(self.ready())
        proxy.pause = None
        self.check_one_holder()

    @precondition(lambda self: any(not w.ready for s, w in self.shards.items()))
    @rule(data=st.data())
    def shard_becomes_ready(self, data: st.DataObject) -> None:
        candidates = [s for s in POOL if not self.shards[s].ready and s not in self.finished]
        if candidates:
            shard = data.draw(st.sampled_from(candidates), label="ready")
            self.shards[shard] = ShardWatch(ready=True, last_held=self.now)

    @precondition(lambda self: len([w for w in self.shards.values() if w.ready]) > 1)
    @rule(data=st.data())
    def shard_finishes(self, data: st.DataObject) -> None:
        shard = data.draw(st.sampled_from(self.ready()), label="finishes")
        self.shards[shard].ready = False
        self.finished.add(shard)
        for name in self.holders(shard):
            self.workers[name].keeper.release(shard)

    @rule()
    def settle(self) -> None:
        """A dozen ticks with nothing else: every ready shard held, shares even."""
        for _ in range(SETTLE_TICKS):
            self.tick_world(sorted(self.workers))
        running = [w for w in self.workers.values() if w.running]
        if not running:
            return
        ready = self.ready()
        counts = {w.name: sum(w.keeper.holds(s) for s in ready) for w in running}
        assert len(ready) == sum(counts.values()), (ready, counts)
        low, high = len(ready) // len(running), math.ceil(len(ready) / len(running))
        assert all(low <= n <= high for n in counts.values()), (ready, counts)


def test_leases_one_holder_liveness_and_fair_share() -> None:
    """The three properties of the module docstring, over the in-memory table."""
    run_state_machine_as_test(LeaseMachine)


class Scripted:
    """Stands in for ``st.data()``: hands out the given draws in order."""

    def __init__(self, *draws: object) -> None:
        self.draws = list(draws)

    def draw(self, strategy: object, label: str = "") -> object:
        return self.draws.pop(0)


def test_a_renewal_landing_while_its_writer_is_paused_counts_as_a_sign_of_life() -> None:
    """Regression (the liveness check, not the product): w0 renews while paused, then dies;
    w1 takes s0 lease_seconds + one tick after that renewal landed, which the check had timed
    from w0's last hold seen before the pause."""
    m = LeaseMachine()
    m.make_ready(ready={"s0"})
    m.start_worker(offset=0)
    m.start_worker(offset=0)
    w0 = m.workers["w0"]
    m.pause_mid_tick(Scripted(w0), nth=1, ticks=2, after=True)  # type: ignore[arg-type]
    m.pause_mid_tick(Scripted(w0), nth=1, ticks=1, after=False)  # type: ignore[arg-type]
    m.kill(Scripted(w0))  # type: ignore[arg-type]
    m.settle()
    assert "w1" == m.table.items[ARN, "s0"].owner
