"""``georep verify``: every region's table compared side by side, each difference re-read and
watched until it settles, and (``--repair``) mended with conditional writes.

The I/O around service/core/verify.py, which makes every decision:

1. **Scan.** Each region's table is scanned in ``segments`` parallel segments (consistent
   reads), all regions at once; segment *s* of every region is compared as soon as it is in,
   key by key, by `fingerprint`. DynamoDB (and moto) put a key in the same segment of every
   table with the same key schema; were it not so, a key would only look missing and be read
   again below, so correctness never rests on it.
2. **Re-read.** A key that differs is read again in every region with consistent
   BatchGetItems before it counts: a scan of one region and a scan of another are not one
   instant, and replication moves in between.
3. **Watch.** `classify` says whether replication can still settle the difference
   (*pending*: a region behind, concurrent versions, a raw write not adopted yet) or never
   will (*divergent*: unreadable metadata, one version in different bytes). Pending keys are
   read again, with backoff, until they are identical (settled) or ``timeout`` passes. One
   that has not changed at all by then is stuck, so divergent: its records were trimmed, its
   consumer is stopped or behind by more than the timeout. One that changed but did not
   settle is still pending (replication is busy on it) and is not repaired.
4. **Repair.** Each divergent key gets `plan_repair`'s conditional writes; a failed condition
   means something newer landed, so the key is read and planned again. Repaired keys are
   watched like pending ones until they read identical.

With the tombstone store (``Settings.tombstone_store``, issue 22) a region holds a key in its
table or, deleted, in its store: the scan reads each region's store too (this table's
tombstones), a key's print in a region is its table item's and its store tombstone's, the
re-reads get both places (BatchGetItem on each), and each repair is one `Table.commit` per
region (`commits_for`: a deleted key's item is deleted and its tombstone written in one
transaction).

Exit status lives in the command; this module returns a :class:`Report`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

import ulid
from botocore.exceptions import ClientError

from service.adapters.checkpoints import DynamoCheckpointTable, RepairMarker
from service.adapters.dynamo import batch_get, require, unless_missing
from service.adapters.memory import key_string
from service.core import hlc
from service.core.stored import Settings
from service.core.tombstones import DATA_ATTR, STORE_KEY, store_key, store_prefix
from service.core.verify import (
    Holdings,
    Repair,
    Verdict,
    classify,
    commits_for,
    fingerprint,
    plan_repair,
    store_print,
)
from service.core.version import META_ATTR, encode_item
from service.errors import GeorepError
from service.ports import Table

log = logging.getLogger("georep.verify")

REPAIR_ATTEMPTS = 10

Status = Literal["divergent", "pending", "repaired", "unrepairable"]


class RegionReader:
    """Reads one region's replica table (scan segments and consistent batch gets) and, with
    ``store_table``, its tombstone store's items of this table (``name``: the table's name in
    the configuration, which keys them: `store_key`)."""

    def __init__(
        self,
        client: Any,
        *,
        table_name: str,
        key_attributes: tuple[str, ...],
        store_table: str | None = None,
        name: str | None = None,
    ) -> None:
        self.client, self.table_name, self.key_attributes = client, table_name, key_attributes
        self.store_table, self.name = store_table, name or table_name

    def item_count(self) -> int:
        """DynamoDB's approximate item count (refreshed about every six hours on AWS)."""
        described = self.client.describe_table(TableName=self.table_name)
        table = require(described, "Table", operation="DescribeTable")
        return int(table.get("ItemCount", 0))

    def scan(self, segment: int, total: int) -> Iterator[list[dict[str, Any]]]:
        """Segment ``segment`` of ``total``, page by page, with consistent reads."""
        yield from self._scan(
            {"TableName": self.table_name, "Segment": segment, "TotalSegments": total}
        )

    def scan_store(self, segment: int, total: int) -> Iterator[list[dict[str, Any]]]:
        """Segment ``segment`` of ``total`` of the store's items that hold a tombstone of this
        table (one store serves every georep table of the region: the filter keeps this
        one's; an item holding only deletions is a live key's and no holding)."""
        assert self.store_table is not None
        request = {
            "TableName": self.store_table,
            "Segment": segment,
            "TotalSegments": total,
            "FilterExpression": "begins_with(#k, :table) AND attribute_exists(#g)",
            "ExpressionAttributeNames": {"#k": STORE_KEY, "#g": META_ATTR},
            "ExpressionAttributeValues": {":table": {"S": store_prefix(self.name)}},
        }
        # A region whose store was never created (no consumer or init ran there) holds no
        # tombstones; a repair that must write one there fails and says so.
        yield from unless_missing(lambda: list(self._scan(request)), [])

    def _scan(self, request: dict[str, Any]) -> Iterator[list[dict[str, Any]]]:
        request = {**request, "ConsistentRead": True}
        while True:
            page = self.client.scan(**request)
            yield require(page, "Items", operation="Scan")  # a cut answer is no end
            last = page.get("LastEvaluatedKey")
            if not last:
                return
            request["ExclusiveStartKey"] = last

    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """Consistent reads of ``keys`` (BatchGetItem, 100 at a time; unprocessed keys asked
        again with backoff). Returns the items found, by `key_string`."""
        found = self._get_many(self.table_name, [dict(k) for k in keys])
        return {key_string(self.key_of(item)): item for item in found}

    def get_stored_many(self, keys: Sequence[Mapping[str, Any]]) -> dict[str, dict[str, Any]]:
        """The store's items for ``keys`` of this table, as `get_many` (by the user key's
        `key_string`)."""
        assert self.store_table is not None
        names = {store_key(self.name, k)[STORE_KEY]["S"]: key_string(k) for k in keys}
        wanted = [{STORE_KEY: {"S": place}} for place in names]
        store = self.store_table
        found = unless_missing(lambda: self._get_many(store, wanted), [])  # as `scan_store`
        return {names[item[STORE_KEY]["S"]]: item for item in found}

    def _get_many(self, table: str, keys: list[dict[str, Any]]) -> list[dict[str, Any]]:
        return batch_get(self.client, table, keys)

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.key_attributes}

    def key_of_stored(self, item: Mapping[str, Any]) -> dict[str, Any] | None:
        """The user key a store tombstone is of (its data holds the key attributes), or
        ``None`` for an item that does not say (the scan skips it with a warning: only a hand
        edit makes one, and there is no key to read it again by)."""
        data = item.get(DATA_ATTR, {}).get("M", {})
        if not all(name in data for name in self.key_attributes):
            return None
        return {name: data[name] for name in self.key_attributes}


