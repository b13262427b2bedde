"""The verify engine (service/engine/verify.py) over in-memory tables: what it reports after a
repair, in the cases a mutation check found no test for (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from resolvers import LastWriterWins
from service.adapters.memory import MemoryTable, key_string
from service.core.apply import Precondition
from service.core.stamp import stamp
from service.core.stored import Absent, Settings
from service.core.version import encode_item
from service.engine.verify import KeyOutcome, Report, Verifier
from service.ports import WriteResult

REGIONS = ("eu-west-1", "us-east-1")
SETTINGS = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
KEY = {"pk": {"S": "k0"}}


class MemoryReader:
    """What the Verifier reads a region through (RegionReader's methods), over a MemoryTable."""

    def __init__(self, table: MemoryTable) -> None:
        self.table = table

    def scan(self, segment: int, total: int) -> Iterator[list[dict[str, Any]]]:
        names = sorted(self.table.items)
        yield [self.table.items[n] for i, n in enumerate(names) if i % total == segment]

    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        found = (self.table.get(key) for key in keys)
        return {key_string(self.key_of(item)): item for item in found if item is not None}

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {"pk": item["pk"]}


class Forgetful:
    """A table that acknowledges writes and keeps none of them (a lost write, a restore
    from an old backup right after the repair)."""

    def __init__(self, table: MemoryTable) -> None:
        self.table = table

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.table.get(key)

    def write(
        self, key: Mapping[str, Any], item: Mapping[str, Any] | None, precondition: Precondition
    ) -> WriteResult:
        return WriteResult(ok=True, current=None)

    def annotate(
        self, key: Mapping[str, Any], meta: Mapping[str, Any], precondition: Precondition
    ) -> WriteResult:
        return WriteResult(ok=True, current=None)


class Clock:
    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now

    def sleep(self, seconds: float) -> None:
        self.now += seconds


def divergent_pair() -> dict[str, MemoryTable]:
    """One version in different bytes in two regions: divergent, replication never mends it."""
    version = stamp(
        Absent(),
        {"pk": {"S": "k0"}, "v": {"S": "one"}},
        region=REGIONS[0],
        now_hlc=1_764_000_000_000 << 16,
        write_id="01JZ" + "0" * 22,
        settings=SETTINGS,
    )
    assert version is not None
    tables = {r: MemoryTable(region=r, key_attributes=("pk",)) for r in REGIONS}
    item = encode_item(version, horizon_ms=SETTINGS.horizon_ms)
    tables[REGIONS[0]].put_raw(item)
    tables[REGIONS[1]].put_raw({**item, "v": {"S": "hand-edited"}})
    return tables


def verifier(tables: Mapping[str, Any], readers: Mapping[str, MemoryTable]) -> Verifier:
    clock = Clock()
    return Verifier(
        settings=SETTINGS,
        readers={r: MemoryReader(t) for r, t in readers.items()},  # type: ignore[misc]
        tables=tables,
        segments=1,
        timeout=1.0,
        clock=clock,
        sleep=clock.sleep,
        now_ms=lambda: 1_764_000_100_000,
    )


def test_a_repair_that_does_not_stick_is_not_reported_repaired() -> None:
    """The repair's writes are acknowledged but the regions still differ when read back: the
    key is reported divergent, never repaired, and the report is not clean. (A mutant that
    skipped the read-back reported it repaired and clean.)"""
    tables = divergent_pair()
    forgetful = {r: Forgetful(t) for r, t in tables.items()}
    with verifier(forgetful, tables) as check:
        report = check.run(repair=True)
    assert [("divergent", "repaired, but a later reading differs")] == [
        (o.status, o.note) for o in report.outcomes
    ]
    assert 0 == report.repaired
    assert not report.clean


def test_a_real_repair_reads_back_identical_and_is_reported_repaired() -> None:
    tables = divergent_pair()
    with verifier(tables, tables) as check:
        report = check.run(repair=True)
    assert ["repaired"] == [o.status for o in report.outcomes]
    assert report.clean
    assert tables[REGIONS[0]].items == tables[REGIONS[1]].items


def test_a_report_with_a_key_still_pending_is_not_clean() -> None:
    """Pending means replication was still changing the key when the watch ended: the
    regions do not hold the same yet, so `verify` must not answer clean."""
    tables = divergent_pair()
    with verifier(tables, tables) as check:
        (outcome,) = check.run(repair=False).outcomes
    pending = KeyOutcome(KEY, "pending", outcome.verdict, outcome.items, "changing")
    assert not Report(regions=REGIONS, outcomes=[pending]).clean
    assert Report(regions=REGIONS, outcomes=[]).clean
