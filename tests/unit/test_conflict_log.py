"""The conflict log: the entry the pure core builds for a merge, and the Replicator putting it
in its sink once the merge is written, over in-memory tables.

A conflict is logged once per (key, pair of inputs, destination), whatever replays; a sink that
fails never fails replication.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resolvers import LastWriterWins, Side, UserRule
from service.adapters.conflicts import MemoryConflicts
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core.conflicts import (
    DAY_SECONDS,
    EXPIRES_ATTR,
    ConflictEntry,
    conflict_entry,
    conflict_id,
    decode_entry,
    encode_entry,
    is_conflict,
)
from service.core.stored import Stamped, read_item
from service.core.version import Version
from service.engine.pipeline import Replicator
from tests.unit.test_pipeline import REGIONS, T0, settings_for, write_locally

KEY = {"pk": {"S": "k"}}
NOW_MS = T0 + 60_000


def stored(table: MemoryTable) -> Version:
    current = read_item(table.get(KEY), settings=settings_for(LastWriterWins()))
    assert isinstance(current, Stamped)
    return current.version


def concurrent_writes(
    resolver: Any = None,
) -> tuple[dict[str, MemoryTable], Any, Version, Version]:
    """r1 writes k, then r0 writes k a second later without having seen it: concurrent."""
    settings = settings_for(resolver or LastWriterWins())
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    write_locally(tables["r1"], {**KEY, "v": {"S": "r1"}}, at_ms=T0, settings=settings)
    write_locally(tables["r0"], {**KEY, "v": {"S": "r0"}}, at_ms=T0 + 1_000, settings=settings)
    return tables, settings, stored(tables["r1"]), stored(tables["r0"])


def replicator(
    settings: Any, tables: Mapping[str, Any], sink: Any, metrics: MemoryMetrics | None = None
) -> Replicator:
    return Replicator(
        region="r0",
        settings=settings,
        tables=tables,
        dead_letters=MemoryDeadLetters(),
        metrics=metrics or MemoryMetrics(),
        now_ms=lambda: NOW_MS,
        conflicts=sink,
    )


def run(replicator: Replicator, records: list[Any]) -> list[Any]:
    try:
        return replicator.process(records)
    finally:
        replicator.close()


# -- the pure entry ----------------------------------------------------------------------------


def test_the_entry_names_both_inputs_the_destination_and_the_lww_winner() -> None:
    """r0's later write meets r1's at r1: the merge is r0's version whole, so ``incoming``
    won; both inputs' metadata is kept, not their data."""
    _tables, _settings, existing, incoming = concurrent_writes()
    merged = incoming  # LWW: the later write wins whole

    entry = conflict_entry(
        key=KEY,
        destination="r1",
        source="r0",
        resolver="lww",
        existing=existing,
        incoming=incoming,
        merged=merged,
        at=1_700_000_060,
    )

    assert ("r1", "r0", "lww", 1_700_000_060) == (
        entry.destination,
        entry.source,
        entry.resolver,
        entry.at,
    )
    assert KEY == entry.key
    assert (existing.meta.write_id, "r1") == (entry.existing.write_id, entry.existing.origin)
    assert (incoming.meta.write_id, "r0") == (entry.incoming.write_id, entry.incoming.origin)
    assert incoming.meta.vv.entries == entry.incoming.vv
    assert (incoming.meta.hlc, False) == (entry.incoming.hlc, entry.incoming.deleted)
    assert (incoming.meta.write_id, False, "incoming") == (
        entry.result_write_id,
        entry.result_deleted,
        entry.winner,
    )


def test_the_id_is_the_same_whichever_side_each_input_is_on_and_differs_per_destination() -> None:
    _tables, _settings, a, b = concurrent_writes()

    one = conflict_id(key=KEY, existing=a, incoming=b, destination="r1")

    assert one == conflict_id(key=KEY, existing=b, incoming=a, destination="r1")
    assert one != conflict_id(key=KEY, existing=a, incoming=b, destination="r2")
    assert one != conflict_id(key={"pk": {"S": "other"}}, existing=a, incoming=b, destination="r1")


def test_an_entry_round_trips_through_its_item_and_expires_after_the_retention() -> None:
    _tables, _settings, a, b = concurrent_writes()
    entry = conflict_entry(
        key=KEY,
        destination="r1",
        source="r0",
        resolver="lww",
        existing=a,
        incoming=b,
        merged=b,
        at=1_000,
    )

    item = encode_entry(entry, retention_days=30)

    assert {"N": str(1_000 + 30 * DAY_SECONDS)} == item[EXPIRES_ATTR]
    assert {"S": entry.id} == item["id"]
    assert entry == decode_entry(item)


def concat(a: Side, b: Side) -> Mapping[str, Any]:
    return {"pk": a.data["pk"], "v": "+".join(sorted([a.data["v"], b.data["v"]]))}


def test_a_blend_of_both_inputs_names_no_winner() -> None:
    """A rule that keeps something of each: the merge is neither input, so no ``winner``."""
    sink = MemoryConflicts()
    tables, settings, _existing, _incoming = concurrent_writes(UserRule(concat, "concat"))

    run(replicator(settings, tables, sink), tables["r0"].records_after(0))

    (entry,) = sink.entries()
    assert ("rules", None) == (entry.resolver, entry.winner)
    assert {"S": "r0+r1"} == stored(tables["r1"]).data["v"]