@dataclass(frozen=True)
class Reading:
    """What every region holds under one key, read consistently: its table's item and, with
    the tombstone store, its store item (``stores``; ``None``: the store is off)."""

    items: Holdings
    stores: Holdings | None = None

    def prints(self) -> tuple[tuple[str | None, str | None], ...]:
        stores = self.stores or {}
        return tuple(
            (fingerprint(self.items[r]), store_print(stores.get(r))) for r in sorted(self.items)
        )


@dataclass(frozen=True)
class KeyOutcome:
    """A key that is not simply identical: what became of it, why, and what each region held
    (for a repaired key: before the repair; ``stores``: each region's store item, with the
    tombstone store)."""

    key: Mapping[str, Any]
    status: Status
    verdict: Verdict
    items: Holdings
    note: str = ""
    stores: Holdings | None = None


@dataclass
class Report:
    regions: tuple[str, ...]
    compared: int = 0  # distinct keys, over every region
    differed: int = 0  # keys that differed on consistent reads (pending, or divergent at sight)
    pending: int = 0  # keys that differed on consistent reads and replication could settle
    settled: int = 0  # ...of which read identical before the timeout
    divergent: int = 0  # stuck or unsettleable differences found (before any repair)
    repaired: int = 0
    outcomes: list[KeyOutcome] = field(default_factory=list)  # every key not clean
    elapsed: float = 0.0

    @property
    def identical(self) -> int:
        return self.compared - self.differed

    def count(self, status: Status) -> int:
        return sum(o.status == status for o in self.outcomes)

    @property
    def clean(self) -> bool:
        """Nothing divergent left and nothing still pending: every region holds the same."""
        return not any(o.status in ("divergent", "pending", "unrepairable") for o in self.outcomes)


@dataclass
class _Watched:
    key: Mapping[str, Any]
    reading: Reading
    verdict: Verdict
    changed: bool = False

    def outcome(self, status: Status, note: str) -> KeyOutcome:
        held = self.reading
        return KeyOutcome(self.key, status, self.verdict, held.items, note, held.stores)


