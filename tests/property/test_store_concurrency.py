"""With the tombstone store and deliveries really in flight (issue 22): regions converge, and a
stale version replayed after a delete (a duplicate record, a lagging region, a restarted
consumer's lane still running) never brings the deleted key back, whatever the interleaving
of lanes, local writes, checkpoints and crashes (tests/property/concurrency.py)."""

from __future__ import annotations

from typing import Any

import pytest

from resolvers import LastWriterWins, Resolver, VersionCounter
from tests.property.concurrency import ConcurrentReplicationMachine
from tests.property.test_convergence import SharedCounterWrites


class ConcurrentStoreLWWMachine(ConcurrentReplicationMachine):
    resolver = LastWriterWins()
    store = True
    copies = False  # as StoreLWWMachine (tests/property/test_store_convergence.py)


class ConcurrentStoreVersionCounterMachine(ConcurrentReplicationMachine):
    resolver = VersionCounter()
    store = True
    copies = False


class ConcurrentStoreVersionCounterAttributeMachine(
    SharedCounterWrites, ConcurrentReplicationMachine
):
    """Version counters on an application counter, deliveries in flight: a tombstone keeps
    the counter it deleted, and no successor ranks below what it succeeds (session 35)."""

    store = True


TestLastWriterWinsConvergesWithTheStoreUnderConcurrency = ConcurrentStoreLWWMachine.TestCase
TestVersionCounterConvergesWithTheStoreUnderConcurrency = (
    ConcurrentStoreVersionCounterMachine.TestCase
)
TestVersionCounterAttributeConvergesWithTheStoreUnderConcurrency = (
    ConcurrentStoreVersionCounterAttributeMachine.TestCase
)


# -- scripted schedules ---------------------------------------------------------------------

RESOLVERS: list[Resolver] = [LastWriterWins(), VersionCounter()]
KEY = {"pk": {"S": "k0"}}


def machine_for(resolver: Resolver, regions: int = 2) -> ConcurrentReplicationMachine:
    Machine = (
        ConcurrentStoreLWWMachine
        if isinstance(resolver, LastWriterWins)
        else ConcurrentStoreVersionCounterMachine
    )
    machine = Machine()
    machine.setup(n=regions, nkeys=1, skews=[0] * 5)
    return machine


def forward(m: ConcurrentReplicationMachine, source: str) -> None:
    """``source``'s consumer reads what its stream holds and hands it to its Replicator."""
    m._poll(source, limit=1_000)
    m.submit(source, [p for lane in m.ready(source).values() for p in lane])


def to_the_write(m: ConcurrentReplicationMachine) -> Any:
    """Step the one lane in flight to its conditional write: its read is done."""
    (task,) = m.executor.tasks
    m.executor.step(task)
    assert task.paused_at == ("r1", KEY), task.paused_at
    return task


def absent_everywhere(m: ConcurrentReplicationMachine) -> None:
    m.drain()
    assert {r: None for r in m.regions} == {r: m.tables[r].get(KEY) for r in m.regions}


@pytest.mark.parametrize("resolver", RESOLVERS, ids=lambda r: r.name)
def test_an_update_in_flight_when_its_destination_deletes_the_key_never_brings_it_back(
    resolver: Resolver,
) -> None:
    """A put forwarded from r0 is in flight at r1: read done (r1 holds the version it
    updates), write not yet. r1 deletes the key with the SDK (later, so the delete wins under
    either resolver), then the write is released: its condition fails, the read again finds
    the tombstone, and the key stays deleted in every region after draining."""
    m = machine_for(resolver)
    m.do_sdk_put("r0", "k0")
    m.drain()
    m.do_sdk_put("r0", "k0")
    forward(m, "r0")
    task = to_the_write(m)
    m.now += 1000
    m.do_sdk_delete("r1", "k0")
    m.executor.step(task)  # the write, then the lane's end
    m.take_settled()
    assert m.tables["r1"].get(KEY) is None
    absent_everywhere(m)
    m.metadata_is_valid_and_never_moves_backwards()
    m.teardown()


