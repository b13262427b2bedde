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
from service.adapters.memory import key_string
from service.core import hlc
from service.core.stored import Settings
from service.core.verify import (
    Holdings,
    Repair,
    Verdict,
    classify,
    fingerprint,
    plan_repair,
)
from service.core.version import encode_item
from service.engine.streams import require
from service.errors import GeorepError
from service.ports import Table

log = logging.getLogger("georep.verify")

BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem
REPAIR_ATTEMPTS = 10

Status = Literal["divergent", "pending", "repaired", "unrepairable"]


class RegionReader:
    """Reads one region's replica table: scan segments and consistent batch gets."""

    def __init__(self, client: Any, *, table_name: str, key_attributes: tuple[str, ...]) -> None:
        self.client, self.table_name, self.key_attributes = client, table_name, key_attributes

    def item_count(self) -> int:
        """DynamoDB's approximate item count (refreshed about every six hours on AWS)."""
        table = self.client.describe_table(TableName=self.table_name)["Table"]
        return int(table.get("ItemCount", 0))

    def scan(self, segment: int, total: int) -> Iterator[list[dict[str, Any]]]:
        """Segment ``segment`` of ``total``, page by page, with consistent reads."""
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "ConsistentRead": True,
            "Segment": segment,
            "TotalSegments": total,
        }
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
        found: dict[str, dict[str, Any]] = {}
        for start in range(0, len(keys), BATCH_GET_KEYS):
            request: dict[str, Any] = {
                self.table_name: {
                    "Keys": [dict(k) for k in keys[start : start + BATCH_GET_KEYS]],
                    "ConsistentRead": True,
                }
            }
            delay = 0.05
            while request:
                response = self.client.batch_get_item(RequestItems=request)
                answered = require(response, "Responses", operation="BatchGetItem")
                for item in answered.get(self.table_name, []):
                    found[key_string(self.key_of(item))] = item
                request = response.get("UnprocessedKeys") or {}
                if request:  # throttled: DynamoDB asks to back off
                    time.sleep(delay)
                    delay = min(delay * 2, 1.0)
        return found

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.key_attributes}


@dataclass(frozen=True)
class KeyOutcome:
    """A key that is not simply identical: what became of it, why, and what each region held
    (for a repaired key: before the repair)."""

    key: Mapping[str, Any]
    status: Status
    verdict: Verdict
    items: Holdings
    note: str = ""


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
    items: Holdings
    verdict: Verdict
    changed: bool = False


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
        for name, items in self.read(candidates).items():
            verdict = self._classify(items)
            entry = _Watched(key=by_name[name], items=items, verdict=verdict)
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
            report.outcomes.append(
                KeyOutcome(
                    entry.key,
                    "pending",
                    entry.verdict,
                    entry.items,
                    f"changing but not settled after {self.timeout:g} s",
                )
            )
        if repair:
            report.outcomes.extend(self._repair_all(divergent))
        else:
            report.outcomes.extend(
                KeyOutcome(e.key, "divergent", e.verdict, e.items, self._why(e))
                for e in divergent.values()
            )
        report.repaired = report.count("repaired")
        report.elapsed = self.clock() - started
        return report

    def _why(self, entry: _Watched) -> str:
        if entry.verdict.kind == "divergent":
            return "replication cannot settle it"
        return f"unchanged for {self.timeout:g} s: replication is not carrying it"

    def _classify(self, items: Holdings) -> Verdict:
        return classify(items, settings=self.settings, now_ms=self.now_ms())

    # -- 1. scan -----------------------------------------------------------------------------

    def _scan(self, report: Report) -> Iterator[Mapping[str, Any]]:
        """Every region's segments at once; yields the keys whose items differ somewhere."""
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
            for name in names:
                prints = {seen[r][name][1] if name in seen[r] else None for r in self.regions}
                if len(prints) > 1:
                    yield next(seen[r][name][0] for r in self.regions if name in seen[r])

    def _scan_segment(
        self, reader: RegionReader, segment: int
    ) -> dict[str, tuple[Mapping[str, Any], str]]:
        out: dict[str, tuple[Mapping[str, Any], str]] = {}
        for page in reader.scan(segment, self.segments):
            for item in page:
                key = reader.key_of(item)
                print_ = fingerprint(item)
                assert print_ is not None
                out[key_string(key)] = (key, print_)
            self.on_scanned(len(page))
        return out

    # -- 2. consistent re-reads --------------------------------------------------------------

    def read(self, keys: Sequence[Mapping[str, Any]]) -> dict[str, Holdings]:
        """What every region holds under each key now (consistent reads, regions in parallel)."""
        if not keys:
            return {}
        futures = {r: self.pool.submit(reader.get_many, keys) for r, reader in self.readers.items()}
        found = {r: future.result() for r, future in futures.items()}
        return {
            name: {r: found[r].get(name) for r in self.regions}
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
            for name, items in self.read(keys).items():
                entry = pending[name]
                verdict = self._classify(items)
                if verdict.kind == "identical":
                    settled[name] = pending.pop(name)
                    continue
                if _prints(items) != _prints(entry.items):
                    entry.changed = True
                entry.items, entry.verdict = items, verdict
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
        for name, items in self.read([o.key for o in done.values()]).items():
            verdict = self._classify(items)
            if verdict.kind != "identical":
                check[name] = _Watched(done[name].key, items, verdict)
        _, moving, stuck = self.watch(check)
        for name, outcome in done.items():
            if name in moving or name in stuck:
                entry = check[name]
                status: Status = "pending" if name in moving else "divergent"
                note = "repaired, but a later reading differs"
                outcomes.append(KeyOutcome(outcome.key, status, entry.verdict, entry.items, note))
            else:
                outcomes.append(outcome)
        return outcomes

    def _repair(self, entry: _Watched) -> KeyOutcome:
        """Plan and write, reading again whenever a condition fails (a newer write landed)."""
        items, verdict = entry.items, entry.verdict
        for attempt in range(REPAIR_ATTEMPTS):
            if attempt:
                items = self.read([entry.key])[key_string(entry.key)]
                verdict = self._classify(items)
                if verdict.kind == "identical":
                    break
            plan = plan_repair(
                items,
                settings=self.settings,
                now_hlc=self._tick(),
                write_ids={region: self.new_id() for region in self.regions},
            )
            if not isinstance(plan, Repair):
                return KeyOutcome(entry.key, "unrepairable", verdict, items, plan.reason)
            try:
                if self._write(entry.key, plan):
                    break
            except (GeorepError, ClientError) as error:
                note = f"{type(error).__name__}: {error}"
                return KeyOutcome(entry.key, "unrepairable", verdict, items, note)
        else:
            note = f"{REPAIR_ATTEMPTS} attempts lost to newer writes"
            return KeyOutcome(entry.key, "unrepairable", verdict, items, note)
        return KeyOutcome(entry.key, "repaired", entry.verdict, entry.items, self._why(entry))

    def _write(self, key: Mapping[str, Any], plan: Repair) -> bool:
        """Every region's conditional write; False if any condition failed."""
        ok = True
        for region, write in plan.writes.items():
            item = encode_item(write.version, horizon_ms=self.settings.horizon_ms)
            result = self.tables[region].write(key, item, write.precondition)
            if not result.ok:
                log.info("repair of %s in %s raced a newer write; reading again", key, region)
                ok = False
        return ok

    def _tick(self) -> int:
        with self._hlc_lock:
            self._hlc = hlc.tick(self._hlc, self.now_ms())
            return self._hlc


def _prints(items: Holdings) -> tuple[str | None, ...]:
    return tuple(fingerprint(items[r]) for r in sorted(items))


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