class Verifier:
    """Compares, watches and repairs one replica set. Time, sleep and ids are injected."""

    def __init__(
        self,
        *,
        settings: Settings,
        readers: Mapping[str, RegionReader],
        tables: Mapping[str, Table],
        segments: int = 4,
        timeout: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        sleep: Callable[[float], None] = time.sleep,
        new_id: Callable[[], str] = lambda: str(ulid.new()),
        on_scanned: Callable[[int], None] = lambda n: None,
    ) -> None:
        self.settings, self.readers, self.tables = settings, readers, tables
        self.store = settings.tombstone_store  # regions hold keys in their stores too
        self.regions = tuple(readers)
        self.segments, self.timeout = segments, timeout
        self.clock, self.now_ms, self.sleep, self.new_id = clock, now_ms, sleep, new_id
        self.on_scanned = on_scanned
        self.pool = ThreadPoolExecutor(
            max_workers=max(1, min(segments * len(self.regions), 32)),
            thread_name_prefix="georep-verify",
        )
        # NOTE: repairs have their own pool: each one reads through ``pool``, and waiting on
        # a pool from inside it deadlocks once every worker waits.
        self.repairs = ThreadPoolExecutor(max_workers=8, thread_name_prefix="georep-repair")
        self._hlc = 0
        self._hlc_lock = threading.Lock()

    def close(self) -> None:
        self.repairs.shutdown(wait=True)
        self.pool.shutdown(wait=True)

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()

    # -- the whole pass ----------------------------------------------------------------------

    def run(self, *, keys: Sequence[Mapping[str, Any]] | None = None, repair: bool) -> Report:
        """Verify every key (a full pass), or only ``keys``; repair what is divergent."""
        started = self.clock()
        report = Report(regions=self.regions)
        if keys is None:
            candidates = list(self._scan(report))
        else:
            report.compared = len(keys)
            candidates = list(keys)
        by_name = {key_string(key): key for key in candidates}
        watched: dict[str, _Watched] = {}
        divergent: dict[str, _Watched] = {}
        for name, reading in self.read(candidates).items():
            verdict = self._classify(reading)
            entry = _Watched(key=by_name[name], reading=reading, verdict=verdict)
            if verdict.kind == "pending":
                watched[name] = entry
            elif verdict.kind == "divergent":
                divergent[name] = entry
        report.pending = len(watched)
        report.differed = len(watched) + len(divergent)
        settled, moving, stuck = self.watch(watched)
        report.settled = len(settled)
        divergent.update(stuck)
        report.divergent = len(divergent)
        for entry in moving.values():
            note = f"changing but not settled after {self.timeout:g} s"
            report.outcomes.append(entry.outcome("pending", note))
        if repair:
            report.outcomes.extend(self._repair_all(divergent))
        else:
            report.outcomes.extend(e.outcome("divergent", self._why(e)) for e in divergent.values())
        report.repaired = report.count("repaired")
        report.elapsed = self.clock() - started
        return report

    def _why(self, entry: _Watched) -> str:
        if entry.verdict.kind == "divergent":
            return "replication cannot settle it"
        return f"unchanged for {self.timeout:g} s: replication is not carrying it"

    def _classify(self, reading: Reading) -> Verdict:
        return classify(
            reading.items, stores=reading.stores, settings=self.settings, now_ms=self.now_ms()
        )

    # -- 1. scan -----------------------------------------------------------------------------

    def _scan(self, report: Report) -> Iterator[Mapping[str, Any]]:
        """Every region's segments at once; yields the keys whose items differ somewhere.

        With the store, every region's store is scanned first (this table's tombstones), and
        a key's print in a region is its table item's and its store tombstone's; the keys
        no table holds (deleted everywhere) are compared by their tombstones at the end."""
        stores = self._scan_stores() if self.store else None
        # NOTE: the store's keys that no table segment has shown yet: bounded by the stores
        # (tombstones within the horizon), never by the tables.
        only_stored = set().union(*stores.values()) if stores is not None else set()
        futures: dict[tuple[int, str], Future[dict[str, tuple[Mapping[str, Any], str]]]] = {}
        for segment in range(self.segments):
            for region, reader in self.readers.items():
                futures[segment, region] = self.pool.submit(self._scan_segment, reader, segment)
        for segment in range(self.segments):
            # NOTE: one segment of every region in memory at a time, once merged; more
            # segments than workers bound the memory of a large table.
            seen = {region: futures.pop((segment, region)).result() for region in self.regions}
            names = set().union(*seen.values())
            report.compared += len(names)
            only_stored -= names
            for name in names:
                prints = {
                    (
                        seen[r][name][1] if name in seen[r] else None,
                        stores[r].get(name, (None, None))[1] if stores is not None else None,
                    )
                    for r in self.regions
                }
                if len(prints) > 1:
                    yield next(seen[r][name][0] for r in self.regions if name in seen[r])
        if stores is None:
            return
        report.compared += len(only_stored)
        for name in only_stored:
            held = [stores[r].get(name) for r in self.regions]
            if len({h[1] if h is not None else None for h in held}) > 1:
                yield next(h[0] for h in held if h is not None)

    def _scan_stores(self) -> dict[str, dict[str, tuple[Mapping[str, Any], str]]]:
        """Every region's store, all segments at once: key -> (key, tombstone print)."""
        futures = {
            (region, segment): self.pool.submit(self._scan_store_segment, reader, segment)
            for region, reader in self.readers.items()
            for segment in range(self.segments)
        }
        out: dict[str, dict[str, tuple[Mapping[str, Any], str]]] = {r: {} for r in self.regions}
        for (region, _), future in futures.items():
            out[region].update(future.result())
        return out

    def _scan_store_segment(
        self, reader: RegionReader, segment: int
    ) -> dict[str, tuple[Mapping[str, Any], str]]:
        # NOTE: not counted on the progress bar, whose total is the tables' item count.
        pages = reader.scan_store(segment, self.segments)
        return _printed(pages, key_of=reader.key_of_stored, print_of=store_print)

    def _scan_segment(
        self, reader: RegionReader, segment: int
    ) -> dict[str, tuple[Mapping[str, Any], str]]:
        pages = reader.scan(segment, self.segments)
        return _printed(pages, key_of=reader.key_of, print_of=fingerprint, on_page=self.on_scanned)

    # -- 2. consistent re-reads --------------------------------------------------------------

    def read(self, keys: Sequence[Mapping[str, Any]]) -> dict[str, Reading]:
        """What every region holds under each key now (consistent reads, regions in parallel;
        with the store, both places of each region)."""
        if not keys:
            return {}
        futures = {r: self.pool.submit(reader.get_many, keys) for r, reader in self.readers.items()}
        stored = {
            r: self.pool.submit(reader.get_stored_many, keys)
            for r, reader in self.readers.items()
            if self.store
        }
        found = {r: future.result() for r, future in futures.items()}
        places = {r: future.result() for r, future in stored.items()}
        return {
            name: Reading(
                items={r: found[r].get(name) for r in self.regions},
                stores={r: places[r].get(name) for r in self.regions} if self.store else None,
            )
            for name in (key_string(k) for k in keys)
        }

    # -- 3. watch ----------------------------------------------------------------------------

    def watch(
        self, watched: dict[str, _Watched]
    ) -> tuple[dict[str, _Watched], dict[str, _Watched], dict[str, _Watched]]:
        """Re-read pending keys until each reads identical or ``timeout`` passes. Returns
        (settled, still moving, stuck): stuck keys did not change once in the whole wait."""
        pending = dict(watched)
        settled: dict[str, _Watched] = {}
        deadline = self.clock() + self.timeout
        delay = 0.2
        while pending and self.clock() < deadline:
            self.sleep(max(0.0, min(delay, deadline - self.clock())))
            delay = min(delay * 1.5, 2.0)
            keys = [entry.key for entry in pending.values()]
            for name, reading in self.read(keys).items():
                entry = pending[name]
                verdict = self._classify(reading)
                if verdict.kind == "identical":
                    settled[name] = pending.pop(name)
                    continue
                if reading.prints() != entry.reading.prints():
                    entry.changed = True
                entry.reading, entry.verdict = reading, verdict
        moving = {n: e for n, e in pending.items() if e.changed}
        stuck = {n: e for n, e in pending.items() if not e.changed}
        return settled, moving, stuck

    # -- 4. repair ---------------------------------------------------------------------------

    def _repair_all(self, divergent: Mapping[str, _Watched]) -> list[KeyOutcome]:
        results = list(self.repairs.map(self._repair, divergent.values()))
        outcomes = [o for o in results if o.status != "repaired"]
        done = {key_string(o.key): o for o in results if o.status == "repaired"}
        if not done:
            return outcomes
        # Read back what was written: identical now, or once replication of a racing write
        # has settled; anything else stays divergent.
        check: dict[str, _Watched] = {}
        for name, reading in self.read([o.key for o in done.values()]).items():
            verdict = self._classify(reading)
            if verdict.kind != "identical":
                check[name] = _Watched(done[name].key, reading, verdict)
        _, moving, stuck = self.watch(check)
        for name, outcome in done.items():
            if name in moving or name in stuck:
                status: Status = "pending" if name in moving else "divergent"
                note = "repaired, but a later reading differs"
                outcomes.append(check[name].outcome(status, note))
            else:
                outcomes.append(outcome)
        return outcomes

    def _repair(self, entry: _Watched) -> KeyOutcome:
        """Plan and write, reading again whenever a condition fails (a newer write landed)."""
        reading, verdict = entry.reading, entry.verdict
        for attempt in range(REPAIR_ATTEMPTS):
            if attempt:
                reading = self.read([entry.key])[key_string(entry.key)]
                verdict = self._classify(reading)
                if verdict.kind == "identical":
                    break
            plan = plan_repair(
                reading.items,
                stores=reading.stores,
                settings=self.settings,
                now_hlc=self._tick(),
                write_ids={region: self.new_id() for region in self.regions},
            )
            if not isinstance(plan, Repair):
                return _Watched(entry.key, reading, verdict).outcome("unrepairable", plan.reason)
            try:
                if self._write(entry.key, plan, reading):
                    break
            except (GeorepError, ClientError) as error:
                note = f"{type(error).__name__}: {error}"
                return _Watched(entry.key, reading, verdict).outcome("unrepairable", note)
        else:
            note = f"{REPAIR_ATTEMPTS} attempts lost to newer writes"
            return _Watched(entry.key, reading, verdict).outcome("unrepairable", note)
        return entry.outcome("repaired", self._why(entry))

    def _write(self, key: Mapping[str, Any], plan: Repair, reading: Reading) -> bool:
        """Every region's conditional write (with the store: one commit of both places per
        region); False if any condition failed."""
        ok = True
        if reading.stores is not None:
            commits = commits_for(
                plan,
                reading.items,
                reading.stores,
                table=self._name(),
                settings=self.settings,
            )
            for region, (table, store) in commits.items():
                if not self.tables[region].commit(key, table=table, store=store).ok:
                    log.info("repair of %s in %s raced a newer write; reading again", key, region)
                    ok = False
            return ok
        for region, write in plan.writes.items():
            item = encode_item(write.version, horizon_ms=self.settings.horizon_ms)
            result = self.tables[region].write(key, item, write.precondition)
            if not result.ok:
                log.info("repair of %s in %s raced a newer write; reading again", key, region)
                ok = False
        return ok

    def _name(self) -> str:
        """The table's configured name, which keys its items in the stores."""
        return next(iter(self.readers.values())).name

    def _tick(self) -> int:
        with self._hlc_lock:
            self._hlc = hlc.tick(self._hlc, self.now_ms())
            return self._hlc


