"""The Replicator with the tombstone store (issue 22, `Settings.tombstone_store`): deletes leave
every region's table, each region's stream carries a REMOVE, the tombstone orders late and
stale versions from the store, and georep's own REMOVEs are told apart from an application's.
"""

from __future__ import annotations

from concurrent.futures import Executor
from dataclasses import replace
from typing import Any

import ulid

from resolvers import LastWriterWins
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core import hlc
from service.core.adopt import Adopt, Drop, Forward
from service.core.places import commit_for, read_key
from service.core.stamp import stamp
from service.core.stored import Settings, Stamped
from service.engine.pipeline import RecordResult, Replicator

REGIONS = ("r0", "r1", "r2")
NAME = "orders"
KEY = {"pk": {"S": "k"}}
T0 = 1_700_000_000_000
SETTINGS = Settings(
    regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins(), tombstone_store=True
)


def tables() -> dict[str, MemoryTable]:
    return {r: MemoryTable(r, ("pk",), table_name=NAME, now_ms=lambda: T0) for r in REGIONS}


def write_locally(table: MemoryTable, data: dict[str, Any] | None, *, at_ms: int) -> None:
    """An SDK write in ``table``'s region: stamped over both places, committed to both."""
    state = read_key(table.get(KEY), table.get_stored(KEY), settings=SETTINGS)
    write_id = str(ulid.from_bytes(at_ms.to_bytes(6, "big") + at_ms.to_bytes(10, "big")))
    version = stamp(
        state.current,
        data,
        region=table.region,
        now_hlc=hlc.pack(at_ms),
        write_id=write_id,
        settings=SETTINGS,
    )
    assert version is not None
    steps = commit_for(state, version, local=True, table=NAME, settings=SETTINGS)
    assert table.commit(KEY, table=steps[0], store=steps[1]).ok


def replicator_over(
    region: str,
    ts: dict[str, MemoryTable],
    *,
    patient: bool = False,
    executor: Executor | None = None,
) -> Replicator:
    return Replicator(
        region=region,
        settings=SETTINGS,
        tables=ts,
        dead_letters=MemoryDeadLetters(),
        metrics=MemoryMetrics(),
        now_ms=lambda: T0,
        table=NAME,
        patient=patient,
        executor=executor,
    )


def replicate(region: str, ts: dict[str, MemoryTable], records: list[Any]) -> list[RecordResult]:
    replicator = replicator_over(region, ts)
    try:
        return replicator.process(records)
    finally:
        replicator.close()


def drain(ts: dict[str, MemoryTable]) -> None:
    read = dict.fromkeys(REGIONS, 0)
    for _ in range(20):
        moved = False
        for region in REGIONS:
            records = ts[region].records_after(read[region])
            if records:
                moved = True
                read[region] += len(records)
                assert all(r.status == "ok" for r in replicate(region, ts, records))
        if not moved:
            return
    raise AssertionError("did not quiesce")


def test_a_delete_leaves_every_regions_table_and_every_stream_carries_a_remove() -> None:
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    assert all(t.get(KEY) is not None for t in ts.values())

    write_locally(ts["r0"], None, at_ms=T0 + 10)
    drain(ts)

    for region, table in ts.items():
        assert table.get(KEY) is None, region
        assert "REMOVE" == table.stream[-1]["eventName"], region
        current = read_key(None, table.get_stored(KEY), settings=SETTINGS).current
        assert isinstance(current, Stamped) and current.version.meta.deleted, region


def test_georeps_own_removes_are_forwarded_once_and_dropped_as_echoes() -> None:
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    write_locally(ts["r0"], None, at_ms=T0 + 10)
    (local,) = replicate("r0", ts, ts["r0"].records_after(len(ts["r0"].stream) - 1))
    assert isinstance(local.outcome, Forward) and local.outcome.version.meta.deleted
    (echo,) = replicate("r1", ts, ts["r1"].records_after(len(ts["r1"].stream) - 1))
    assert Drop("echo") == echo.outcome


def test_an_applications_delete_is_adopted_into_the_store_and_replicated() -> None:
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    ts["r1"].delete_raw(KEY)
    (adopted,) = replicate("r1", ts, ts["r1"].records_after(len(ts["r1"].stream) - 1))
    assert isinstance(adopted.outcome, Adopt) and adopted.outcome.version.meta.deleted
    drain(ts)
    assert all(t.get(KEY) is None for t in ts.values())
    assert all(read_key(None, t.get_stored(KEY), settings=SETTINGS).tombstone for t in ts.values())


def test_a_stale_put_replayed_after_the_delete_never_brings_the_key_back() -> None:
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    put = ts["r0"].records_after(0)
    drain(ts)
    write_locally(ts["r1"], None, at_ms=T0 + 10)
    drain(ts)

    for _ in REGIONS:  # a duplicate, a lagging region, a consumer restarted at zero
        results = replicate("r0", ts, put)
        assert all(r.status == "ok" for r in results)
    assert all(t.get(KEY) is None for t in ts.values())


