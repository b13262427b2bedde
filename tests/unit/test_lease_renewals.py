"""LeaseKeeper's renewals in flight at once (``renew_concurrency``): the same leases held and
remembered as one after another, and an error raised only once every renewal answered. No
timing here: bench/leases.py measures how long 1,000 renewals take."""

from __future__ import annotations

import threading

import pytest

from service.adapters.leases import MemoryLeaseTable
from service.core.leases import Lease
from service.engine.leases import LeaseKeeper

ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01-01T00:00:00.000"
SHARDS = [f"s{i:03d}" for i in range(40)]


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def holding_all(table: MemoryLeaseTable, *, concurrency: int, clock: Clock) -> LeaseKeeper:
    keeper = LeaseKeeper(
        table,
        stream_arn=ARN,
        owner="a",
        lease_seconds=9.0,
        clock=clock,
        renew_concurrency=concurrency,
    )
    assert frozenset(SHARDS) == keeper.tick(SHARDS)  # a lone worker takes every shard
    return keeper


def test_renewals_in_flight_at_once_end_where_renewals_one_by_one_end() -> None:
    """Two keepers, one renewing one lease at a time and one renewing 8 at a time, over
    tables in the same state: the same leases held, the same counters stored, the same
    timers remembered."""
    outcomes = []
    for concurrency in (1, 8):
        table, clock = MemoryLeaseTable(), Clock()
        keeper = holding_all(table, concurrency=concurrency, clock=clock)
        clock.now += 3.0
        held = keeper.tick(SHARDS)
        outcomes.append((held, table.list(stream_arn=ARN), dict(keeper.seen)))
    assert outcomes[0] == outcomes[1]
    held, leases, seen = outcomes[1]
    assert frozenset(SHARDS) == held
    assert {2} == {lease.counter for lease in leases}  # taken, then renewed once
    assert {103.0} == {s.since for s in seen.values()}  # timed from before the renewals left


class FailingOn(MemoryLeaseTable):
    """Refuses to answer for one shard (a DynamoDB error other than a lost condition), and
    records which threads the renewals came from."""

    def __init__(self, shard: str) -> None:
        super().__init__()
        self.shard, self.failing = shard, False
        self.threads: set[int] = set()

    def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool:
        self.threads.add(threading.get_ident())
        if self.failing and new.shard == self.shard:
            raise ConnectionError("reset by peer")
        return super().put(new, stream_arn=stream_arn, expected=expected)


def test_a_failed_renewal_is_raised_after_the_others_are_done_and_remembered() -> None:
    """One renewal failing among 40 sent 8 at a time: the other 39 are stored and remembered
    (the next listing agrees with what the keeper thinks), the failed one keeps the timer it
    had, and the error reaches the caller, as one after another."""
    table, clock = FailingOn("s017"), Clock()
    keeper = holding_all(table, concurrency=8, clock=clock)
    before = keeper.seen["s017"]
    table.failing, table.threads = True, set()
    clock.now += 3.0
    with pytest.raises(ConnectionError):
        keeper.tick(SHARDS)
    stored = {lease.shard: lease.counter for lease in table.list(stream_arn=ARN)}
    assert 1 == stored["s017"]
    assert {2} == {c for shard, c in stored.items() if shard != "s017"}
    assert before == keeper.seen["s017"]
    assert {103.0} == {s.since for shard, s in keeper.seen.items() if shard != "s017"}
    assert 1 < len(table.threads)  # sent from a pool, not the caller's thread alone
