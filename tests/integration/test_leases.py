"""Shard leases in the checkpoint table over HTTP (the embedded moto server): the DynamoDB lease
table agrees with the in-memory one write for write, shares shards, and hands a dead worker's
shards to a live one; lease items never look like checkpoints or repair markers."""

from __future__ import annotations

import time

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.checkpoints import DynamoCheckpoints, DynamoCheckpointTable
from service.adapters.leases import DynamoLeaseTable, MemoryLeaseTable
from service.core.leases import Lease, absent, handed_over, released, renewed, requested, taken
from service.engine.leases import LeaseKeeper, new_worker_id
from service.ports import ShardState

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
TABLE = "georep-checkpoints"
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"
OTHER = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-12-01T00:00:00.000"
SHARDS = ("shardId-0", "shardId-1", "shardId-2", "shardId-3")


class Clock:
    def __init__(self) -> None:
        self.now = 50.0

    def __call__(self) -> float:
        return self.now


def lease_table(backend: EmbeddedBackend) -> DynamoLeaseTable:
    table = DynamoLeaseTable(backend.client("dynamodb", REGION), table_name=TABLE)
    table.ensure_table()
    return table


def test_the_dynamodb_lease_table_answers_every_conditional_write_as_the_memory_one(
    backend: EmbeddedBackend,
) -> None:
    """Differential: the same writes, stale ones included, succeed or fail alike, and both list
    the same leases; another stream's leases and the checkpoints stay out of the listing."""
    dynamo, memory = lease_table(backend), MemoryLeaseTable()
    s = "shardId-0"
    first = taken(absent(s), by="a")
    second = renewed(first)
    asked = requested(second, by="b")
    given = handed_over(asked)
    writes = [
        (first, absent(s)),  # first take
        (first, absent(s)),  # again: the item exists now
        (second, first),  # renewal
        (renewed(first), first),  # a stale renewal
        (taken(first, by="c"), first),  # a stale take
        (asked, second),  # an ask
        (given, second),  # hand-over (the ask keeps the counter)
        (released(given), given),  # release
        (taken(released(given), by="c"), released(given)),  # take a free lease
        (taken(given, by="d"), given),  # a stale take of a no longer held lease
    ]
    for new, expected in writes:
        assert memory.put(new, stream_arn=ARN, expected=expected) == dynamo.put(
            new, stream_arn=ARN, expected=expected
        ), (new, expected)
    dynamo.put(taken(absent("shardId-9"), by="z"), stream_arn=OTHER, expected=absent("shardId-9"))
    DynamoCheckpoints(backend.client("dynamodb", REGION), table_name=TABLE, stream_arn=ARN).save(
        s, ShardState(sequence="100")
    )
    assert memory.list(stream_arn=ARN) == dynamo.list(stream_arn=ARN)
    assert [Lease(s, owner="c", counter=5)] == dynamo.list(stream_arn=ARN)


def test_lease_items_are_neither_checkpoints_nor_repair_markers(backend: EmbeddedBackend) -> None:
    client = backend.client("dynamodb", REGION)
    dynamo = lease_table(backend)
    # NOTE: repair_markers() tells a marker by the part after the last "|", so only a shard id
    # spelt "__needs_repair__" would pass for one; DynamoDB's are "shardId-<digits>-<hex>".
    for shard in ("shardId-00000001700000000000-0a1b2c3d", "shardId-0"):
        dynamo.put(taken(absent(shard), by="a"), stream_arn=ARN, expected=absent(shard))
    checkpoints = DynamoCheckpoints(client, table_name=TABLE, stream_arn=ARN)
    checkpoints.save("shardId-0", ShardState(sequence="7"))
    table = DynamoCheckpointTable(client, table_name=TABLE, replica_table="orders")
    assert {"shardId-0": ShardState(sequence="7")} == checkpoints.load()
    assert [] == table.repair_markers()


def test_two_keepers_share_four_shards_two_and_two(backend: EmbeddedBackend) -> None:
    table, clock = lease_table(backend), Clock()
    a = LeaseKeeper(table, stream_arn=ARN, owner="a", lease_seconds=0.5, clock=clock)
    b = LeaseKeeper(table, stream_arn=ARN, owner="b", lease_seconds=0.5, clock=clock)
    assert set(SHARDS) == a.tick(SHARDS)
    for _ in range(4):
        clock.now += a.renew_every
        a.tick(SHARDS)
        b.tick(SHARDS)
    assert (2, 2) == (len(a.held()), len(b.held()))
    assert set(SHARDS) == a.held() | b.held()
    assert {lease.shard: lease.owner for lease in table.list(stream_arn=ARN)} == {
        **dict.fromkeys(a.held(), "a"),
        **dict.fromkeys(b.held(), "b"),
    }


def test_a_keeper_that_stops_renewing_loses_its_shards_after_lease_seconds(
    backend: EmbeddedBackend,
) -> None:
    table, clock = lease_table(backend), Clock()
    a = LeaseKeeper(table, stream_arn=ARN, owner="a", lease_seconds=0.5, clock=clock)
    b = LeaseKeeper(table, stream_arn=ARN, owner="b", lease_seconds=0.5, clock=clock)
    for _ in range(3):
        a.tick(SHARDS)
        b.tick(SHARDS)
        clock.now += a.renew_every
    held_by_a = a.held()
    assert 2 == len(held_by_a)
    # a dies: b goes on ticking and takes a's shards once their counters stood still 0.5 s
    while clock.now < 60.0 and b.held() != set(SHARDS):
        clock.now += b.renew_every
        b.tick(SHARDS)
        assert b.held().isdisjoint(a.held())
    assert set(SHARDS) == b.held()
    assert held_by_a == b.last_taken
    assert not any(a.holds(s) for s in SHARDS)
    assert frozenset() == a.tick(SHARDS)  # a wakes up: everything is b's


def test_a_standby_takes_over_within_lease_seconds_on_the_real_clock(
    backend: EmbeddedBackend,
) -> None:
    table = lease_table(backend)
    a = LeaseKeeper(table, stream_arn=ARN, owner=new_worker_id(), lease_seconds=0.5)
    b = LeaseKeeper(table, stream_arn=ARN, owner=new_worker_id(), lease_seconds=0.5)
    assert set(SHARDS) == a.tick(SHARDS)
    assert frozenset() == b.tick(SHARDS)
    died = time.monotonic()  # a never ticks again
    while b.tick(SHARDS) != set(SHARDS):
        assert time.monotonic() - died < 0.5 + 2 * b.renew_every + 1.0  # generous: shared CI
        time.sleep(b.renew_every)
    assert time.monotonic() - died >= 0.5