def test_a_write_after_the_delete_lives_again_and_drops_the_tombstone() -> None:
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    write_locally(ts["r0"], None, at_ms=T0 + 10)
    drain(ts)
    write_locally(ts["r2"], {**KEY, "v": {"S": "2"}}, at_ms=T0 + 20)
    drain(ts)
    for table in ts.values():
        assert {"S": "2"} == table.get(KEY)["v"]  # type: ignore[index]
        assert read_key(None, table.get_stored(KEY), settings=SETTINGS).tombstone is None


def test_without_the_store_nothing_changes() -> None:
    assert not replace(SETTINGS, tombstone_store=False).tombstone_store


def test_a_raw_write_after_a_delete_is_adopted_as_its_successor_before_others_meet_it() -> None:
    """An application's put after a delete (an INSERT with no old image) sits beside the
    stored tombstone; a version from another region waits for its adoption (`Defer`), which
    meets the tombstone as the raw item's context and writes a successor of both."""
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    write_locally(ts["r1"], None, at_ms=T0 + 10)
    drain(ts)
    ts["r1"].put_raw({**KEY, "v": {"S": "raw"}})
    write_locally(ts["r0"], {**KEY, "v": {"S": "r0"}}, at_ms=T0 + 20)  # concurrent with it
    (forwarded,) = replicate("r0", ts, ts["r0"].records_after(len(ts["r0"].stream) - 1))
    assert "RawItemNotAdopted" == forwarded.deliveries["r1"].error
    assert {"S": "raw"} == ts["r1"].get(KEY)["v"]  # type: ignore[index]
    (adopted,) = replicate("r1", ts, ts["r1"].records_after(len(ts["r1"].stream) - 1))
    assert isinstance(adopted.outcome, Adopt)
    written = read_key(ts["r1"].get(KEY), ts["r1"].get_stored(KEY), settings=SETTINGS)
    assert isinstance(written.current, Stamped) and written.tombstone is None
    assert "succeeded" == adopted.deliveries["r1"].detail  # a successor of the delete too
    replicate("r0", ts, ts["r0"].records_after(len(ts["r0"].stream) - 1))  # the retry
    drain(ts)
    items = [t.get(KEY) for t in ts.values()]
    assert items[0] is not None and all(item == items[0] for item in items)


def _tombstones(ts: dict[str, MemoryTable]) -> dict[str, Any]:
    return {
        r: read_key(t.get(KEY), t.get_stored(KEY), settings=SETTINGS).current for r, t in ts.items()
    }


def test_a_successor_written_to_the_store_alone_reaches_every_region() -> None:
    """Found by the store machine (issue 22): a raw put, then an SDK delete over it before its
    adoption. The adoption meets the delete's tombstone in the store and writes a successor of
    both there; the table holds no item, so no record forwards it. Fix: with the store every
    adoption is gated, and the other regions receive that successor instead of the adoption
    (`Delivery.replacement`)."""
    ts = tables()
    ts["r0"].put_raw({**KEY, "v": {"S": "raw"}})
    write_locally(ts["r0"], None, at_ms=T0 + 10)
    drain(ts)
    states = _tombstones(ts)
    assert all(isinstance(s, Stamped) and s.version.meta.deleted for s in states.values())
    assert len({s.version.meta for s in states.values()}) == 1, states  # type: ignore[union-attr]
    assert all(t.get(KEY) is None for t in ts.values())


def test_a_store_only_successor_lost_with_its_deliveries_is_sent_on_the_replay() -> None:
    """The consumer wrote the successor to its own store and crashed before the other regions
    received it; the replayed adoption finds it stale, and the successor is sent instead."""
    ts = tables()
    ts["r0"].put_raw({**KEY, "v": {"S": "raw"}})
    write_locally(ts["r0"], None, at_ms=T0 + 10)
    insert = ts["r0"].records_after(0, limit=1)
    only_here = {"r0": ts["r0"], "r1": _Unreachable(), "r2": _Unreachable()}
    (first,) = replicate("r0", only_here, insert)  # type: ignore[arg-type]
    assert first.status == "failed" and first.deliveries["r0"].replacement is not None
    (replayed,) = replicate("r0", ts, insert)
    assert replayed.deliveries["r0"].detail == "stale"
    assert replayed.deliveries["r0"].replacement == first.deliveries["r0"].replacement
    drain(ts)
    states = _tombstones(ts)
    assert len({s.version.meta for s in states.values()}) == 1, states  # type: ignore[union-attr]


