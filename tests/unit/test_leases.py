"""Shard leases: the pure decision (service/core/leases.py) and the keeper over the in-memory
lease table (service/engine/leases.py)."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from service.adapters.leases import MemoryLeaseTable
from service.core.leases import (
    NEVER,
    Lease,
    Seen,
    condition_holds,
    decide,
    fair_share,
    observe,
)
from service.engine.leases import LeaseKeeper, new_worker_id, process_gone

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
SHARDS = ("s0", "s1", "s2", "s3")
L = 9.0


@dataclass
class Clock:
    now: float = 100.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def keeper(table: MemoryLeaseTable, owner: str, clock: Clock) -> LeaseKeeper:
    return LeaseKeeper(table, stream_arn=ARN, owner=owner, lease_seconds=L, clock=clock)


# -- the pure core ---------------------------------------------------------------------------


def test_a_write_succeeds_only_on_the_lease_as_listed() -> None:
    assert condition_holds(None, Lease("s0", None, 0))
    assert not condition_holds(Lease("s0", None, 1), Lease("s0", None, 0))
    assert condition_holds(Lease("s0", "a", 3), Lease("s0", "a", 3))
    assert not condition_holds(Lease("s0", "a", 4), Lease("s0", "a", 3))
    assert not condition_holds(Lease("s0", "b", 3), Lease("s0", "a", 3))
    assert not condition_holds(None, Lease("s0", "a", 3))


def test_a_lone_worker_takes_every_ready_shard_without_waiting() -> None:
    plan = decide([], ready=SHARDS, me="a", seen={}, now=0.0, lease_seconds=L)
    assert (set(SHARDS), 4, 1) == ({lease.shard for lease in plan.take}, plan.want, plan.workers)


def test_another_workers_lease_is_taken_only_after_its_counter_stood_still_for_lease_seconds() -> (
    None
):
    leases = [Lease("s0", "b", 5)]
    seen = observe({}, leases, me="a", at=10.0)
    early = decide(leases, ready=["s0"], me="a", seen=seen, now=10.0 + L - 0.1, lease_seconds=L)
    late = decide(leases, ready=["s0"], me="a", seen=seen, now=10.0 + L, lease_seconds=L)
    assert () == early.take
    assert (Lease("s0", "b", 5),) == late.take


def test_orphaned_shards_are_all_taken_even_beyond_the_fair_share() -> None:
    """Regression, found by tests/property/test_leases.py: capped at its share (which counted
    a worker that was dead but not yet lapsed), a worker left a dead holder's shard unread."""
    leases = [Lease("s0", "dead", 1), Lease("s1", "dead", 1), Lease("s2", "b", 1)]
    seen = observe({}, leases, me="a", at=0.0)
    seen["s2"] = Seen("b", 1, L)  # b's lease seen later: not lapsed yet
    plan = decide(leases, ready=["s0", "s1", "s2"], me="a", seen=seen, now=L, lease_seconds=L)
    assert (2, {"s0", "s1"}) == (plan.target, {lease.shard for lease in plan.take})
    assert 2 == plan.want


def test_a_renewal_restarts_the_observers_timer() -> None:
    seen = observe({}, [Lease("s0", "b", 5)], me="a", at=10.0)
    seen = observe(seen, [Lease("s0", "b", 6)], me="a", at=15.0)
    plan = decide([Lease("s0", "b", 6)], ready=["s0"], me="a", seen=seen, now=20.0, lease_seconds=L)
    assert () == plan.take


def test_an_unrecorded_write_naming_this_worker_counts_as_lapsed_until_renewed() -> None:
    """A renewal whose answer was lost: when it happened is unknown, so no reading on it."""
    seen = observe({"s0": Seen("a", 5, 10.0)}, [Lease("s0", "a", 6)], me="a", at=11.0)
    assert NEVER == seen["s0"].since
    plan = decide([Lease("s0", "a", 6)], ready=["s0"], me="a", seen=seen, now=11.0, lease_seconds=L)
    assert (Lease("s0", "a", 6),) == plan.renew


