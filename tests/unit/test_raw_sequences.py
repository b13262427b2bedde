"""Raw writes of one item, one after another in one region (plain boto3 writing an item several
times within the consumer's latency, as in AWS's sample event), replicated by the product's
Replicator over in-memory tables: one history, never a conflict.

Regression of issue 16's first version-counter fix, which gave every adoption over a raw item
or nothing a fresh actor: the sample event's INSERT, MODIFY and REMOVE were three concurrent
versions, the peer logged a conflict and wrote a merge, and the source region wrote successors
of each (each replicated again). Blind raw writes now continue their region's blind actor
(docs/design.md, "Raw-write adoption").
"""

from __future__ import annotations

from typing import Any

import pytest

from resolvers import LastWriterWins, Resolver, VersionCounter
from service.adapters.conflicts import MemoryConflicts
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core.stored import Settings, Stamped, read_item
from service.engine.pipeline import Replicator
from service.ports import WriteResult

REGIONS = ("r0", "r1")
SOURCE, PEER = REGIONS
KEY = {"pk": {"S": "k"}}
T0 = 1_700_000_000_000
# The sample event's writes, and a longer run: puts over puts, deletes, puts after deletes.
SAMPLE = ("put", "put", "delete")
LONGER = ("put", "put", "put", "delete", "put", "put", "delete", "put")


class Counting(MemoryTable):
    """A table that counts the replicator's writes that took effect (puts and annotations)."""

    writes = 0

    def write(self, *args: Any, **kwargs: Any) -> WriteResult:
        result = super().write(*args, **kwargs)
        self.writes += result.ok
        return result

    def annotate(self, *args: Any, **kwargs: Any) -> WriteResult:
        result = super().annotate(*args, **kwargs)
        self.writes += result.ok
        return result


class Cluster:
    """Two regions, each with its table, stream and Replicator, sharing one conflict log."""

    def __init__(self, resolver: Resolver, *, first_sequence: int) -> None:
        self.settings = Settings(regions=REGIONS, key_attributes=("pk",), resolver=resolver)
        self.tables = {
            r: Counting(r, ("pk",), now_ms=lambda: T0, first_sequence=first_sequence)
            for r in REGIONS
        }
        self.conflicts, self.metrics = MemoryConflicts(), MemoryMetrics()
        self.replicators = {
            r: Replicator(
                region=r,
                settings=self.settings,
                tables=self.tables,
                dead_letters=MemoryDeadLetters(),
                metrics=self.metrics,
                now_ms=lambda: T0 + 60_000,
                conflicts=self.conflicts,
            )
            for r in REGIONS
        }
        self.read = dict.fromkeys(REGIONS, 0)

    def write_raw(self, operation: str, n: int) -> None:
        if operation == "put":
            self.tables[SOURCE].put_raw({**KEY, "val": {"S": f"w{n}"}})
        else:
            self.tables[SOURCE].delete_raw(KEY)

    def drain(self, *, batch: int) -> None:
        """Every region's consumer, ``batch`` records at a time, until no record is left."""
        while any(self.read[r] < len(self.tables[r].stream) for r in REGIONS):
            for region, table in self.tables.items():
                records = table.records_after(self.read[region], batch)
                self.read[region] += len(records)
                if records:
                    results = self.replicators[region].process(records)
                    assert {"ok"} >= {result.status for result in results}

    def close(self) -> None:
        for replicator in self.replicators.values():
            replicator.close()


def _converged_on(cluster: Cluster, operations: tuple[str, ...]) -> None:
    """Both regions hold one identical version: the last raw write, never a merge."""
    items = {r: cluster.tables[r].items for r in REGIONS}
    assert items[SOURCE] == items[PEER]
    final = read_item(cluster.tables[SOURCE].get(KEY), settings=cluster.settings)
    assert isinstance(final, Stamped)
    assert not final.version.meta.merged
    deleted = operations[-1] == "delete"
    assert deleted == final.version.meta.deleted
    if not deleted:
        assert {"S": f"w{len(operations) - 1}"} == final.version.data["val"]


@pytest.mark.parametrize("resolver", [LastWriterWins(), VersionCounter()], ids=lambda r: r.name)
@pytest.mark.parametrize("operations", [SAMPLE, LONGER], ids=["sample", "longer"])
@pytest.mark.parametrize("first_sequence", [1, 65_534], ids=["low", "across-16-bits"])
@pytest.mark.parametrize("batching", ["one-batch", "one-record-per-batch"])
def test_raw_writes_of_one_item_one_after_another_replicate_as_one_history_with_no_conflict(
    resolver: Resolver, operations: tuple[str, ...], first_sequence: int, batching: str
) -> None:
    """Raw puts and deletes of one item in one region, consumed in one batch after all were
    written (the consumer behind, as in the sample event) or one record per batch after each
    write (the consumer keeping up): no conflict is logged or counted, the source region gets
    no write but its adoptions' own (in one batch: the last one, the others coalesced into
    it), and both regions end with the last write, not a merge. The sequence numbers also
    cross a 16-bit boundary (the resolvers must rank a later blind raw write above an earlier
    one whatever their low bits)."""
    cluster = Cluster(resolver, first_sequence=first_sequence)
    try:
        for n, operation in enumerate(operations):
            cluster.write_raw(operation, n)
            if batching == "one-record-per-batch":
                cluster.drain(batch=1)
        cluster.drain(batch=100)
    finally:
        cluster.close()

    assert [] == cluster.conflicts.entries()
    assert 0 == cluster.metrics.total("conflicts")
    landings = 1 if batching == "one-batch" else len(operations)
    assert landings == cluster.tables[SOURCE].writes
    assert landings == cluster.tables[PEER].writes
    _converged_on(cluster, operations)


@pytest.mark.parametrize("resolver", [LastWriterWins(), VersionCounter()], ids=lambda r: r.name)
@pytest.mark.parametrize("operations", [SAMPLE, LONGER], ids=["sample", "longer"])
def test_raw_writes_consumed_one_record_per_batch_after_all_were_made_log_no_conflict(
    resolver: Resolver, operations: tuple[str, ...]
) -> None:
    """The same writes, all made before the consumer reads the first, then one record per
    batch: each adoption then finds its item replaced in its own region and writes a successor
    there (it cannot know that the next records succeed it), so the source region writes more
    than its adoptions; but every version involved is the source region's, written one after
    another in its table, so no conflict is logged, and both regions end with the last write's
    data. (Main, with one adoption actor for all, logged one for the sample.)"""
    cluster = Cluster(resolver, first_sequence=1)
    try:
        for n, operation in enumerate(operations):
            cluster.write_raw(operation, n)
        cluster.drain(batch=1)
    finally:
        cluster.close()

    assert [] == cluster.conflicts.entries()
    assert 0 == cluster.metrics.total("conflicts")
    _converged_on(cluster, operations)
