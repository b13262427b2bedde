"""Moving tombstone items written before the tombstone store into it (issue 22;
service/core/migration.py, service/engine/migrate.py), on the in-memory table and store.

The properties: a tombstone item leaves the table and its version is the key's state in the
store; the store never loses a tombstone that succeeds the table's, and a concurrent one is
settled by the resolver; the move's REMOVE record is an echo (never forwarded, never adopted,
never restored); nothing that is not a tombstone item is ever deleted, a write landing during
the move included; a second run moves nothing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Mapping
from dataclasses import replace
from typing import Any

from resolvers import LastWriterWins, field_rules, union
from service.adapters.memory import MemoryTable
from service.core.adopt import Drop, translate
from service.core.apply import Write, decide
from service.core.migration import Leave, Move, plan_move
from service.core.places import KeyState, commit_for, read_key
from service.core.records import parse_record
from service.core.stored import Settings, Stamped
from service.core.tombstones import DATA_ATTR, decode_store_item, explain_remove
from service.core.values import digest
from service.core.version import Meta, Order, Version, VersionVector, compare, encode_item
from service.engine.migrate import Migration, move_key

REGION = "eu"
REGIONS = ("eu", "us")
NAME = "orders"
KEY = {"pk": {"S": "k"}}
SETTINGS = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())


def version(
    actor: str,
    counters: Mapping[str, int],
    *,
    hlc: int,
    deleted: bool = False,
    data: Mapping[str, Any] | None = None,
) -> Version:
    body = dict(data) if data is not None else dict(KEY) if deleted else {**KEY, "v": {"S": "x"}}
    meta = Meta(
        vv=VersionVector.of(dict(counters)),
        actor=actor,
        write_id=f"01HF7YASR9G0000000000000{hlc:02d}",
        hlc=hlc << 16,
        digest=digest(body),
        count=1,
        deleted=deleted,
    )
    return Version(data=body, meta=meta)


A = "eu~AAAAAAAA"
B = "us~BBBBBBBB"


def table() -> MemoryTable:
    return MemoryTable(region=REGION, key_attributes=("pk",), table_name=NAME)


def state_of(t: MemoryTable, settings: Settings = SETTINGS) -> KeyState:
    return read_key(t.get(KEY), t.get_stored(KEY), settings=settings)


def old_tombstone(t: MemoryTable, tomb: Version) -> None:
    """A tombstone item as georep wrote it before the store: a conditional-less put of the
    version's whole item into the user's table."""
    t.put_raw(encode_item(tomb, horizon_ms=SETTINGS.horizon_ms))


def store_tombstone(t: MemoryTable, tomb: Version) -> None:
    """A tombstone the store already holds (the table empty), as the store path writes it."""
    steps = commit_for(state_of(t), tomb, local=False, table=NAME, settings=SETTINGS)
    assert t.commit(KEY, table=steps[0], store=steps[1]).ok


def move(t: MemoryTable, settings: Settings = SETTINGS) -> Move:
    plan = plan_move(state_of(t, settings), table=NAME, region=REGION, settings=settings)
    assert isinstance(plan, Move)
    assert t.commit(KEY, table=plan.table, store=plan.store).ok
    return plan


def test_a_tombstone_item_leaves_the_table_and_is_the_keys_state_in_the_store() -> None:
    t = table()
    tomb = version(B, {B: 2}, hlc=2, deleted=True)
    old_tombstone(t, tomb)

    plan = move(t)

    assert (tomb, False) == (plan.version, plan.already)
    assert t.get(KEY) is None
    state = state_of(t)
    assert state.store_attr is not None
    assert Stamped(version=tomb, meta_attr=state.store_attr) == state.current


def test_the_moves_remove_record_is_an_echo_not_a_restore_nor_an_applications_delete() -> None:
    """The store records the deleted image as a replicated deletion, and the consumer reads
    the REMOVE by it first: without the store's entry the old image, a tombstone, would be
    restored as one deleted by hand; without the tombstone check, adopted as a raw delete."""
    t = table()
    old_tombstone(t, version(B, {B: 2}, hlc=2, deleted=True))
    move(t)
    record = t.stream[-1]
    assert "REMOVE" == record["eventName"]
    change = parse_record(record)
    deletion = explain_remove(state_of(t).store, change.old or {})

    assert deletion is not None and not deletion.local
    assert Drop("echo") == translate(change, region=REGION, settings=SETTINGS, deletion=deletion)


def test_a_second_plan_finds_nothing_to_move() -> None:
    t = table()
    old_tombstone(t, version(B, {B: 2}, hlc=2, deleted=True))
    move(t)

    assert Leave("absent") == plan_move(state_of(t), table=NAME, region=REGION, settings=SETTINGS)


def test_a_store_holding_a_successor_keeps_it_and_only_the_table_item_goes() -> None:
    t = table()
    older = version(B, {B: 2}, hlc=2, deleted=True)
    later = version(A, {A: 3, B: 2}, hlc=3, deleted=True)
    store_tombstone(t, later)
    old_tombstone(t, older)  # a writer still without the store, on an older view

    plan = move(t)

    assert (later, True) == (plan.version, plan.already)
    assert t.get(KEY) is None
    assert later == state_of(t).tombstone


def test_a_store_holding_the_same_tombstone_counts_as_already_moved() -> None:
    t = table()
    tomb = version(B, {B: 2}, hlc=2, deleted=True)
    store_tombstone(t, tomb)
    old_tombstone(t, tomb)

    plan = move(t)

    assert (tomb, True) == (plan.version, plan.already)
    assert tomb == state_of(t).tombstone


def test_an_older_stored_tombstone_is_replaced_by_the_tables() -> None:
    t = table()
    older = version(B, {B: 2}, hlc=2, deleted=True)
    later = version(A, {A: 3, B: 2}, hlc=3, deleted=True)
    store_tombstone(t, older)
    old_tombstone(t, later)

    plan = move(t)

    assert (later, False) == (plan.version, plan.already)
    assert later == state_of(t).tombstone


def test_a_concurrent_stored_tombstone_is_settled_by_the_resolver() -> None:
    """What a replicated version meeting the store's tombstone would get (`decide`)."""
    t = table()
    stored = version(B, {B: 2}, hlc=2, deleted=True)
    table_s = version(A, {A: 1}, hlc=5, deleted=True)
    assert Order.CONCURRENT == compare(stored.meta, table_s.meta)
    store_tombstone(t, stored)
    old_tombstone(t, table_s)
    expected = decide(state_of(t).current, stored, settings=SETTINGS)  # the table's is current
    assert isinstance(expected, Write)

    plan = move(t)

    assert expected.version.meta.lww_key == plan.version.meta.lww_key
    assert plan.version == state_of(t).tombstone
    assert t.get(KEY) is None


