"""verify's pure core with the tombstone store (issue 22): a region holds a key in its table or,
deleted, as a tombstone in its store (`read_key`), and a repair commits both places at once.

The central property is differential: the same versions held the old way (tombstone items in
the tables) and the store's way (tombstones in the stores, tables holding live items only) are
classified alike and repaired to the same version, and the store's repair, committed through
in-memory tables, leaves every region holding exactly what the old repair wrote, with no
table holding a tombstone. The rest pins what only the store has: a key deleted everywhere is
identical whatever each store's deletions record, a missing store tombstone is a difference, a
stale tombstone beside a live item is divergent, and no repair brings a deleted key back.
"""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from service.adapters.memory import MemoryTable
from service.core import hlc
from service.core.places import read_key
from service.core.stored import Absent, Settings, Stamped, read_item
from service.core.tombstones import (
    DATA_ATTR,
    StoreItem,
    encode_store_item,
    explain_remove,
    with_deletion,
)
from service.core.verify import (
    Repair,
    Unrepairable,
    Verdict,
    classify,
    commits_for,
    describe,
    fingerprint,
    join,
    plan_repair,
)
from service.core.version import META_ATTR, Order, Version, compare, encode_item
from tests.unit.test_verify import (
    HORIZON_MS,
    KEY,
    LWW,
    NOW_MS,
    REGIONS,
    RESOLVERS,
    T0,
    Items,
    histories,
    holdings,
    ids,
    item_of,
    put,
    settings_for,
)

NAME = "orders"  # the georep table's configured name: it keys the store's items
LATER = T0 + 4 * HORIZON_MS


def stored(tombstone: Version, settings: Settings = LWW) -> dict[str, Any]:
    """A store item holding ``tombstone``, as `commit_for` writes it."""
    return encode_store_item(
        NAME, KEY, StoreItem(tombstone=tombstone), horizon_ms=settings.horizon_ms
    )


def moved(items: Items, settings: Settings) -> tuple[Items, Items]:
    """The same holdings the store's way: each stamped tombstone leaves its table for its
    region's store; everything else stays where it is."""
    tables: Items = {}
    stores: Items = {}
    for region, item in items.items():
        held = read_item(item, settings=settings)
        if isinstance(held, Stamped) and held.version.meta.deleted:
            # A hand-edited tombstone item has no store form (the store's TTL is its own).
            assume(fingerprint(item) == fingerprint(item_of(held.version, settings)))
            tables[region], stores[region] = None, stored(held.version, settings)
        else:
            tables[region], stores[region] = item, None
    return tables, stores


def plan(tables: Items, stores: Items, settings: Settings = LWW, *, now_ms: int = LATER) -> Repair:
    repair = plan_repair(
        tables, stores=stores, settings=settings, now_hlc=hlc.pack(now_ms), write_ids=ids()
    )
    assert isinstance(repair, Repair), repair
    return repair


def committed(
    tables: Items, stores: Items, repair: Repair, settings: Settings = LWW
) -> tuple[Items, Items]:
    """Each region after the repair's commits, through an in-memory table and store (the
    same conditions DynamoDB evaluates), read back from both places."""
    after_tables: Items = {}
    after_stores: Items = {}
    commits = commits_for(repair, tables, stores, table=NAME, settings=settings)
    for region in REGIONS:
        memory = MemoryTable(region=region, key_attributes=("pk",), table_name=NAME)
        if tables[region] is not None:
            memory.put_raw(tables[region])  # type: ignore[arg-type]
        if stores[region] is not None:
            memory.commit(KEY, table=None, store=_put(stores[region]))
        if region in commits:
            table_step, store_step = commits[region]
            assert memory.commit(KEY, table=table_step, store=store_step).ok, region
        after_tables[region], after_stores[region] = memory.get(KEY), memory.get_stored(KEY)
    return after_tables, after_stores


def _put(item: Any) -> Any:
    from service.core.apply import ExpectAbsent
    from service.core.places import Step

    return Step(ExpectAbsent(), item)


def state(tables: Items, stores: Items, region: str, settings: Settings = LWW) -> Any:
    return read_key(tables[region], stores[region], settings=settings)