def test_leases_of_shards_no_longer_ready_are_released_and_asked_for_ones_handed_over() -> None:
    leases = [Lease("s0", "a", 1), Lease("s1", "a", 1, wanted_by="b"), Lease("s2", "a", 1)]
    plan = decide(leases, ready=["s1", "s2"], me="a", seen={}, now=0.0, lease_seconds=L)
    assert ({"s0"}, {"s1"}, {"s2"}) == (
        {lease.shard for lease in plan.release},
        {lease.shard for lease in plan.hand_over},
        {lease.shard for lease in plan.renew},
    )


def test_a_worker_under_its_share_asks_the_busiest_worker_for_one_lease() -> None:
    leases = [Lease(s, "b", 1) for s in SHARDS]
    seen = observe({}, leases, me="a", at=0.0)
    plan = decide(leases, ready=SHARDS, me="a", seen=seen, now=1.0, lease_seconds=L)
    assert (2, 2) == (plan.workers, plan.target)
    assert plan.request is not None and "b" == plan.request.owner
    asked = [*leases[:1], Lease(leases[1].shard, "b", 1, wanted_by="a"), *leases[2:]]
    again = decide(asked, ready=SHARDS, me="a", seen=seen, now=1.0, lease_seconds=L)
    assert None is again.request  # one ask at a time


def test_no_ask_when_the_shares_are_as_even_as_they_can_be() -> None:
    leases = [Lease("s0", "b", 1), Lease("s1", "b", 1), Lease("s2", "a", 1)]
    seen = observe({}, leases, me="a", at=0.0)
    plan = decide(leases, ready=["s0", "s1", "s2"], me="a", seen=seen, now=1.0, lease_seconds=L)
    assert (None, 2) == (plan.request, plan.target)


@pytest.mark.parametrize(("shards", "workers", "share"), [(4, 2, 2), (5, 2, 3), (1, 3, 1)])
def test_the_fair_share_rounds_up(shards: int, workers: int, share: int) -> None:
    assert share == fair_share(shards, workers)


# -- the keeper over the in-memory table -------------------------------------------------------


def test_two_keepers_share_four_shards_two_and_two() -> None:
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    assert set(SHARDS) == a.tick(SHARDS)
    for _ in range(6):
        clock.advance(a.renew_every)
        a.tick(SHARDS)
        b.tick(SHARDS)
    assert (2, 2) == (len(a.held()), len(b.held()))
    assert frozenset() == a.held() & b.held()


def test_a_standby_takes_a_dead_holders_shards_after_lease_seconds() -> None:
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    a.tick(SHARDS)
    b.tick(SHARDS)  # a holds everything: b starts timing a's leases now
    clock.advance(L - 0.5)
    assert frozenset() == b.tick(SHARDS)
    clock.advance(0.5)
    assert set(SHARDS) == b.tick(SHARDS)
    assert set(SHARDS) == b.last_taken
    assert not a.holds("s0")


def test_a_paused_holder_finds_on_its_next_tick_that_it_lost_its_leases() -> None:
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    a.tick(["s0"])
    b.tick(["s0"])
    clock.advance(L)  # a is paused: no renewal
    assert not a.holds("s0")
    assert {"s0"} == b.tick(["s0"])
    assert frozenset() == a.tick(["s0"])
    assert "b" == table.items[ARN, "s0"].owner


def test_an_asked_for_lease_is_handed_over_and_held_by_the_asker_after_its_renewal() -> None:
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    a.tick(["s0", "s1"])
    b.tick(["s0", "s1"])  # asks
    clock.advance(1.0)
    a.tick(["s0", "s1"])  # hands one over
    assert 1 == len(a.held())
    assert frozenset() == b.held()  # not before b's own write
    assert 1 == len(b.tick(["s0", "s1"]))
    assert frozenset() == a.held() & b.held()


def test_a_released_shard_is_taken_at_once() -> None:
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    a.tick(["s0"])
    a.release_all()
    assert not a.holds("s0")
    assert {"s0"} == b.tick(["s0"])


def test_errors_other_than_a_lost_condition_propagate() -> None:
    class Broken(MemoryLeaseTable):
        def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool:
            raise ConnectionError("throttled")

    k = LeaseKeeper(Broken(), stream_arn=ARN, owner="a", lease_seconds=L, clock=Clock())
    with pytest.raises(ConnectionError):
        k.tick(["s0"])
    assert frozenset() == k.held()


