"""Backfill's pure plan, its stamp clock, and the engine over in-memory tables: races between
the scan and the stamp, last-writer-wins against writes made after the stream started, and how
a segment saves progress, stops and fails. (Over moto, as a user runs it:
tests/integration/test_backfill.py.)"""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime
from typing import Any

import ulid

from resolvers import LastWriterWins
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core import hlc
from service.core.apply import ExpectMeta, precondition_for
from service.core.backfill import Deliver, Gone, Refuse, Stamp, plan, stamp_hlc
from service.core.stamp import stamp
from service.core.stored import Absent, Settings, Stamped, read_item
from service.core.version import META_ATTR, TTL_ATTR, Order, Version, compare, encode_item
from service.engine.backfill import Backfill, Metered, SegmentProgress, Tally
from service.engine.pipeline import InlineExecutor, Replicator

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
SOURCE, OTHER, THIRD = REGIONS
SETTINGS = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
T0 = 1_764_000_000_000  # when the source's stream was enabled
STREAM_START = hlc.pack(T0)
NOW = T0 + 3_600_000  # the backfill runs an hour later


def _item(pk: str, **values: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, **{name: {"S": value} for name, value in values.items()}}


def _stamped(
    data: dict[str, Any] | None, *, region: str, at: int, over: Mapping[str, Any] | None = None
) -> Version:
    version = stamp(
        read_item(dict(over) if over is not None else None, settings=SETTINGS),
        data,
        region=region,
        now_hlc=hlc.pack(at),
        write_id=str(ulid.new()),
        settings=SETTINGS,
    )
    assert version is not None
    return version


def _stored(version: Version) -> dict[str, Any]:
    return encode_item(version, horizon_ms=SETTINGS.horizon_ms)


# -- the plan --------------------------------------------------------------------------------


def test_a_raw_item_is_stamped_in_place_as_of_the_stream_start() -> None:
    """The stamp is a version of the source over exactly the item's data, with the stream's
    start as its clock, written under 'still no metadata'; the annotation it makes leaves the
    table holding what a stamped put of the same data would."""
    raw = _item("k", a="1")
    step = plan(
        raw, region=SOURCE, at_hlc=STREAM_START, write_id=str(ulid.new()), settings=SETTINGS
    )
    assert isinstance(step, Stamp)
    assert step.in_place
    assert ExpectMeta(None) == step.precondition
    assert raw == step.version.data
    assert (STREAM_START, SOURCE) == (step.version.meta.hlc, step.version.meta.origin)
    annotated = {**raw, META_ATTR: _stored(step.version)[META_ATTR]}
    assert Stamped(step.version, annotated[META_ATTR]) == read_item(annotated, settings=SETTINGS)


def test_a_raw_item_with_copied_metadata_is_stamped_as_its_successor() -> None:
    """A read-modify-write that copied old metadata back: the stamp succeeds the copied
    version and is conditioned on it, even when that version is newer than the stream."""
    before = _stamped(_item("k", a="1"), region=OTHER, at=T0 + 10)
    copied = {**_item("k", a="2"), META_ATTR: _stored(before)[META_ATTR]}
    step = plan(
        copied, region=SOURCE, at_hlc=STREAM_START, write_id=str(ulid.new()), settings=SETTINGS
    )
    assert isinstance(step, Stamp)
    assert ExpectMeta(copied[META_ATTR]) == step.precondition
    assert Order.AFTER is compare(step.version.meta, before.meta)
    assert before.meta.hlc < step.version.meta.hlc
    assert _item("k", a="2") == step.version.data


def test_a_stamped_item_or_tombstone_is_delivered_as_it_is() -> None:
    live = _stamped(_item("k", a="1"), region=SOURCE, at=T0 - 5)
    tombstone = _stamped(None, region=SOURCE, at=T0 - 1, over=_stored(live))
    for version in (live, tombstone):
        step = plan(_stored(version), region=SOURCE, at_hlc=1, write_id="x", settings=SETTINGS)
        assert Deliver(version) == step


def test_an_item_gone_needs_nothing_and_one_that_cannot_be_stamped_says_why() -> None:
    assert Gone() == plan(None, region=SOURCE, at_hlc=1, write_id="x", settings=SETTINGS)
    tampered = {**_item("k"), META_ATTR: {"M": {"v": {"S": "not a vector"}}}}
    refused = plan(tampered, region=SOURCE, at_hlc=1, write_id="x", settings=SETTINGS)
    assert isinstance(refused, Refuse) and "MetadataError" in refused.reason
    expiring = {**_item("k"), TTL_ATTR: {"N": "1700000000"}}
    refused = plan(expiring, region=SOURCE, at_hlc=1, write_id="x", settings=SETTINGS)
    assert isinstance(refused, Refuse) and TTL_ATTR in refused.reason


