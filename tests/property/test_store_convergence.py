"""With the tombstone store (issue 22): regions converge to the resolver folded over all
acknowledged writes, tables and stores alike, and a deleted key is absent from every table
(what plain boto3 readers see), whatever the schedule."""

from __future__ import annotations

from collections.abc import Callable

import pytest

from resolvers import LastWriterWins, VersionCounter
from tests.property.machine import ReplicationMachine
from tests.property.schedules import replay
from tests.property.test_convergence import VersionCounterAttributeMachine
from tests.property.test_rules_convergence import FieldRulesMachine, UnionRuleMachine


class StoreLWWMachine(ReplicationMachine):
    resolver = LastWriterWins()
    store = True
    # NOTE: an application's copy of a georep item put beside a tombstone is adopted over it
    # only while the table still holds the copy when its INSERT is read (`translate`'s
    # ``beside``); a version written over the copy first (the no-read path cannot see the
    # store) leaves a live item beside a tombstone it does not succeed. Open: docs/design.md.
    copies = False


class StoreVersionCounterMachine(ReplicationMachine):
    resolver = VersionCounter()
    store = True
    copies = False


class StoreVersionCounterAttributeMachine(VersionCounterAttributeMachine):
    store = True


TestLastWriterWinsConvergesWithTheStore = StoreLWWMachine.TestCase
TestVersionCounterConvergesWithTheStore = StoreVersionCounterMachine.TestCase
TestVersionCounterAttributeConvergesWithTheStore = StoreVersionCounterAttributeMachine.TestCase


class StoreFieldRulesMachine(FieldRulesMachine):
    """Field rules with the store: a tombstone's kept data lives in the store, and a write
    over it (an adoption taken over it, `over_stored_tombstone`) is an inflation of it."""

    store = True


class StoreUnionRuleMachine(UnionRuleMachine):
    store = True


TestFieldRulesConvergeWithTheStore = StoreFieldRulesMachine.TestCase
TestUnionRuleConvergesWithTheStore = StoreUnionRuleMachine.TestCase


def test_a_raw_put_after_a_delete_brings_back_what_the_tombstone_keeps() -> None:
    """Under merge rules a write over a tombstone is an inflation of it, and the store's
    tombstone keeps the deleted data. A raw put into the deleted key shows no tombstone in
    its INSERT (the key was absent), so its adoption at home is taken over the stored
    tombstone (`over_stored_tombstone`): without that, the home region held the raw data
    alone with a vector claiming the tombstone, and the regions that merged the adoption
    with the tombstone held the deleted data too."""
    m = StoreUnionRuleMachine()
    m.setup(n=2, nkeys=2, skews=[0] * 5)
    m.do_sdk_put("r0", "k0")
    m.drain()
    m.do_sdk_delete("r0", "k0")
    m.drain()
    m.do_raw_put("r0", "k0")
    m.metadata_is_valid_and_never_moves_backwards()
    m.teardown()


def test_a_version_kept_beside_a_raw_item_leaves_the_stored_tombstone_for_its_adoption() -> None:
    """Found by the union-rule machine with the store: r0's raw delete's adoption, read
    late, met a raw put made after a later SDK delete (the raw item beside that delete's
    tombstone) and was kept beside it (`beside_raw`): the commit dropped the tombstone, so
    its data (``w3``) left r0 while the vector still claimed it, and r1, which merged the
    tombstone, kept it. A version kept beside a raw item leaves the item raw, so the
    tombstone stays until that raw write's own adoption is taken over it (`commit_for`)."""
    m = StoreUnionRuleMachine()
    m.setup(n=2, nkeys=2, skews=[0] * 5)
    m.do_sdk_put("r0", "k0")
    m.do_raw_delete("r0", "k0")
    m.do_sdk_put("r0", "k0")
    m.do_sdk_put("r1", "k0")
    m.do_raw_delete("r1", "k0")
    m.do_sdk_delete("r0", "k0")
    m.do_raw_put("r0", "k0")
    m.metadata_is_valid_and_never_moves_backwards()
    m.teardown()