@pytest.mark.parametrize("give_up", ["release", "hand over"])
def test_a_holder_giving_a_lease_up_stops_holding_it_before_its_write_lands(give_up: str) -> None:
    """Regression, found by tests/property/test_leases.py: a worker paused after its release or
    hand-over landed, before the answer, still held the shard while the taker held it too."""
    clock = Clock()
    seen_during_write: list[bool] = []

    class Watching(MemoryLeaseTable):
        def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool:
            ok = super().put(new, stream_arn=stream_arn, expected=expected)
            if expected.owner == "a" and new.owner != "a":
                seen_during_write.append(a.holds(new.shard))
            return ok

    table = Watching()
    a = keeper(table, "a", clock)
    a.tick(["s0", "s1"])
    if give_up == "release":
        a.release("s0")
    else:
        keeper(table, "b", clock).tick(["s0", "s1"])  # asks a for one
        a.tick(["s0", "s1"])
    assert [False] == seen_during_write


def test_only_an_exited_process_of_this_host_counts_as_gone() -> None:
    """process_gone: this process is not gone, nor is a live child; a child that exited (and
    was reaped) is; a pid on another host name is never judged, whatever it is here."""
    host = new_worker_id().split(":")[0]  # the host's name, and its pid namespace on Linux
    child = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(30)"])
    try:
        assert False is process_gone(new_worker_id())
        assert False is process_gone(f"{host}:{os.getpid()}:01ABC")
        assert False is process_gone(f"{host}:{child.pid}:01ABC")
    finally:
        child.kill()
        child.wait()
    assert True is process_gone(f"{host}:{child.pid}:01ABC")
    assert False is process_gone(f"not-{host}:{child.pid}:01ABC")
    assert False is process_gone(f"{host}:not-a-pid:01ABC")


def test_a_live_process_seen_from_another_pid_namespace_of_the_same_host_is_not_gone() -> None:
    """Containers on one host name (Kubernetes hostNetwork pods, --uts=host) have pid
    namespaces of their own: a pid from another one means nothing here, so its owner must
    not be judged dead (it would lose a live lease at once, a second reader of its shards)."""
    command = ["unshare", "-r", "-p", "-f", "--mount-proc", sys.executable, "-c"]
    if subprocess.run([*command[:-2], "true"], capture_output=True).returncode != 0:
        pytest.skip("needs unshare with user and pid namespaces")
    check = (
        "import sys; from service.engine.leases import process_gone; "
        "print(process_gone(sys.argv[1]))"
    )
    answer = subprocess.run(
        [*command, check, new_worker_id()],
        capture_output=True,
        text=True,
        check=True,
        cwd=Path(__file__).parents[2],
    )
    assert "False" == answer.stdout.strip()


def test_a_holder_asked_for_a_lease_that_dies_is_taken_lease_seconds_after_its_last_write() -> None:
    """An ask leaves the lease's counter as it is, so it must not restart the asker's timer
    either: a holder that dies right after its last renewal loses its leases lease_seconds
    after the asker first saw that renewal, however late the asker asked."""
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    a.tick(["s0", "s1"])  # a's last write: it dies now
    b.tick([])  # b sees a's leases (nothing ready for b yet)
    clock.advance(L / 2)
    b.tick(["s0", "s1"])  # ready now: b asks a for one
    assert any(lease.wanted_by == "b" for lease in table.items.values())
    clock.advance(L / 2)
    assert {"s0", "s1"} == b.tick(["s0", "s1"])


def test_a_draining_keeper_renews_what_it_drains_and_takes_or_hands_over_nothing() -> None:
    """``tick(..., taking=False)`` (a consumer's graceful stop): the lease of the shard still in
    flight is renewed, even one another worker asked for (handing it over would start the
    asker from a checkpoint still moving); a free shard is not taken."""
    table, clock = MemoryLeaseTable(), Clock()
    a, b = keeper(table, "a", clock), keeper(table, "b", clock)
    a.tick(["s0", "s1"])
    b.tick(["s0", "s1"])  # asks a for one
    asked = next(lease.shard for lease in table.items.values() if lease.wanted_by == "b")
    a.release("s1" if asked == "s0" else "s0")  # the other is free (its flow lost, draining)
    clock.advance(1.0)
    assert {asked} == a.tick(["s0", "s1"], taking=False)
    assert {asked: "a"} == {
        lease.shard: lease.owner for lease in table.items.values() if lease.owner is not None
    }
