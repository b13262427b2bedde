"""What the Replicator counts with the tombstone store (issue 22): georep's own deletes' REMOVE
records are echoes (``dropped_echo``) where they were replicated, an application's delete is
an adoption (``raw_writes_adopted``), and each commit of the store path is counted once by
the row of `commit_for` it is (``store_commits{kind}``)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest

from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core.places import KeyState, commit_for, read_key
from service.core.tombstones import commit_kind
from service.core.version import Version
from service.engine.pipeline import Replicator
from tests.unit.test_pipeline_store import KEY, NAME, REGIONS, SETTINGS, T0, tables, write_locally


def counted(metrics: MemoryMetrics, name: str, **labels: str) -> float:
    """The sum of ``name`` over the series whose labels include ``labels``."""
    return sum(
        value
        for (n, series), value in metrics.counters.items()
        if n == name and labels.items() <= dict(series).items()
    )


def replicate(
    region: str, ts: Mapping[str, Any], records: list[Any], metrics: MemoryMetrics
) -> None:
    """``region``'s consumer replicates ``records``, counting in ``metrics``; all settle ok."""
    replicator = Replicator(
        region=region,
        settings=SETTINGS,
        tables=ts,
        dead_letters=MemoryDeadLetters(),
        metrics=metrics,
        now_ms=lambda: T0,
        table=NAME,
    )
    try:
        assert all(r.status == "ok" for r in replicator.process(records))
    finally:
        replicator.close()


def drain_counting(ts: dict[str, MemoryTable], read: dict[str, int]) -> dict[str, MemoryMetrics]:
    """Every region's consumer reads its stream from ``read`` (positions, moved on) until
    nothing moves; what each counted."""
    metrics = {r: MemoryMetrics() for r in REGIONS}
    for _ in range(20):
        moved = False
        for region in REGIONS:
            records = ts[region].records_after(read[region])
            if not records:
                continue
            moved, read[region] = True, read[region] + len(records)
            replicate(region, ts, records, metrics[region])
        if not moved:
            return metrics
    raise AssertionError("did not quiesce")


def state_of(table: MemoryTable) -> KeyState:
    return read_key(table.get(KEY), table.get_stored(KEY), settings=SETTINGS)


def current(table: MemoryTable) -> Version:
    found = state_of(table).current
    assert hasattr(found, "version")
    return found.version  # type: ignore[no-any-return]


def test_each_row_of_commit_for_is_its_own_kind() -> None:
    """The five rows of the module table of service/core/places.py, one kind each."""
    ts = tables()
    table = ts["r0"]
    write_locally(table, {**KEY, "v": {"S": "1"}}, at_ms=T0)
    live = current(table)
    empty = read_key(None, None, settings=SETTINGS)
    assert "insert" == commit_kind(
        commit_for(empty, live, local=True, table=NAME, settings=SETTINGS)
    )
    write_locally(table, {**KEY, "v": {"S": "2"}}, at_ms=T0 + 1)
    updated = current(table)
    over_live = state_of(ts["r0"])
    write_locally(table, None, at_ms=T0 + 2)
    tombstone = current(table)
    kinds = {
        "update": commit_for(over_live, updated, local=True, table=NAME, settings=SETTINGS),
        "delete": commit_for(over_live, tombstone, local=True, table=NAME, settings=SETTINGS),
        "tombstone": commit_for(empty, tombstone, local=False, table=NAME, settings=SETTINGS),
        "revive": commit_for(state_of(table), updated, local=False, table=NAME, settings=SETTINGS),
    }
    assert {kind: kind for kind in kinds} == {k: commit_kind(s) for k, s in kinds.items()}


@pytest.mark.parametrize("how", ["sdk", "raw"])
def test_a_delete_is_counted_once_where_it_happened_and_as_an_echo_everywhere_else(
    how: str,
) -> None:
    """A delete in r1 (georep's SDK, or an application's raw DeleteItem): r0 and r2 commit it
    as ``delete`` (item out, tombstone in) and drop the REMOVE it makes there as an echo; r1
    forwards its own delete (nothing counted) or adopts the raw one (``raw_writes_adopted``,
    and its tombstone goes into r1's store alone: ``tombstone``). A write after it revives
    the key everywhere (``revive``)."""
    ts, read = tables(), dict.fromkeys(REGIONS, 0)
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    first = drain_counting(ts, read)
    assert 2 == counted(first["r0"], "store_commits", kind="insert")

    if how == "sdk":
        write_locally(ts["r1"], None, at_ms=T0 + 10)
    else:
        ts["r1"].delete_raw(KEY)
    deleted = drain_counting(ts, read)

    assert all(t.get(KEY) is None for t in ts.values())
    adopted = 1 if how == "raw" else 0
    assert adopted == counted(deleted["r1"], "raw_writes_adopted")
    assert adopted == counted(deleted["r1"], "store_commits", destination="r1", kind="tombstone")
    for other in ("r0", "r2"):
        assert 1 == counted(deleted["r1"], "store_commits", destination=other, kind="delete")
        assert 1 == counted(deleted[other], "dropped_echo"), other
        assert 0 == counted(deleted[other], "raw_writes_adopted"), other
    assert 0 == counted(deleted["r1"], "dropped_echo")

    write_locally(ts["r2"], {**KEY, "v": {"S": "2"}}, at_ms=T0 + 20)
    revived = drain_counting(ts, read)
    assert 2 == counted(revived["r2"], "store_commits", kind="revive")
    assert 2 == sum(counted(m, "store_commits") for m in revived.values())


def test_a_lost_race_is_not_counted_as_a_commit() -> None:
    """A commit whose condition fails is a retry (``precondition_retries``), not a commit."""
    ts = tables()
    write_locally(ts["r0"], {**KEY, "v": {"S": "1"}}, at_ms=T0)
    records = ts["r0"].records_after(0)
    metrics = MemoryMetrics()
    replicate("r0", {**ts, "r1": RacingTable(ts["r1"])}, records, metrics)
    assert 1 == counted(metrics, "precondition_retries", destination="r1")
    # Read again, the version is written over the raw item: one commit, counted once.
    assert 1 == counted(metrics, "store_commits", destination="r1")


class RacingTable:
    """r1's table, where r1's application writes the key (raw) just before georep's first
    commit there, so that commit's condition fails once."""

    def __init__(self, inner: MemoryTable) -> None:
        self.inner, self.raced = inner, False

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def commit(self, key: Any, **steps: Any) -> Any:
        if not self.raced:
            self.raced = True
            self.inner.put_raw({**KEY, "v": {"S": "raced"}})
        return self.inner.commit(key, **steps)