def _printed(
    pages: Iterator[list[dict[str, Any]]],
    *,
    key_of: Callable[[Mapping[str, Any]], Mapping[str, Any] | None],
    print_of: Callable[[Mapping[str, Any]], str | None],
    on_page: Callable[[int], None] = lambda n: None,
) -> dict[str, tuple[Mapping[str, Any], str]]:
    """A scanned segment as key string -> (key, print); an item naming no key or printing as
    nothing (a store item only a hand edit makes) is skipped with a warning."""
    out: dict[str, tuple[Mapping[str, Any], str]] = {}
    for page in pages:
        for item in page:
            key, print_ = key_of(item), print_of(item)
            if key is None or print_ is None:
                log.warning("skipped an item that names no key: %s", item.get(STORE_KEY))
                continue
            out[key_string(key)] = (key, print_)
        on_page(len(page))
    return out


# -- needs-repair markers ----------------------------------------------------------------------


def count_markers(checkpoints: Sequence[DynamoCheckpointTable]) -> int:
    """How many needs-repair markers the regions' checkpoint tables hold (a region whose
    consumer never ran has no checkpoint table, so none)."""
    return sum(len(_markers(table)) for table in checkpoints)


def clear_markers(checkpoints: Sequence[DynamoCheckpointTable], *, marked_before: float) -> int:
    """Clear the markers set before ``marked_before`` (epoch seconds: when a clean full repair
    pass began); one set since names records this pass may not have seen, and stays."""
    cleared = 0
    for table in checkpoints:
        if _markers(table):
            cleared += table.clear_repair_markers(marked_before=marked_before)
    return cleared


def _markers(table: DynamoCheckpointTable) -> list[RepairMarker]:
    try:
        return table.repair_markers()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") == "ResourceNotFoundException":
            return []
        raise