def test_the_stamp_clock_is_the_stream_label_or_now_when_there_is_none_to_trust() -> None:
    now = T0 + 1_000
    assert hlc.pack(T0) == stamp_hlc(
        datetime.fromtimestamp(T0 / 1000).astimezone().isoformat(), now_ms=now
    )
    naive_utc = "2025-11-24T15:46:40.000"  # AWS and moto: UTC without a zone
    assert hlc.pack(1_763_999_200_000) == stamp_hlc(naive_utc, now_ms=2 * T0)
    for unusable in (None, "", "not a date"):
        assert hlc.pack(now) == stamp_hlc(unusable, now_ms=now)
    assert hlc.pack(now) == stamp_hlc("2999-01-01T00:00:00", now_ms=now)  # skewed ahead


# -- the engine over in-memory tables -----------------------------------------------------------


class Recorder:
    """A progress store that remembers what it was told."""

    def __init__(self) -> None:
        self.saved: list[tuple[int, SegmentProgress]] = []
        self.finished: int | None = None

    def save(self, segment: int, total: int, progress: SegmentProgress) -> None:
        self.saved.append((segment, progress))

    def finish(self, *, scanned: int, at: datetime) -> None:
        self.finished = scanned


def _tables() -> dict[str, MemoryTable]:
    return {r: MemoryTable(r, ("pk",), now_ms=lambda: NOW) for r in REGIONS}


def _replicator(region: str, tables: Mapping[str, MemoryTable]) -> Replicator:
    return Replicator(
        region=region,
        settings=SETTINGS,
        tables=tables,
        dead_letters=MemoryDeadLetters(),
        metrics=MemoryMetrics(),
        executor=InlineExecutor(),
    )


def _backfill(
    tables: Mapping[str, MemoryTable],
    *,
    pages: list[list[dict[str, Any]]] | None = None,
    progress: Recorder | None = None,
    stop: threading.Event | None = None,
    on_page: Callable[[Tally], None] = lambda _: None,
    populate: bool = True,
) -> Backfill:
    """A backfill of SOURCE to the other regions; ``pages`` is what its one segment scans
    (``populate``: their items are first put in SOURCE's table, raw)."""
    pages = pages or []
    for item in (item for page in pages for item in page if populate):
        tables[SOURCE].put_raw(item)

    def scan(**request: Any) -> dict[str, Any]:
        index = int(request.get("ExclusiveStartKey", {}).get("page", {}).get("N", "0"))
        page: dict[str, Any] = {"Items": pages[index]}
        if index + 1 < len(pages):
            page["LastEvaluatedKey"] = {"page": {"N": str(index + 1)}}
        return page

    return Backfill(
        settings=SETTINGS,
        source=SOURCE,
        destinations=(OTHER, THIRD),
        scan=scan,
        table_name="orders",
        source_table=Metered(tables[SOURCE], bucket=None),
        replicator=_replicator(SOURCE, tables),
        progress=progress or Recorder(),
        segments=1,
        page_size=None,
        workers=2,
        stamp_at=STREAM_START,
        stop=stop or threading.Event(),
        on_page=on_page,
    )


def _replicate(tables: Mapping[str, MemoryTable]) -> None:
    """Every region's consumer reads its stream to the end, until nothing moves."""
    replicators = {r: _replicator(r, tables) for r in REGIONS}
    read = dict.fromkeys(REGIONS, 0)
    while any(read[r] < len(tables[r].stream) for r in REGIONS):
        for region in REGIONS:
            records = tables[region].records_after(read[region])
            read[region] += len(records)
            results = replicators[region].process(records)
            assert all(r.status == "ok" for r in results), results


def _everywhere(tables: Mapping[str, MemoryTable], pk: str) -> list[Any]:
    return [tables[r].get({"pk": {"S": pk}}) for r in REGIONS]


def _data(item: Mapping[str, Any] | None) -> Any:
    stored = read_item(dict(item) if item is not None else None, settings=SETTINGS)
    assert isinstance(stored, Stamped | Absent), stored
    return stored.version.data if isinstance(stored, Stamped) else None


