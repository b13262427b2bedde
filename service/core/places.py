"""One key across a region's two places: the user's table and the tombstone store (issue 22).
Pure.

Once tombstones leave the user's table (docs/design.md, "the tombstone store"), what a region
holds for a key is the table's item if there is one, else the store's tombstone, else nothing.
`read_key` reads both into a :class:`KeyState`, whose `current` is the one `Stored` value
`decide`, `stamp` and the resolvers keep working on; `commit_for` turns the version a decision
writes into the two steps of one `Table.commit` (a TransactWriteItems when both are needed):

==========================  ===========  =================================================
table / store as read       writes       steps
==========================  ===========  =================================================
stamped item / none         live         table: Put if the item is still the one read
raw item / none             live         + store: check no tombstone (raw: see below)
raw item / tombstone        live         + store: drop the tombstone (it is succeeded);
                                         kept (checked) if the version stays raw
                                         (`beside_raw`, merge rules)
item / any                  tombstone    table: Delete if still the one read;
                                         store: Put the tombstone and the deletion
none / tombstone            live         table: Put if absent; store: drop the tombstone
none / none                 live         table: Put if absent; store: check no tombstone
none / any                  tombstone    table: check absent; store: Put the tombstone
==========================  ===========  =================================================

Invariant: while the table holds a stamped item, the store holds no tombstone that item does
not succeed (every write that makes a live item succeed or drop the stored tombstone in the
same transaction). A raw item beside a tombstone was written after it (an application's write
that georep did not make), so `current` joins the tombstone into the raw item's copied context.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from typing import Any, Literal

from service.core.apply import (
    Decision,
    Defer,
    ExpectAbsent,
    ExpectMeta,
    Precondition,
    Write,
    merge,
    precondition_for,
)
from service.core.residency import decide_for
from service.core.stamp import join_meta, over_stored_tombstone
from service.core.stored import Absent, Raw, Settings, Stamped, Stored, checked_digest, read_item
from service.core.tombstones import (
    StoreItem,
    decode_store_item,
    encode_store_item,
    with_deletion,
    with_tombstone,
)
from service.core.values import AttributeValue, Item
from service.core.version import META_ATTR, Order, Version, compare, encode_item


@dataclass(frozen=True)
class Step:
    """One place's part of a `Table.commit`: write ``item`` there (``None``: delete the item)
    if ``precondition`` holds, or, with ``check``, only require that it holds."""

    precondition: Precondition
    item: Mapping[str, Any] | None = None
    check: bool = False


@dataclass(frozen=True)
class KeyState:
    """What a region holds for one key, as read from both places."""

    item: Item | None  # the table's item, exactly as read
    table: Stored  # that item classified
    store: StoreItem | None  # the store's item, decoded (None: there is none)
    store_attr: AttributeValue | None  # its tombstone's ``_georep`` as read

    @property
    def tombstone(self) -> Version | None:
        return self.store.tombstone if self.store is not None else None

    @property
    def current(self) -> Stored:
        """The key's state for `decide`: the table's item, else the stored tombstone."""
        tombstone = self.tombstone
        match self.table:
            case Absent():
                if tombstone is None:
                    return Absent()
                assert self.store_attr is not None
                return Stamped(version=tombstone, meta_attr=self.store_attr)
            case Raw(copied=copied) if tombstone is not None:
                # Written after the tombstone: its adoption succeeds it (module docstring).
                return replace(self.table, copied=join_meta(copied, tombstone.meta))
        return self.table


def read_key(
    item: Item | None, stored: Mapping[str, AttributeValue] | None, *, settings: Settings
) -> KeyState:
    """Both places' items for a key as a :class:`KeyState`. Raises MetadataError for
    metadata georep did not write, in either place."""
    store = decode_store_item(stored, regions=settings.region_set) if stored is not None else None
    attr = stored.get(META_ATTR) if stored is not None else None
    return KeyState(
        item=dict(item) if item is not None else None,
        table=read_item(item, settings=settings),
        store=store,
        store_attr=attr if store is not None and store.tombstone is not None else None,
    )


def decide_key(
    state: KeyState,
    incoming: Version,
    *,
    destination: str,
    settings: Settings,
    here: Literal["adoption", "restore"] | None = None,
) -> Decision:
    """`decide_for` on the key's state across both places. A version from another region
    that meets a raw item written after a stored tombstone waits for the raw write's
    adoption (`Defer`): the raw write's record (an INSERT) shows no tombstone, so only its
    adoption in this region, meeting the tombstone as the raw item's context, can make it
    succeed the delete; a version written over the raw item first would drop the tombstone
    from the region before any adoption of the raw write had claimed it. Under merge rules
    that adoption is taken over the tombstone, its data included (`over_stored_tombstone`)."""
    current = state.current
    tombstone = state.tombstone
    if (
        here == "adoption"
        and settings.resolver.keeps_deleted_data
        and isinstance(state.table, Raw)
        and tombstone is not None
        and not incoming.meta.deleted
        and compare(incoming.meta, tombstone.meta) is Order.CONCURRENT
    ):
        # Under merge rules the raw write adopted here was written over the stored tombstone
        # (nothing but its adoption ever writes over a raw item: other regions' versions
        # wait, SDK writes are pending): it becomes what it becomes over a tombstone item.
        folded = over_stored_tombstone(incoming, tombstone, settings=settings)
        if incoming.meta.digest == checked_digest(state.table.data):
            return Write(folded, precondition_for(current))  # the table holds this raw write
        incoming = folded  # a later raw write is there: kept beside it (`beside_raw`)
    if here is None and isinstance(state.table, Raw) and tombstone is not None:
        assert isinstance(current, Raw) and current.copied is not None
        if compare(incoming.meta, current.copied) not in (Order.EQUAL, Order.BEFORE):
            return Defer("the raw item here, written after a delete, is not adopted yet")
    if (
        here is None
        and isinstance(state.table, Stamped)
        and tombstone is not None
        and compare(state.table.version.meta, tombstone.meta) is not Order.AFTER
        and compare(incoming.meta, state.table.version.meta) not in (Order.EQUAL, Order.BEFORE)
    ):
        # A version the application wrote beside the tombstone (a restore, a copy of another
        # region's item): georep never leaves one there. Its INSERT, read while the copy is in
        # the table, is adopted over the tombstone (`translate`'s ``beside``). A version that
        # gets here first does not wait for that adoption (it may never come: once anything
        # is written over the copy, its INSERT reads as replication's own): the copy counts as
        # the version it copies, and the key's state is that version and the tombstone, the
        # later one, or both resolved, as any region holding both has them (the copies gap,
        # docs/design.md).
        copy = state.table.version
        if compare(copy.meta, tombstone.meta) is Order.CONCURRENT:
            settled = merge(copy, tombstone, settings=settings)
        else:
            settled = tombstone
        assert state.store_attr is not None
        current = Stamped(version=settled, meta_attr=state.store_attr)
        return decide_for(current, incoming, destination=destination, settings=settings)
    if (
        settings.resolver.keeps_deleted_data
        and isinstance(state.table, Raw)
        and tombstone is not None
    ):
        # Under merge rules a raw item beside a stored tombstone claims it only through its
        # own adoption, which takes its data too (above): a version kept beside the raw item
        # (`beside_raw`) must not claim the tombstone without its data, which a successor
        # of it would then drop (union-rule store machine, deep run seed 2376388848).
        current = state.table
    return decide_for(current, incoming, destination=destination, settings=settings, here=here)


def _table_precondition(state: KeyState) -> Precondition:
    match state.table:
        case Absent():
            return ExpectAbsent()
        case Stamped(meta_attr=attr) | Raw(meta_attr=attr):
            return ExpectMeta(attr)
    raise AssertionError(state.table)


def _store_precondition(state: KeyState) -> Precondition:
    """The store item exactly as read, judged by its ``_georep`` (``None``: it exists and
    holds no tombstone, only deletions)."""
    if state.store is None:
        return ExpectAbsent()
    return ExpectMeta(state.store_attr)


def _store_write(
    state: KeyState,
    after: StoreItem,
    *,
    table: str,
    key: Mapping[str, AttributeValue],
    horizon_ms: int,
) -> Step:
    """Write ``after`` in place of the store item read (deleted if it holds nothing)."""
    empty = after.tombstone is None and not after.deletions
    item = None if empty else encode_store_item(table, key, after, horizon_ms=horizon_ms)
    return Step(_store_precondition(state), item)


def commit_for(
    state: KeyState,
    version: Version,
    *,
    local: bool,
    table: str,
    settings: Settings,
) -> tuple[Step | None, Step | None]:
    """The table's step and the store's step that write ``version`` over ``state`` (the
    module docstring's table). ``local``: the version is this region's own write (a deletion
    it makes is forwarded from its REMOVE record), not a replicated one (an echo). ``table``
    is the georep table's configured name (the store's items are keyed by it)."""
    key = settings.keys_of(version.data)
    horizon = settings.horizon_ms
    present = not isinstance(state.table, Absent)
    tombstone = state.tombstone
    if not version.meta.deleted:
        put = Step(_table_precondition(state), encode_item(version, horizon_ms=horizon))
        if (
            tombstone is not None
            and present
            and version.meta.digest != checked_digest(version.data)
        ):
            # Under merge rules a version kept beside a raw item (`beside_raw`) leaves it raw:
            # the tombstone stays until that raw write's own adoption is taken over it
            # (`decide_key`), so its data is never dropped while its vector is claimed. The
            # store is checked as read, as for any write over a raw item (below).
            return put, Step(_store_precondition(state), check=True)
        if tombstone is not None:
            store = _store_write(
                state, with_tombstone(state.store, None), table=table, key=key, horizon_ms=horizon
            )
            return put, store
        if isinstance(state.table, Stamped):
            return put, None  # an update: the store cannot hold a tombstone (the invariant)
        # Over a raw item, or none: the store checked as read. The table's condition pins only
        # ``_georep``, which a raw item lacks: between the read and the write a delete and a
        # raw put can leave another raw item there beside a tombstone written since, and the
        # write must not land beside it (concurrent store machines, deep runs seeds 11 and
        # 12; test_a_put_in_flight_over_a_raw_item_never_lands_beside_a_tombstone_written_since).
        return put, Step(_store_precondition(state), check=True)
    if present:
        assert state.item is not None
        after = with_deletion(state.store, version, state.item, local=local, horizon_ms=horizon)
        delete = Step(_table_precondition(state), None)
        return delete, _store_write(state, after, table=table, key=key, horizon_ms=horizon)
    after = with_tombstone(state.store, version)
    check = Step(ExpectAbsent(), check=True)
    return check, _store_write(state, after, table=table, key=key, horizon_ms=horizon)


__all__ = ["KeyState", "Step", "commit_for", "decide_key", "read_key"]