@pytest.mark.parametrize("resolver", RESOLVERS, ids=lambda r: r.name)
def test_a_crashed_consumers_insert_released_after_the_delete_never_brings_the_key_back(
    resolver: Resolver,
) -> None:
    """r0's consumer is paused on r0's first put at r1 (r1 read: absent, no tombstone) and
    crashes; its restarted consumer applies the put at r1, r1 deletes the key and the delete
    reaches r0. Then the crashed consumer's lane wakes up and writes the stale insert: the
    table still admits it (the key is absent), only the store's tombstone refuses it."""
    m = machine_for(resolver)
    m.do_sdk_put("r0", "k0")
    forward(m, "r0")
    zombie = to_the_write(m)
    m.crash_region("r0")
    forward(m, "r0")
    (lane,) = [t for t in m.executor.tasks if t is not zombie]
    m.executor.finish(lane)
    m.take_settled()
    assert m.tables["r1"].get(KEY) is not None
    m.now += 1000
    m.do_sdk_delete("r1", "k0")
    forward(m, "r1")  # the echo of the put, then the delete's REMOVE
    for task in [t for t in m.executor.tasks if t is not zombie]:
        m.executor.finish(task)
    m.take_settled()
    assert m.tables["r0"].get(KEY) is None
    m.executor.step(zombie)  # the stale insert meets the tombstone
    m.take_settled()
    assert m.tables["r1"].get(KEY) is None
    absent_everywhere(m)
    m.teardown()


@pytest.mark.parametrize("resolver", RESOLVERS, ids=lambda r: r.name)
def test_an_insert_in_flight_when_its_destination_writes_and_deletes_the_key_stays_deleted(
    resolver: Resolver,
) -> None:
    """What the concurrent machines found first when the store's ConditionCheck for an insert
    was dropped on purpose (the teeth in docs/decisions.md): r0's first put is in flight at
    r1, read there as absent with no tombstone; r1 then puts and deletes the key itself (the
    later writes, so the delete wins), leaving the key absent again but a tombstone stored.
    The released insert's table condition still holds; the store's check must refuse it."""
    m = machine_for(resolver)
    m.do_sdk_put("r0", "k0")
    forward(m, "r0")
    task = to_the_write(m)
    m.now += 1000
    m.do_sdk_put("r1", "k0")
    m.do_sdk_delete("r1", "k0")
    m.executor.step(task)
    m.take_settled()
    assert m.tables["r1"].get(KEY) is None
    absent_everywhere(m)
    m.teardown()


@pytest.mark.parametrize("resolver", RESOLVERS, ids=lambda r: r.name)
def test_a_put_in_flight_over_a_raw_item_never_lands_beside_a_tombstone_written_since(
    resolver: Resolver,
) -> None:
    """A product bug the concurrent machines found (deep run, ``--hypothesis-seed=12``, both
    machines), fixed in `commit_for`: a write over a raw item checks the store as read.

    r1 holds a raw item X (no ``_georep``, no tombstone). r0's put A is in flight at r1: read
    done (X, no tombstone), its write decided. Then, in r1, the application deletes the key
    through the SDK (a DeleteItem and a tombstone in the store, later than A) and puts a raw
    item Y with plain boto3. The released write's table condition, "no ``_georep``", holds for
    Y as it did for X (conditions compare only ``_georep``), and `commit_for` sends no store
    step for a write over a present item ("an update: the store cannot hold a tombstone"), so
    A, which the tombstone does not succeed and which loses to it, lands beside it: the
    store's invariant is broken at r1, and the regions never converge."""
    m = machine_for(resolver)
    m.do_sdk_put("r0", "k0")
    m.do_raw_put("r1", "k0")
    forward(m, "r0")
    task = to_the_write(m)
    m.now += 1000
    m.do_sdk_delete("r1", "k0")
    m.do_raw_put("r1", "k0")
    m.executor.step(task)
    m.take_settled()
    m._places_agree("r1", "k0", m.key_state("r1", "k0"), settled=True)
    m.teardown()