def test_an_applications_copy_beside_a_tombstone_is_adopted_over_it() -> None:
    """A restore: the application puts back an item with georep's metadata, copied from
    another region, after the key was deleted here. Its INSERT has no old image; the table
    still holds it beside the tombstone, which georep never leaves, so it is adopted over the
    tombstone (`translate`'s ``beside``) and every region ends with the copy's data."""
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    drain(ts)
    copy = ts["r2"].get(KEY)
    write_locally(ts["r1"], None, at_ms=T0 + 10)
    drain(ts)
    assert copy is not None
    ts["r1"].put_raw(copy)
    (adopted,) = replicate("r1", ts, ts["r1"].records_after(len(ts["r1"].stream) - 1))
    assert isinstance(adopted.outcome, Adopt)
    drain(ts)
    for region, table in ts.items():
        assert {"S": "1"} == (table.get(KEY) or {}).get("v"), region
        assert read_key(None, table.get_stored(KEY), settings=SETTINGS).tombstone is None


class _Unreachable:
    """A destination that cannot be reached (every request fails, transiently)."""

    def __getattr__(self, name: str) -> Any:
        def fail(*args: Any, **kwargs: Any) -> Any:
            raise ConnectionError("unreachable")

        return fail


def test_a_store_only_successor_merged_since_reaches_a_region_that_missed_it() -> None:
    """Found by a deep run of the store machines (seed 1207, issue 22): the successor was
    written to r0's store alone, its deliveries failed (a region deferred it), and before the
    retry r0 merged it with another region's version into a live item, whose record is an
    echo. The replayed adoption is stale at r0; what the others must receive is r0's state,
    which holds the successor (`_state_succeeding`), not the adoption."""
    ts = tables()
    ts["r0"].put_raw({**KEY, "v": {"S": "raw"}})
    write_locally(ts["r0"], None, at_ms=T0 + 10)
    insert = ts["r0"].records_after(0, limit=1)
    only_r0 = {"r0": ts["r0"], "r1": _Unreachable(), "r2": _Unreachable()}
    (first,) = replicate("r0", only_r0, insert)  # type: ignore[arg-type]
    assert first.status == "failed" and first.deliveries["r0"].replacement is not None
    write_locally(ts["r2"], {**KEY, "v": {"S": "r2"}}, at_ms=T0 + 1000)  # concurrent with it
    to_r0 = {"r0": ts["r0"], "r1": _Unreachable(), "r2": ts["r2"]}
    replicate("r2", to_r0, ts["r2"].records_after(len(ts["r2"].stream) - 1))  # type: ignore[arg-type]
    assert ts["r0"].get(KEY) is not None  # r0 merged the successor into a live item
    (replayed,) = replicate("r0", ts, insert)
    assert replayed.status == "ok"
    drain(ts)
    states = _tombstones(ts)
    assert len({s.version.meta for s in states.values()}) == 1, states  # type: ignore[union-attr]


def test_a_raw_insert_after_a_delete_replayed_is_adopted_as_the_same_version() -> None:
    """Found by a deep run of the store machine (seed 1208, issue 22) on a version of the
    `beside` rule that adopted raw INSERTs over the tombstone when the table still held them:
    the first delivery adopted over the tombstone, the replay (the table had moved on) adopted
    over nothing, a different version; the region that had deferred the first never received
    it. An adoption is computed from its record alone, so a replay adopts the same version."""
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    write_locally(ts["r0"], None, at_ms=T0 + 10)
    drain(ts)
    ts["r0"].put_raw({**KEY, "v": {"S": "raw"}})
    insert = ts["r0"].records_after(len(ts["r0"].stream) - 1)
    (first,) = replicate("r0", ts, insert)
    (again,) = replicate("r0", ts, insert)
    assert isinstance(first.outcome, Adopt) and isinstance(again.outcome, Adopt)
    assert first.outcome.version == again.outcome.version


def test_a_version_meeting_a_copy_beside_a_tombstone_is_decided_against_the_tombstone() -> None:
    """An application's copy put back after a delete is adopted over the tombstone from its
    INSERT, if that is read while the copy is in the table. A version from another region
    that arrives first is decided at once against the copy and the tombstone (the later one,
    or both resolved), never written over the copy as if the tombstone were not there: that
    would drop the tombstone from the region without merging it, and the copy's INSERT, read
    after the table moved on, is an echo. It used to wait for the copy's adoption instead
    (`Defer`), which never comes once the no-read path has written over the copy: the key's
    lane then waited for good (the copies gap, docs/design.md)."""
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "0"}}, at_ms=T0)
    drain(ts)
    copy = ts["r2"].get(KEY)  # a backup of the first version
    assert copy is not None
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0 + 5)
    drain(ts)
    write_locally(ts["r1"], None, at_ms=T0 + 10)  # the delete, not replicated yet
    write_locally(ts["r0"], {**KEY, "v": {"S": "2"}}, at_ms=T0 + 20)  # concurrent with it
    ts["r1"].put_raw(copy)  # the backup put back beside the tombstone
    (update,) = replicate("r0", ts, ts["r0"].records_after(len(ts["r0"].stream) - 1))
    assert "ok" == update.status, update
    replicate("r1", ts, ts["r1"].records_after(0))  # the delete forwarded, the copy: an echo
    drain(ts)
    states = _tombstones(ts)
    assert len({s.version.meta for s in states.values()}) == 1, states  # type: ignore[union-attr]
