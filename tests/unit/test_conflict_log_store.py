"""The conflict log with the tombstone store (issue 22): a merge over a tombstone the
destination keeps in its store is logged with that side deleted and the store named, through
the Replicator's store path, and the entry keeps it through its DynamoDB item."""

from __future__ import annotations

from service.adapters.conflicts import MemoryConflicts
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core.conflicts import decode_entry, encode_entry, held_in
from service.core.places import read_key
from service.engine.pipeline import Replicator
from tests.unit.test_pipeline_store import KEY, NAME, SETTINGS, T0, tables, write_locally

STORE = "georep-tombstones"


def replicate(region: str, ts: dict[str, MemoryTable], sink: MemoryConflicts) -> None:
    replicator = Replicator(
        region=region,
        settings=SETTINGS,
        tables=ts,
        dead_letters=MemoryDeadLetters(),
        metrics=MemoryMetrics(),
        now_ms=lambda: T0 + 60_000,
        conflicts=sink,
        table=NAME,
    )
    try:
        results = replicator.process(ts[region].records_after(len(ts[region].stream) - 1))
        assert all(r.status == "ok" for r in results)
    finally:
        replicator.close()


def test_an_update_that_meets_a_stored_tombstone_is_logged_with_the_tombstone_from_the_store() -> (
    None
):
    """r1 deletes k (its tombstone goes to r1's store), r0 updates it a little later without
    having seen the delete. At r1 the update meets the tombstone from the store: a conflict
    whose existing side is deleted and held in the store, the update winning (LWW)."""
    ts = tables()
    write_locally(ts["r1"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    write_locally(ts["r1"], None, at_ms=T0 + 10)
    write_locally(ts["r0"], {**KEY, "v": {"S": "2"}}, at_ms=T0 + 20)
    assert ts["r1"].get(KEY) is None and ts["r1"].get_stored(KEY) is not None
    sink = MemoryConflicts(tombstone_table=STORE)

    replicate("r0", ts, sink)

    (entry,) = [e for e in sink.entries() if e.destination == "r1"]
    assert (True, "r1", False) == (
        entry.existing.deleted,
        entry.existing.origin,
        entry.incoming.deleted,
    )
    assert ("incoming", False, NAME) == (entry.winner, entry.result_deleted, entry.table)
    assert (STORE, "store", "stream") == (
        entry.tombstone_table,
        held_in(entry, "existing"),
        held_in(entry, "incoming"),
    )
    assert entry == decode_entry(encode_entry(entry, retention_days=30))
    # The update is in r1's table, and the store no longer holds the tombstone it succeeded.
    state = read_key(ts["r1"].get(KEY), ts["r1"].get_stored(KEY), settings=SETTINGS)
    assert state.item is not None and state.tombstone is None


def test_without_the_store_a_deleted_existing_side_is_held_in_the_table() -> None:
    """The same entry logged by a sink that knows no store (the store off, or an entry logged
    before georep recorded it) says the tombstone was in the destination's table, and its item
    has no store attribute (what earlier entries look like)."""
    ts = tables()
    write_locally(ts["r1"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    write_locally(ts["r1"], None, at_ms=T0 + 10)
    write_locally(ts["r0"], {**KEY, "v": {"S": "2"}}, at_ms=T0 + 20)
    sink = MemoryConflicts()

    replicate("r0", ts, sink)

    (entry,) = [e for e in sink.entries() if e.destination == "r1"]
    assert (None, "table") == (entry.tombstone_table, held_in(entry, "existing"))
    assert "tombstone_table" not in encode_entry(entry, retention_days=30)