# -- through the Replicator ------------------------------------------------------------------


def test_a_conflict_at_one_destination_is_logged_once_with_what_was_merged() -> None:
    """r0's record reaches r1 (concurrent write: merged) and r2 (empty: written). Exactly one
    entry: at r1, from r0, under LWW, the time the Replicator's clock gave."""
    sink = MemoryConflicts()
    metrics = MemoryMetrics()
    tables, settings, existing, incoming = concurrent_writes()

    (result,) = run(replicator(settings, tables, sink, metrics), tables["r0"].records_after(0))

    assert "ok" == result.status
    assert {"r1": "applied (merged)", "r2": "applied (written)"} == {
        d: str(x) for d, x in result.deliveries.items()
    }
    (entry,) = sink.entries()
    assert ("r1", "r0", "lww") == (entry.destination, entry.source, entry.resolver)
    assert NOW_MS // 1000 == entry.at
    assert (existing.meta.write_id, incoming.meta.write_id) == (
        entry.existing.write_id,
        entry.incoming.write_id,
    )
    assert stored(tables["r1"]).meta.write_id == entry.result_write_id
    assert 1 == metrics.total("conflicts")
    assert 0 == metrics.total("conflict_log_failures")


def test_a_replayed_record_logs_no_second_entry() -> None:
    """At-least-once delivery: the same record again is stale at r1 (it holds the merge), and
    the same conflict met again (r1 back to its own write, as before the merge) logs under the
    same id, which the sink keeps once."""
    sink = MemoryConflicts()
    puts: list[ConflictEntry] = []

    class Recording:
        def put(self, entry: ConflictEntry) -> None:
            puts.append(entry)
            sink.put(entry)

    tables, settings, _existing, _incoming = concurrent_writes()
    records = tables["r0"].records_after(0)
    run(replicator(settings, tables, Recording()), records)

    run(replicator(settings, tables, Recording()), records)
    assert 1 == len(puts)  # stale: nothing merged, nothing logged

    again, _settings, _e, _i = concurrent_writes()
    tables["r1"] = again["r1"]
    run(replicator(settings, tables, Recording()), records)
    assert 2 == len(puts)
    assert puts[0].id == puts[1].id
    assert 1 == len(sink.entries())


def test_a_sink_that_raises_does_not_fail_the_record() -> None:
    """The merge is written and the record ok; the failure is counted, not raised."""

    class Broken:
        def put(self, entry: ConflictEntry) -> None:
            raise ConnectionError("the conflict table is unreachable")

    metrics = MemoryMetrics()
    tables, settings, _existing, _incoming = concurrent_writes()

    (result,) = run(replicator(settings, tables, Broken(), metrics), tables["r0"].records_after(0))

    assert "ok" == result.status
    assert "applied (merged)" == str(result.deliveries["r1"])
    assert stored(tables["r1"]).meta.merged
    assert 1 == metrics.total("conflict_log_failures")
    assert 1 == metrics.total("conflicts")


def test_without_a_sink_a_conflict_is_only_counted() -> None:
    metrics = MemoryMetrics()
    tables, settings, _existing, _incoming = concurrent_writes()

    (result,) = run(replicator(settings, tables, None, metrics), tables["r0"].records_after(0))

    assert "ok" == result.status
    assert 1 == metrics.total("conflicts")


# -- what is not a conflict --------------------------------------------------------------------


def test_raw_items_backfilled_with_no_consumer_running_then_consumed_log_no_conflict() -> None:
    """Issue 16, finding 6, as a new user met it: raw items written with the stream on and no
    consumer, `georep backfill`, then the consumers. Each item's INSERT record is adopted and
    meets the backfill stamp of the same data at every destination: one write, not two
    concurrent ones, so no entry and no count. (It logged one per item and destination.)"""
    from tests.unit import test_backfill as backfill

    tables = backfill._tables()
    items = [backfill._item(f"k{i}", a=str(i)) for i in range(6)]
    for item in items:
        tables[backfill.SOURCE].put_raw(item)
    backfill._backfill(tables, pages=[items], populate=False).run({})
    sink, metrics = MemoryConflicts(), MemoryMetrics()
    replicators = {
        region: Replicator(
            region=region,
            settings=backfill.SETTINGS,
            tables=tables,
            dead_letters=MemoryDeadLetters(),
            metrics=metrics,
            now_ms=lambda: NOW_MS,
            conflicts=sink,
        )
        for region in backfill.REGIONS
    }
    read = dict.fromkeys(backfill.REGIONS, 0)
    while any(read[r] < len(tables[r].stream) for r in backfill.REGIONS):
        for region, table in tables.items():
            records = table.records_after(read[region])
            read[region] += len(records)
            assert {"ok"} >= {r.status for r in run(replicators[region], records)}

    assert [] == sink.entries()
    assert 0 == metrics.total("conflicts")
    for item in items:
        first, *rest = backfill._everywhere(tables, item["pk"]["S"])
        assert [first, first] == rest
        assert item == backfill._data(first)


def test_two_regions_writes_neither_of_which_saw_the_other_are_still_a_conflict() -> None:
    """The control: the rule above drops only pairs from one region's own table."""
    _tables, _settings, existing, incoming = concurrent_writes()
    assert is_conflict(existing, incoming) and is_conflict(incoming, existing)