@pytest.mark.parametrize(
    "machine", [StoreLWWMachine, StoreUnionRuleMachine], ids=["lww", "union-rule"]
)
def test_a_raw_deletes_adoption_replayed_after_georep_deleted_the_same_image_reaches_every_region(
    machine: type[ReplicationMachine],
) -> None:
    """Found by the union-rule machine with the store (make test under xdist): an
    application deleted a replicated item in r1, a duplicate of the replication put the same
    item back before r1's consumer read the delete, and the delete's adoption then deleted
    it again in r1, recording the deletion under the image, which both REMOVEs share. r2
    missed the adoption (unreachable); when the raw delete's record was replayed, the entry
    made it look like georep's own echo and it was dropped: r2 kept the item forever. A
    REMOVE whose recorded deletion is its own adoption is adopted again (`translate`)."""
    m = machine()
    m.setup(n=3, nkeys=2, skews=[0] * 5)
    m.do_sdk_put("r0", "k0")
    m._poll("r0", limit=1)
    (forward,) = [record for _, record in m.inflight["r0"]["k0"]]
    m.deliver_batch("r0", list(m.inflight["r0"]["k0"]))  # r1 and r2 hold the item
    m.do_raw_delete("r1", "k0")
    m.replicators["r0"].process([forward])  # a duplicate puts the same item back in r1
    m._poll("r1", limit=3)  # the echo, the raw delete, the duplicate's echo

    def r2_unreachable(region: str, key: str) -> Callable[[], None] | None:
        return (lambda: m._unreachable(region)) if region == "r2" else None

    m.deliver_batch("r1", list(m.inflight["r1"]["k0"]), races=r2_unreachable)
    m.metadata_is_valid_and_never_moves_backwards()
    m.teardown()  # the raw delete's record is replayed: r2 must receive its adoption


def test_a_version_kept_beside_a_raw_item_never_claims_the_stored_tombstone_without_its_data() -> (
    None
):
    """Found by the union-rule machine with the store (deep run, seed 2376388848; the printed
    schedule is replayed): r0's raw delete's adoption met a raw put made after a later SDK
    delete and was kept beside it (`beside_raw`) with a context that claimed the stored
    tombstone (the raw item's context joined it) but not its data; once that raw item was
    deleted raw, the adoption of the kept version succeeded the tombstone without the deleted
    value. Under merge rules a raw item claims a stored tombstone only through its own
    adoption, which takes the tombstone's data too (`decide_key`)."""
    replay(StoreUnionRuleMachine(), "union-store-seed-2376388848.txt")


@pytest.mark.parametrize(
    "machine", [StoreLWWMachine, StoreVersionCounterMachine], ids=["lww", "version-counter"]
)
def test_a_raw_deletes_successor_over_a_live_item_reaches_every_region_with_the_store(
    machine: type[ReplicationMachine],
) -> None:
    """Found by the concurrent version-counter store machine in session 34, once a later raw
    write's adoption could be written as made after the merge its predecessor's adoption
    carries (`_carried_by_an_earlier_adoption`): at r1 a raw put and a raw delete, another
    region's version landing in between. The delete's successor, a tombstone, went to r1's
    store with the Delete of the live item, whose REMOVE is replication's own (an echo), so no
    record forwarded it and r0 kept the put's value. Now a successor tombstone written with
    the store is delivered to the other regions by the Replicator itself (`Delivery`'s
    ``replacement``), as one written beside an absent item already was."""
    m = machine()
    m.setup(n=2, nkeys=2, skews=[0] * 5)
    m.do_sdk_put("r0", "k0")
    m.do_sdk_put("r1", "k0")
    m.do_raw_put("r1", "k0")
    m.do_raw_delete("r1", "k0")
    m.teardown()  # drains, then every region must hold the same, and the ground truth hold