# -- the store's way decides as the tables' way did -------------------------------------------


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data(), now_ms=NOW_MS)
def test_holdings_in_the_store_are_classified_as_the_same_tombstone_items_were(
    resolver: str, data: st.DataObject, now_ms: int
) -> None:
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings))
    tables, stores = moved(items, settings)
    expected = classify(items, settings=settings, now_ms=now_ms)
    assert expected == classify(tables, stores=stores, settings=settings, now_ms=now_ms)


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data())
def test_a_repair_through_the_store_leaves_what_the_repair_of_tombstone_items_left(
    resolver: str, data: st.DataObject
) -> None:
    """Same target, and once committed through both places every region holds (its table's
    item, else its store's tombstone) exactly the item the old repair wrote; no table holds a
    tombstone, and the regions read identical, the stores included."""
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings))
    tables, stores = moved(items, settings)
    old = plan_repair(items, settings=settings, now_hlc=hlc.pack(LATER), write_ids=ids())
    new = plan_repair(
        tables, stores=stores, settings=settings, now_hlc=hlc.pack(LATER), write_ids=ids()
    )
    assert isinstance(old, Repair) and isinstance(new, Repair)
    assert old.target == new.target
    assert set(old.writes) == set(new.writes)
    after_tables, after_stores = committed(tables, stores, new, settings)
    for region in REGIONS:
        now = state(after_tables, after_stores, region, settings).current
        if new.target is None:
            assert isinstance(now, Absent)
            continue
        assert isinstance(now, Stamped) and new.target == now.version, region
        item = after_tables[region]
        assert item is None or not read_item(item, settings=settings).version.meta.deleted  # type: ignore[union-attr]
    verdict = classify(after_tables, stores=after_stores, settings=settings, now_ms=LATER)
    assert "identical" == verdict.kind
    assert {} == dict(plan(after_tables, after_stores, settings).writes)  # nothing left to do


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data())
def test_a_repair_never_brings_back_a_key_whose_tombstone_wins(
    resolver: str, data: st.DataObject
) -> None:
    """A delete made over everything the regions hold (the join of a history), held in some
    regions' stores while the others still hold nothing or any version of that history: the
    repair writes no live item anywhere, every table is empty after it and every store holds
    that tombstone."""
    settings = settings_for(resolver)
    pool = data.draw(histories(settings, HORIZON_MS // 2))
    last = join(pool, settings=settings)
    deleting = (
        put(last, None, region=REGIONS[2], at_ms=HORIZON_MS, n=99)
        if not last.meta.deleted
        else None
    )
    tombstone = deleting or last
    gone = data.draw(st.sets(st.sampled_from(REGIONS), min_size=1))
    tables: Items = {}
    stores: Items = {}
    for region in REGIONS:
        held = None if region in gone else data.draw(st.sampled_from([None, *pool]))
        if region in gone:
            tables[region], stores[region] = None, stored(tombstone, settings)
        elif held is not None and held.meta.deleted:
            tables[region], stores[region] = None, stored(held, settings)
        else:
            tables[region] = item_of(held, settings) if held is not None else None
            stores[region] = None
    repair = plan(tables, stores, settings)
    assert tombstone == repair.target
    for write in repair.writes.values():
        assert write.version.meta.deleted
    after_tables, after_stores = committed(tables, stores, repair, settings)
    assert dict.fromkeys(REGIONS) == after_tables
    for region in REGIONS:
        assert tombstone == state(after_tables, after_stores, region, settings).tombstone


# -- what only the store has ------------------------------------------------------------------


def deleted_everywhere() -> tuple[Version, Version]:
    live = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    return live, put(live, None, region=REGIONS[1], at_ms=10, n=2)


def test_a_key_deleted_everywhere_is_identical_whatever_each_store_recorded() -> None:
    """Each store records its own deletions (local in the region that deleted, replicated
    elsewhere) and so its own TTL: only the tombstone is compared."""
    live, tombstone = deleted_everywhere()
    image = item_of(live)
    stores: Items = {
        REGIONS[0]: encode_store_item(
            NAME,
            KEY,
            with_deletion(None, tombstone, image, local=False, horizon_ms=HORIZON_MS),
            horizon_ms=HORIZON_MS,
        ),
        REGIONS[1]: encode_store_item(
            NAME,
            KEY,
            with_deletion(None, tombstone, image, local=True, horizon_ms=HORIZON_MS),
            horizon_ms=HORIZON_MS,
        ),
        REGIONS[2]: stored(tombstone),
    }
    tables: Items = dict.fromkeys(REGIONS)
    assert Verdict("identical", "same") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0 + 20
    )
    assert {} == dict(plan(tables, stores).writes)


def test_a_store_missing_its_tombstone_is_a_difference_repair_writes_it_back() -> None:
    """No item and no tombstone in one region, the tombstone in the others: behind (the
    engine calls it divergent once it does not move); the repair writes the tombstone into
    that region's store only, checking its table is still empty."""
    _, tombstone = deleted_everywhere()
    tables: Items = dict.fromkeys(REGIONS)
    stores: Items = {REGIONS[0]: None, REGIONS[1]: stored(tombstone), REGIONS[2]: stored(tombstone)}
    assert Verdict("pending", "behind") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0 + 20
    )
    repair = plan(tables, stores)
    assert tombstone == repair.target and {REGIONS[0]} == set(repair.writes)
    ((table_step, store_step),) = commits_for(
        repair, tables, stores, table=NAME, settings=LWW
    ).values()
    assert table_step is not None and table_step.check  # a ConditionCheck: still no item
    assert store_step is not None and store_step.item is not None
    after_tables, after_stores = committed(tables, stores, repair)
    assert dict.fromkeys(REGIONS) == after_tables
    assert "identical" == classify(after_tables, stores=after_stores, settings=LWW, now_ms=T0).kind