def test_a_raw_write_landing_between_the_scan_and_the_stamp_is_never_overwritten() -> None:
    """The stamp writes only ``_georep``: a raw write that lands first keeps its data (the
    stamp becomes its copied context), and its adoption carries it to every region."""
    tables = _tables()
    scanned = _item("k", a="old")
    tables[SOURCE].put_raw(scanned)
    tables[SOURCE].stream.clear()  # written before the stream was enabled

    def racing_raw_write(key: Mapping[str, Any]) -> None:
        tables[SOURCE].before_write = None
        tables[SOURCE].put_raw(_item("k", a="raced"))

    tables[SOURCE].before_write = racing_raw_write
    _backfill(tables).item(scanned)
    assert _item("k", a="raced") == {
        k: v for k, v in (tables[SOURCE].get({"pk": {"S": "k"}}) or {}).items() if k != META_ATTR
    }
    _replicate(tables)
    first, *rest = _everywhere(tables, "k")
    assert [first, first] == rest
    assert _item("k", a="raced") == _data(first)


def test_a_stamped_write_landing_before_the_stamp_is_delivered_not_overwritten() -> None:
    tables = _tables()
    scanned = _item("k", a="old")
    tables[SOURCE].put_raw(scanned)
    live = _stamped(_item("k", a="live"), region=SOURCE, at=NOW, over=scanned)

    def racing_stamped_write(key: Mapping[str, Any]) -> None:
        tables[SOURCE].before_write = None
        tables[SOURCE].write(
            key, _stored(live), precondition_for(read_item(scanned, settings=SETTINGS))
        )

    tables[SOURCE].before_write = racing_stamped_write
    result = _backfill(tables).item(scanned)
    assert ("delivered", False) == (result.outcome, result.stamped)
    assert [_stored(live)] * 3 == _everywhere(tables, "k")


def test_an_item_deleted_before_the_stamp_is_skipped_and_not_brought_back() -> None:
    tables = _tables()
    scanned = _item("k", a="old")
    tables[SOURCE].put_raw(scanned)

    def racing_delete(key: Mapping[str, Any]) -> None:
        tables[SOURCE].before_write = None
        tables[SOURCE].delete_raw(key)

    tables[SOURCE].before_write = racing_delete
    assert "skipped" == _backfill(tables).item(scanned).outcome
    assert [None, None, None] == _everywhere(tables, "k")


def test_a_write_made_after_the_stream_started_wins_over_backfilled_data_in_either_order() -> None:
    """Data that was there before replication started is older than any write since: under
    last-writer-wins the later write wins whether its replication or the backfill reaches the
    item first (a stamp clocked 'now' would win or lose by timing)."""
    for backfill_first in (True, False):
        tables = _tables()
        scanned = _item("k", a="before onboarding")
        tables[SOURCE].put_raw(scanned)
        tables[SOURCE].stream.clear()
        later = _stamped(_item("k", a="written since"), region=OTHER, at=T0 + 60_000)
        tables[OTHER].write({"pk": {"S": "k"}}, _stored(later), precondition_for(Absent()))
        if backfill_first:
            _backfill(tables).item(scanned)
            _replicate(tables)
        else:
            _replicate(tables)  # the later write replaces the raw item in the source
            _backfill(tables).item(tables[SOURCE].get({"pk": {"S": "k"}}) or {})
            _replicate(tables)
        assert [_item("k", a="written since")] * 3 == [
            _data(item) for item in _everywhere(tables, "k")
        ], f"backfill first: {backfill_first}"


def test_a_stamped_item_never_rolls_a_destination_back() -> None:
    tables = _tables()
    old = _stamped(_item("k", a="1"), region=SOURCE, at=T0 - 10)
    new = _stamped(_item("k", a="2"), region=OTHER, at=T0 + 10, over=_stored(old))
    tables[SOURCE].write({"pk": {"S": "k"}}, _stored(old), precondition_for(Absent()))
    tables[OTHER].write({"pk": {"S": "k"}}, _stored(new), precondition_for(Absent()))
    result = _backfill(tables).item(_stored(old))
    assert "delivered" == result.outcome  # THIRD had nothing
    assert [_stored(old), _stored(new), _stored(old)] == _everywhere(tables, "k")


def test_a_page_with_a_failed_item_keeps_the_segment_progress_before_it() -> None:
    """Later pages are still applied, but the saved position stays before the failed page,
    so the next run retries it; the segment is incomplete and the job not marked done."""
    tables = _tables()
    bad = {**_item("k1"), TTL_ATTR: {"N": "1"}}
    pages = [[_item("k0")], [bad, _item("k2")], [_item("k3")]]
    progress = Recorder()
    job = _backfill(tables, pages=pages, progress=progress)
    result = job.run({})
    assert [(0, SegmentProgress({"page": {"N": "1"}}, 1, False))] == progress.saved
    assert ["incomplete"] == [s.status for s in result.segments]
    assert (4, 3, 1) == (result.tally.scanned, result.tally.stamped, result.tally.failed)
    assert ['{"pk": "k1"}'] == [f.key for f in result.failures]
    assert progress.finished is None


