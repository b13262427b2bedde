"""The verify engine (service/engine/verify.py) over in-memory tables: what it reports after a
repair, in the cases a mutation check found no test for (issue 16)."""

from __future__ import annotations

from collections.abc import Iterator, Mapping, Sequence
from dataclasses import replace
from typing import Any

from botocore.exceptions import ClientError

from resolvers import LastWriterWins
from service.adapters.memory import MemoryTable, key_string
from service.core.apply import Precondition
from service.core.places import commit_for, read_key
from service.core.stamp import stamp
from service.core.stored import Absent, Settings, Stamped
from service.core.tombstones import DATA_ATTR
from service.core.verify import describe
from service.core.version import META_ATTR, Version, encode_item, encode_meta
from service.engine.verify import KeyOutcome, RegionReader, Report, Verifier
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


def verifier(
    tables: Mapping[str, Any],
    readers: Mapping[str, MemoryTable],
    *,
    settings: Settings = SETTINGS,
    reader: type[MemoryReader] = MemoryReader,
    segments: int = 1,
) -> Verifier:
    clock = Clock()
    return Verifier(
        settings=settings,
        readers={r: reader(t) for r, t in readers.items()},  # type: ignore[misc]
        tables=tables,
        segments=segments,
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


# -- with the tombstone store (issue 22) ------------------------------------------------------

STORE_SETTINGS = replace(SETTINGS, tombstone_store=True)
NAME = "orders"


class StoreReader(MemoryReader):
    """MemoryReader with the region's store (RegionReader's store methods)."""

    name = NAME

    def scan_store(self, segment: int, total: int) -> Iterator[list[dict[str, Any]]]:
        places = sorted(self.table.stored)
        yield [
            self.table.stored[p]
            for i, p in enumerate(places)
            if i % total == segment and META_ATTR in self.table.stored[p]
        ]

    def get_stored_many(self, keys: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        found = {key_string(key): self.table.get_stored(key) for key in keys}
        return {name: item for name, item in found.items() if item is not None}

    def key_of_stored(self, item: Mapping[str, Any]) -> dict[str, Any] | None:
        return {"pk": item[DATA_ATTR]["M"]["pk"]}


def store_tables() -> dict[str, MemoryTable]:
    return {r: MemoryTable(region=r, key_attributes=("pk",), table_name=NAME) for r in REGIONS}


def store_verifier(tables: Mapping[str, MemoryTable]) -> Verifier:
    return verifier(tables, tables, settings=STORE_SETTINGS, reader=StoreReader, segments=2)


def commit(table: MemoryTable, key: Mapping[str, Any], version: Version) -> None:
    """``version`` written over what ``table`` holds, through both places (`commit_for`)."""
    state = read_key(table.get(key), table.get_stored(key), settings=STORE_SETTINGS)
    steps = commit_for(state, version, local=False, table=NAME, settings=STORE_SETTINGS)
    assert table.commit(key, table=steps[0], store=steps[1]).ok


def deleted_key(tables: Mapping[str, MemoryTable], key: Mapping[str, Any]) -> Version:
    """``key`` written, then deleted, in every region: its tombstone in every store."""
    live = stamped(key)
    tombstone = stamp(
        Stamped(live, encode_meta(live.meta)),
        None,
        region=REGIONS[1],
        now_hlc=1_764_000_001_000 << 16,
        write_id="01JZ" + "0" * 21 + "2",
        settings=STORE_SETTINGS,
    )
    assert tombstone is not None
    for table in tables.values():
        commit(table, key, live)
        commit(table, key, tombstone)
    return tombstone


def test_a_key_deleted_everywhere_is_compared_by_its_tombstones_and_is_identical() -> None:
    """The scan reads every store: a key no table holds counts as compared, once, and is
    identical when every store holds its tombstone."""
    tables = store_tables()
    deleted_key(tables, KEY)
    live = {"pk": {"S": "k1"}}
    for table in tables.values():
        table.put_raw(encode_item(stamped(live), horizon_ms=SETTINGS.horizon_ms))
    with store_verifier(tables) as check:
        report = check.run(repair=False)
    assert (2, 0, []) == (report.compared, report.differed, report.outcomes)


def test_a_store_missing_its_tombstone_is_divergent_and_repair_writes_it_back() -> None:
    tables = store_tables()
    tombstone = deleted_key(tables, KEY)
    tables[REGIONS[0]].stored.clear()  # the tombstone lost in one region
    with store_verifier(tables) as check:
        found = check.run(repair=False)
        repaired = check.run(repair=True)
    assert [("divergent", "behind")] == [(o.status, o.verdict.reason) for o in found.outcomes]
    assert ["tombstone", "absent"] == [
        describe(
            None, settings=STORE_SETTINGS, stored=found.outcomes[0].stores[r], store=True
        ).holds  # type: ignore[index]
        for r in (REGIONS[1], REGIONS[0])
    ]
    assert ["repaired"] == [o.status for o in repaired.outcomes] and repaired.clean
    for table in tables.values():
        assert table.get(KEY) is None
        state = read_key(None, table.get_stored(KEY), settings=STORE_SETTINGS)
        assert tombstone == state.tombstone


def test_a_live_item_kept_past_its_delete_is_deleted_by_the_repair_not_copied() -> None:
    """One region still holds the item the others deleted, and no tombstone: the repair
    deletes it there (item and tombstone in one commit), and no table holds the key."""
    tables = store_tables()
    deleted_key(tables, KEY)
    lagging = tables[REGIONS[1]]
    lagging.stored.clear()
    lagging.put_raw(encode_item(stamped(KEY), horizon_ms=SETTINGS.horizon_ms))
    with store_verifier(tables) as check:
        report = check.run(repair=True)
    assert ["repaired"] == [o.status for o in report.outcomes] and report.clean
    assert [None, None] == [t.get(KEY) for t in tables.values()]


def stamped(key: Mapping[str, Any]) -> Version:
    version = stamp(
        Absent(),
        {**key, "v": {"S": "one"}},
        region=REGIONS[0],
        now_hlc=1_764_000_000_000 << 16,
        write_id="01JZ" + "0" * 21 + "1",
        settings=STORE_SETTINGS,
    )
    assert version is not None
    return version


class NoStoreClient:
    """A region's DynamoDB client where the table exists and the store was never created."""

    def scan(self, **request: Any) -> dict[str, Any]:
        if request["TableName"] != "table":
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "Scan")
        return {"Items": []}

    def batch_get_item(self, **request: Any) -> dict[str, Any]:
        if "table" not in request["RequestItems"]:
            raise ClientError({"Error": {"Code": "ResourceNotFoundException"}}, "BatchGetItem")
        return {"Responses": {"table": []}}


def test_a_region_whose_store_was_never_created_holds_no_tombstones() -> None:
    reader = RegionReader(
        NoStoreClient(), table_name="table", key_attributes=("pk",), store_table="s", name=NAME
    )
    assert [] == list(reader.scan_store(0, 1))
    assert {} == reader.get_stored_many([KEY])
    assert {} == reader.get_many([KEY])