def test_a_live_item_a_region_kept_past_the_delete_is_deleted_there_never_copied() -> None:
    """The case a tables-only repair got wrong (it saw the item in one region and nothing in
    the others, and wrote it back everywhere): the other regions' stores hold its delete,
    so the repair deletes it, item and tombstone in one transaction."""
    live, tombstone = deleted_everywhere()
    tables: Items = {REGIONS[0]: item_of(live), REGIONS[1]: None, REGIONS[2]: None}
    stores: Items = {REGIONS[0]: None, REGIONS[1]: stored(tombstone), REGIONS[2]: stored(tombstone)}
    repair = plan(tables, stores)
    assert tombstone == repair.target and {REGIONS[0]} == set(repair.writes)
    ((table_step, store_step),) = commits_for(
        repair, tables, stores, table=NAME, settings=LWW
    ).values()
    assert table_step is not None and table_step.item is None and not table_step.check  # Delete
    assert store_step is not None and store_step.item is not None  # ...and the tombstone
    after_tables, after_stores = committed(tables, stores, repair)
    assert dict.fromkeys(REGIONS) == after_tables
    # Its REMOVE record is an echo: every region gets the repair from the repair.
    deletion = explain_remove(state(after_tables, after_stores, REGIONS[0]).store, item_of(live))
    assert deletion is not None and not deletion.local
    # Without the stores the same tables would be planned the other way round.
    old = plan_repair(tables, settings=LWW, now_hlc=hlc.pack(LATER), write_ids=ids())
    assert isinstance(old, Repair) and old.target == live


def test_a_store_tombstone_edited_by_hand_is_unreadable_never_copied() -> None:
    """Only georep writes the store: a tombstone whose data its metadata does not describe
    is reported (divergent, unrepairable, naming the region), never taken for the version."""
    _, tombstone = deleted_everywhere()
    edited = {**stored(tombstone), DATA_ATTR: {"M": {**KEY, "extra": {"S": "by hand"}}}}
    tables: Items = dict.fromkeys(REGIONS)
    stores: Items = {REGIONS[0]: edited, REGIONS[1]: stored(tombstone), REGIONS[2]: None}
    assert Verdict("divergent", "unreadable") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0 + 20
    )
    repair = plan_repair(
        tables, stores=stores, settings=LWW, now_hlc=hlc.pack(LATER), write_ids=ids()
    )
    assert isinstance(repair, Unrepairable) and repair.reason.startswith(REGIONS[0])