def test_a_stop_finishes_the_page_in_hand_and_saves_it() -> None:
    tables = _tables()
    stop = threading.Event()
    pages = [[_item("k0"), _item("k1")], [_item("k2")]]
    progress = Recorder()
    job = _backfill(tables, pages=pages, progress=progress, stop=stop, on_page=lambda _: stop.set())
    result = job.run({})
    assert ["interrupted"] == [s.status for s in result.segments]
    assert [(0, SegmentProgress({"page": {"N": "1"}}, 2, False))] == progress.saved
    assert progress.finished is None
    resumed = _backfill(tables, pages=pages, progress=progress, populate=False).run(
        {0: progress.saved[-1][1]}
    )
    assert (1, 2) == (resumed.tally.scanned, resumed.resumed_from)
    assert 3 == progress.finished
    assert all(
        _data(item) is not None for pk in ("k0", "k1", "k2") for item in _everywhere(tables, pk)
    )


def test_a_segment_saved_done_is_not_scanned_again() -> None:
    tables = _tables()
    job = _backfill(tables, pages=[[_item("k0")]])
    with ThreadPoolExecutor(1) as pool:
        result = job.segment(0, SegmentProgress(None, 7, done=True), pool)
    assert ("done", 0) == (result.status, result.tally.scanned)


def test_an_item_a_destination_rejects_for_good_fails_and_progress_stays_before_it() -> None:
    """A destination that refuses the stamped version permanently (the request itself is
    rejected) is the item's failure, not a skip: the tally says failed, the segment is
    incomplete and no progress is saved past its page, so the next run tries it again. (A
    rejection counted as skipped moved progress past an item no destination holds.)"""
    from service.errors import RequestRejectedError

    tables = _tables()

    def rejects(key: Mapping[str, Any]) -> None:
        raise RequestRejectedError("ValidationException: the destination refuses this item")

    tables[THIRD].before_write = rejects
    progress = Recorder()
    result = _backfill(tables, pages=[[_item("k0")]], progress=progress).run({})
    assert (1, 1, 0) == (result.tally.scanned, result.tally.failed, result.tally.skipped)
    assert ["incomplete"] == [s.status for s in result.segments]
    assert [] == progress.saved
    assert progress.finished is None
    (failure,) = result.failures
    assert '{"pk": "k0"}' == failure.key and THIRD in failure.reason


def _every_type(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": "k"},
        "s": {"S": f"héllo {i}"},
        "n": {"N": f"-{i}.50"},
        "b": {"B": bytes([i % 256, 0, 255])},
        "t": {"BOOL": i % 2 == 0},
        "nul": {"NULL": True},
        "m": {"M": {"i": {"N": str(i)}, "l": {"L": [{"S": ""}, {"M": {}}]}}},
        "ss": {"SS": [f"s{i}", "a"]},
        "ns": {"NS": [str(i + 2), "1"]},
        "bs": {"BS": [bytes([i % 256, 1]), b"\x00"]},
    }


def test_a_backfill_stamp_writes_only_georep_whatever_the_item_holds() -> None:
    """The stamp is an annotation: every attribute but ``_georep`` is left exactly as the
    table holds it, of every DynamoDB type, including one a raw write changed after the scan
    (its record shows a change of ``_georep`` alone). A stamp that rewrote the whole item put
    back what the scan read over the raw write, and the stamp's record changed data too."""
    tables = _tables()
    scanned, raced = _every_type(1), _every_type(2)
    tables[SOURCE].put_raw(scanned)

    def racing_raw_write(key: Mapping[str, Any]) -> None:
        tables[SOURCE].before_write = None
        tables[SOURCE].put_raw(raced)

    tables[SOURCE].before_write = racing_raw_write
    before = len(tables[SOURCE].stream)
    _backfill(tables).item(scanned)
    held = tables[SOURCE].get({"pk": {"S": "k"}}) or {}
    assert raced == {k: v for k, v in held.items() if k != META_ATTR}
    *_, stamp_record = tables[SOURCE].stream[before:]
    images = stamp_record["dynamodb"]
    assert {k: v for k, v in images["OldImage"].items() if k != META_ATTR} == {
        k: v for k, v in images["NewImage"].items() if k != META_ATTR
    }
    _replicate(tables)
    first, *rest = _everywhere(tables, "k")
    assert [first, first] == rest
    assert raced == _data(first)