def test_live_raw_and_absent_keys_and_residency_markers_are_left_alone() -> None:
    live = version(A, {A: 1}, hlc=1)
    marker = version(A, {A: 1}, hlc=1, deleted=True)
    marker = replace(marker, meta=replace(marker.meta, withheld=True))
    cases: dict[str, dict[str, Any]] = {
        "live": encode_item(live, horizon_ms=SETTINGS.horizon_ms),
        "raw": {**KEY, "v": {"S": "raw"}},
        "marker": encode_item(marker, horizon_ms=SETTINGS.horizon_ms),
    }
    for reason, item in cases.items():
        t = table()
        t.put_raw(item)
        assert Leave(reason) == plan_move(  # type: ignore[arg-type]
            state_of(t), table=NAME, region=REGION, settings=SETTINGS
        ), reason


def test_a_write_landing_during_the_move_is_never_deleted() -> None:
    """The table's Delete is conditioned on exactly the ``_georep`` read: an application's
    put between the read and the commit fails it, and the key is read and planned again."""
    t = table()
    old_tombstone(t, version(B, {B: 2}, hlc=2, deleted=True))
    raced = {**KEY, "v": {"S": "written after the delete"}}

    def land(_: Mapping[str, Any]) -> None:
        t.before_write = None
        t.put_raw(raced)

    t.before_write = land

    assert ("skipped", "raw") == move_key(t, KEY, name=NAME, region=REGION, settings=SETTINGS)
    assert raced == t.get(KEY)
    assert state_of(t).tombstone is None