def test_a_tombstone_left_beside_an_item_that_succeeds_it_is_divergent_and_dropped() -> None:
    """georep never leaves one there (every live write drops or succeeds the stored
    tombstone in its transaction), so nothing would ever drop it: divergent, and the repair
    rewrites the item, which drops it."""
    _, tombstone = deleted_everywhere()
    again = put(tombstone, "b", region=REGIONS[2], at_ms=20, n=3)
    tables: Items = dict.fromkeys(REGIONS, item_of(again))
    stores: Items = {REGIONS[0]: stored(tombstone), REGIONS[1]: None, REGIONS[2]: None}
    assert Verdict("divergent", "store") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0 + 30
    )
    repair = plan(tables, stores)
    assert again == repair.target and {REGIONS[0]} == set(repair.writes)
    after_tables, after_stores = committed(tables, stores, repair)
    assert tables == after_tables
    assert state(after_tables, after_stores, REGIONS[0]).tombstone is None


def test_an_applications_put_after_the_delete_is_adopted_over_the_tombstone() -> None:
    """A raw item beside a tombstone was written after the delete (every installation of a
    tombstone checks the table): repair adopts it as a successor of the tombstone, as the
    consumer would, and writes it everywhere. It is an application's new write, not the
    deleted item coming back."""
    _, tombstone = deleted_everywhere()
    raw = {**KEY, "v": {"S": "written after the delete"}}
    tables: Items = {REGIONS[0]: raw, REGIONS[1]: None, REGIONS[2]: None}
    stores: Items = dict.fromkeys(REGIONS, stored(tombstone))
    assert Verdict("pending", "raw") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0 + 30
    )
    repair = plan(tables, stores)
    assert repair.target is not None and not repair.target.meta.deleted
    assert Order.AFTER == compare(repair.target.meta, tombstone.meta)
    assert {"S": "written after the delete"} == repair.target.data["v"]
    after_tables, after_stores = committed(tables, stores, repair)
    for region in REGIONS:
        assert state(after_tables, after_stores, region).tombstone is None, region


def test_a_copy_of_the_deleted_item_put_back_beside_its_tombstone_is_adopted_over_both() -> None:
    """An application's copy with georep's metadata (a restore of the item as it was before
    the delete) beside the tombstone: like the consumer (`translate`'s ``beside``), repair
    adopts it as a successor of both, never as the old version the tombstone deleted."""
    live, tombstone = deleted_everywhere()
    tables: Items = {REGIONS[0]: item_of(live), REGIONS[1]: None, REGIONS[2]: None}
    stores: Items = dict.fromkeys(REGIONS, stored(tombstone))
    assert "pending" == classify(tables, stores=stores, settings=LWW, now_ms=T0 + 30).kind
    repair = plan(tables, stores)
    assert repair.target is not None and repair.target.meta.adopted
    assert Order.AFTER == compare(repair.target.meta, tombstone.meta)
    assert Order.AFTER == compare(repair.target.meta, live.meta)


def test_tombstones_past_their_horizon_are_excused_where_ttl_collected_them() -> None:
    _, tombstone = deleted_everywhere()
    tables: Items = dict.fromkeys(REGIONS)
    stores: Items = {REGIONS[0]: None, REGIONS[1]: stored(tombstone), REGIONS[2]: stored(tombstone)}
    assert Verdict("identical", "collected") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0 + 10 + HORIZON_MS
    )


def test_an_unreadable_store_item_is_divergent_and_unrepairable() -> None:
    _, tombstone = deleted_everywhere()
    broken = {**stored(tombstone), META_ATTR: {"S": "not georep's"}}
    tables: Items = dict.fromkeys(REGIONS)
    stores: Items = {REGIONS[0]: broken, REGIONS[1]: stored(tombstone), REGIONS[2]: None}
    assert Verdict("divergent", "unreadable") == classify(
        tables, stores=stores, settings=LWW, now_ms=T0
    )
    repair = plan_repair(
        tables, stores=stores, settings=LWW, now_hlc=hlc.pack(LATER), write_ids=ids()
    )
    assert isinstance(repair, Unrepairable) and repair.reason.startswith(REGIONS[0])


def test_a_stored_tombstone_is_described_as_one() -> None:
    _, tombstone = deleted_everywhere()
    shown = describe(None, settings=LWW, stored=stored(tombstone), store=True)
    assert ("tombstone", True, REGIONS[1]) == (shown.holds, shown.deleted, shown.origin)
    assert "absent" == describe(None, settings=LWW, stored=None, store=True).holds
    item = encode_item(tombstone, horizon_ms=HORIZON_MS)
    assert describe(item, settings=LWW).deleted  # the old way: a tombstone item
