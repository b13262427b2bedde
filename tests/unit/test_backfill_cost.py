"""What a backfill costs at a destination that already holds an item (issue 16's mutation
check: a mutant that tried every stamped item with a blind conditional put survived)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from service.adapters.memory import MemoryTable
from service.core.apply import Precondition
from service.ports import WriteResult
from tests.unit.test_backfill import (
    NOW,
    OTHER,
    REGIONS,
    SOURCE,
    THIRD,
    _backfill,
    _item,
    _stamped,
    _stored,
)


class Counting:
    """A MemoryTable that counts the conditional writes sent to it."""

    def __init__(self, table: MemoryTable) -> None:
        self.table, self.writes = table, 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self.table, name)

    def write(
        self, key: Mapping[str, Any], item: Mapping[str, Any] | None, precondition: Precondition
    ) -> WriteResult:
        self.writes += 1
        return self.table.write(key, item, precondition)


def test_an_item_stamped_before_is_read_first_and_costs_no_write_where_it_already_is() -> None:
    """An item that was stamped before the backfill (by the SDK, or by an earlier backfill)
    was most likely replicated already: each destination is read first, and one that holds
    the version gets no write at all. (A conditional put "only if absent" would fail there
    and still cost a write unit per destination per item: the price of a rerun.)"""
    version = _stamped(_item("k1", v="x"), region=SOURCE, at=NOW - 1_000)
    tables = {r: Counting(MemoryTable(r, ("pk",), now_ms=lambda: NOW)) for r in REGIONS}
    for region in REGIONS:
        tables[region].table.put_raw(_stored(version))
    job = _backfill(tables, pages=[[_stored(version)]], populate=False)  # type: ignore[arg-type]
    result = job.run({})
    assert result.complete
    assert (1, 0) == (result.tally.scanned, result.tally.delivered)
    assert {OTHER: 0, THIRD: 0} == {r: tables[r].writes for r in (OTHER, THIRD)}