def test_under_merge_rules_the_deleted_data_moves_into_the_stores_data() -> None:
    settings = replace(SETTINGS, resolver=field_rules(tags=union()))
    kept = {**KEY, "tags": {"SS": ["a", "b"]}}
    tomb = version(B, {B: 2}, hlc=2, deleted=True, data=kept)
    old_tombstone(t := table(), tomb)

    move(t, settings)

    assert t.get(KEY) is None
    stored = t.get_stored(KEY)
    assert stored is not None and {"M": kept} == stored[DATA_ATTR]
    assert tomb == decode_store_item(stored, regions=frozenset(REGIONS)).tombstone


def scan_of(t: MemoryTable) -> Any:
    """A Scan over the memory table: one page, every item in segment 0, the filter applied
    as DynamoDB would (only items holding ``_georep`` and ``_georep_ttl``)."""

    def scan(**request: Any) -> dict[str, Any]:
        items = list(t.items.values()) if request["Segment"] == 0 else []
        kept = [i for i in items if "_georep" in i and "_georep_ttl" in i]
        return {"Items": kept, "ScannedCount": len(items)}

    return scan


def test_a_migration_moves_every_tombstone_item_and_a_second_run_moves_nothing() -> None:
    t = table()
    for n in range(3):
        tomb = version(B, {B: n + 1}, hlc=n + 1, deleted=True, data={"pk": {"S": f"gone{n}"}})
        t.put_raw(encode_item(tomb, horizon_ms=SETTINGS.horizon_ms))
    live = version(A, {A: 1}, hlc=1, data={"pk": {"S": "live"}, "v": {"S": "x"}})
    t.put_raw(encode_item(live, horizon_ms=SETTINGS.horizon_ms))

    def run(**options: Any) -> Any:
        return Migration(
            places=t,
            scan=scan_of(t),
            table_name=NAME,
            name=NAME,
            region=REGION,
            settings=SETTINGS,
            segments=1,
            stop=threading.Event(),
            **options,
        ).run()

    dry = run(dry_run=True)
    assert (3, 0) == (dry.tally.moved, len(t.stored))
    first = run()
    second = run()

    assert (4, 3, 0, 0, 0) == (
        first.tally.scanned,
        first.tally.moved,
        first.tally.already_moved,
        first.tally.skipped,
        first.tally.failed,
    )
    assert first.complete and second.complete
    assert (1, 0, 0) == (second.tally.scanned, second.tally.moved, second.tally.already_moved)
    assert ["live"] == [i["pk"]["S"] for i in t.items.values()]


def test_an_unreadable_item_is_reported_never_deleted_and_the_command_exits_1(
    capsys: Any,
) -> None:
    """Metadata georep did not write fails the key (kept in the report's failures) and the
    run: `georep migrate-tombstones` exits 1 and says to run it again."""
    import argparse

    from service.surfaces.commands.migrate_tombstones import _report

    t = table()
    bad = {**KEY, "_georep": {"S": "not georep's"}, "_georep_ttl": {"N": "1"}}
    t.put_raw(bad)
    result = Migration(
        places=t, scan=scan_of(t), table_name=NAME, name=NAME, region=REGION, settings=SETTINGS
    ).run()

    assert (1, 0) == (result.tally.failed, result.tally.moved)
    assert bad == t.get(KEY)
    assert result.tally.failures[0].startswith('{"pk": "k"}: ')
    args = argparse.Namespace(json=True, dry_run=False)
    assert 1 == _report(args, results=[(NAME, result)], store="georep-tombstones")
    out, err = capsys.readouterr()
    assert 1 == json.loads(out)["summary"]["failed"]
    assert "run the same command again" in err
