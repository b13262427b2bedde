"""The backfill engine: an initial sync of a populated table through the replication path.

A parallel segmented Scan of the source region's table (one thread per segment); every item of a
page is planned by the pure core (`service.core.backfill.plan`) and applied on a shared pool of
workers: a raw item is stamped in place in the source (UpdateItem of ``_georep`` under the
precondition of what was read), and the version, stamped now or before, is delivered to each
destination by `service.engine.pipeline.Replicator.deliver`, the read-decide-conditional-write path
every forwarded record takes. A lost race re-reads the item and plans again.

Progress is stored per segment in georep's checkpoint table of the source region (key
``backfill/<table>/<source>-><destinations>/<segment>/<segments>``): the LastEvaluatedKey of
the last page whose every item was applied, and how many items that covers. A rerun resumes
from there; an interrupted page is done again, which changes nothing (every step is
idempotent). A page with a failed item stops its segment's progress where it is: the rest of
the segment is still scanned, and the next run retries from that page. When every segment is
done, a completion marker (``.../done``) replaces them.

Writes wait for their write capacity units in one token bucket per region (``max_wcu``), so
no table takes more than that from the backfill, whatever the number of segments and workers.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Literal, Protocol

import ulid

from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.dynamo import DynamoTable, ensure_table, require
from service.adapters.metrics import MemoryMetrics
from service.config import Config
from service.core.apply import ExpectAbsent, Precondition
from service.core.backfill import Deliver, Gone, Refuse, Stamp, plan
from service.core.stored import Settings
from service.core.version import META_ATTR, Version, data_of, encode_item
from service.engine.pipeline import Delivery, InlineExecutor, Replicator
from service.engine.ratelimit import TokenBucket, write_units
from service.engine.streams import AWS_ERRORS
from service.ports import CommitResult, Step, Table, WriteResult

log = logging.getLogger("georep.backfill")

# Attempts per item when writes keep landing between its read and its stamp.
MAX_ATTEMPTS = 25
# Failed items kept with their reason for the report (all are counted).
KEPT_FAILURES = 20
# Items per Scan page unless told otherwise: a page is the unit of saved progress, and a stop
# waits for the items of the page already started. A 1 MB page held 600 small items, which at
# --max-wcu 20 is a minute of work a Ctrl-C had to wait for (issue 18).
PAGE_ITEMS = 100


# -- progress ---------------------------------------------------------------------------------


def job_prefix(*, table: str, source: str, destinations: Sequence[str]) -> str:
    """The checkpoint-table key prefix of one backfill job (never a stream ARN's prefix).

    >>> job_prefix(table="orders", source="eu-west-1", destinations=["us-east-1", "ap-south-1"])
    'backfill/orders/eu-west-1->us-east-1,ap-south-1'
    """
    return f"backfill/{table}/{source}->{','.join(destinations)}"


@dataclass(frozen=True)
class SegmentProgress:
    """Where a segment is: ``position`` is the LastEvaluatedKey of the last page whose every
    item was applied (``None``: start of the segment), ``scanned`` the items up to it over
    every run, ``done`` the segment was read to its end."""

    position: Mapping[str, Any] | None = None
    scanned: int = 0
    done: bool = False


@dataclass(frozen=True)
class Saved:
    """What the checkpoint table holds for a job: segment progress by segment count (a job
    run with ``--segments 4`` is resumed with 4), and the completion marker, if it finished."""

    segments: Mapping[int, Mapping[int, SegmentProgress]] = field(default_factory=dict)
    done: Mapping[str, Any] | None = None


class ProgressStore(Protocol):
    """Where a running job saves its progress (`DynamoProgress`)."""

    def save(self, segment: int, total: int, progress: SegmentProgress) -> None: ...

    def finish(self, *, scanned: int, at: datetime) -> None:
        """Mark the job complete (a rerun says so) and drop its segments' progress."""
        ...


class DynamoProgress:
    """A backfill job's progress in the checkpoint table (key attribute ``shard``, S)."""

    def __init__(self, client: Any, *, table_name: str, prefix: str) -> None:
        self.client, self.table_name, self.prefix = client, table_name, prefix

    def ensure_table(self) -> None:
        ensure_table(self.client, table_name=self.table_name, key="shard")

    def _key(self, suffix: str) -> dict[str, Any]:
        return {"shard": {"S": f"{self.prefix}/{suffix}"}}

    def _items(self) -> Iterable[dict[str, Any]]:
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            ConsistentRead=True,
            FilterExpression="begins_with(#k, :p)",
            ExpressionAttributeNames={"#k": "shard"},
            ExpressionAttributeValues={":p": {"S": f"{self.prefix}/"}},
        ):
            yield from page.get("Items", [])

    def load(self) -> Saved:
        segments: dict[int, dict[int, SegmentProgress]] = {}
        done: Mapping[str, Any] | None = None
        for item in self._items():
            suffix = item["shard"]["S"][len(self.prefix) + 1 :]
            if suffix == "done":
                done = {k: v for k, v in item.items() if k != "shard"}
                continue
            segment, _, total = suffix.partition("/")
            if not (segment.isdigit() and total.isdigit()):
                continue
            position = item.get("position", {}).get("M")
            segments.setdefault(int(total), {})[int(segment)] = SegmentProgress(
                position=position,
                scanned=int(item.get("scanned", {}).get("N", "0")),
                done=bool(item.get("done", {}).get("BOOL", False)),
            )
        return Saved(segments, done)

    def save(self, segment: int, total: int, progress: SegmentProgress) -> None:
        item: dict[str, Any] = {
            **self._key(f"{segment}/{total}"),
            "scanned": {"N": str(progress.scanned)},
            "done": {"BOOL": progress.done},
        }
        if progress.position is not None:
            item["position"] = {"M": dict(progress.position)}
        self.client.put_item(TableName=self.table_name, Item=item)

    def finish(self, *, scanned: int, at: datetime) -> None:
        """Mark the job complete and drop its segments' progress."""
        self.client.put_item(
            TableName=self.table_name,
            Item={
                **self._key("done"),
                "scanned": {"N": str(scanned)},
                "finished": {"S": at.isoformat(timespec="seconds")},
            },
        )
        for item in list(self._items()):
            if not item["shard"]["S"].endswith("/done"):
                self.client.delete_item(TableName=self.table_name, Key={"shard": item["shard"]})

    def discard(self) -> int:
        """Forget the job (progress and completion marker); returns how many entries went."""
        keys = [item["shard"] for item in self._items()]
        for key in keys:
            self.client.delete_item(TableName=self.table_name, Key={"shard": key})
        return len(keys)


# -- rate-limited tables ----------------------------------------------------------------------


class Metered:
    """A Table whose writes first wait for their write capacity units in ``bucket`` (none:
    unlimited). Reads pass through: they cost read units, which ``--max-wcu`` does not cap."""

    def __init__(
        self,
        table: Table,
        *,
        bucket: TokenBucket | None,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.table, self.bucket, self.sleep = table, bucket, sleep

    def _charge(self, units: int) -> None:
        if self.bucket is not None:
            delay = self.bucket.reserve(units)
            if delay > 0:
                self.sleep(delay)

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.table.get(key)

    def write(
        self, key: Mapping[str, Any], item: Mapping[str, Any] | None, precondition: Precondition
    ) -> WriteResult:
        self._charge(write_units(item) if item is not None else 1)
        return self.table.write(key, item, precondition)

    def annotate(
        self,
        key: Mapping[str, Any],
        meta: Mapping[str, Any],
        precondition: Precondition,
        *,
        units: int | None = None,
    ) -> WriteResult:
        """``units``: what the UpdateItem costs, which depends on the whole item (DynamoDB
        charges the larger of the item before and after); by default the key and metadata."""
        self._charge(units if units is not None else write_units({**key, META_ATTR: meta}))
        return self.table.annotate(key, meta, precondition)

    def get_stored(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.table.get_stored(key)

    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any] | None]:
        return self.table.get_many(keys)

    def get_stored_many(
        self, keys: Sequence[Mapping[str, Any]]
    ) -> Sequence[Mapping[str, Any] | None]:
        return self.table.get_stored_many(keys)

    def commit(
        self, key: Mapping[str, Any], *, table: Step | None, store: Step | None
    ) -> CommitResult:
        """A transaction costs two write units per 1 KB of each item it writes or checks."""
        steps = [step for step in (table, store) if step is not None]
        both = len(steps) > 1 or any(step.check for step in steps)
        units = sum(write_units(step.item) if step.item is not None else 1 for step in steps)
        self._charge(2 * units if both else units)
        return self.table.commit(key, table=table, store=store)


# -- the run ----------------------------------------------------------------------------------

Outcome = Literal["delivered", "skipped", "failed"]


@dataclass(frozen=True)
class ItemResult:
    """One scanned item: ``delivered`` (written to at least one destination), ``skipped``
    (every destination had it already, or it was deleted since the scan) or ``failed``."""

    key: str
    outcome: Outcome
    stamped: bool = False
    reason: str = ""


@dataclass
class Tally:
    scanned: int = 0
    stamped: int = 0
    delivered: int = 0
    skipped: int = 0
    failed: int = 0

    @classmethod
    def of(cls, results: Iterable[ItemResult]) -> Tally:
        tally = cls()
        for result in results:
            tally.scanned += 1
            tally.stamped += result.stamped
            setattr(tally, result.outcome, getattr(tally, result.outcome) + 1)
        return tally

    def add(self, other: Tally) -> None:
        for name in ("scanned", "stamped", "delivered", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))


SegmentStatus = Literal["done", "interrupted", "incomplete"]


@dataclass(frozen=True)
class SegmentResult:
    """``done``: read to its end with every item applied; ``interrupted``: stopped between
    pages; ``incomplete``: read to its end with failed items, or stopped by an error (``error``).
    ``progress`` is what is stored for it now."""

    segment: int
    status: SegmentStatus
    tally: Tally
    progress: SegmentProgress
    failures: tuple[ItemResult, ...] = ()
    error: str = ""


@dataclass(frozen=True)
class Result:
    segments: tuple[SegmentResult, ...]
    elapsed: float
    resumed_from: int  # items scanned by earlier runs of the job

    @property
    def tally(self) -> Tally:
        total = Tally()
        for segment in self.segments:
            total.add(segment.tally)
        return total

    @property
    def complete(self) -> bool:
        return all(s.status == "done" for s in self.segments)

    @property
    def interrupted(self) -> bool:
        return any(s.status == "interrupted" for s in self.segments)

    @property
    def failures(self) -> list[ItemResult]:
        return [f for s in self.segments for f in s.failures]


class Deliverer(Protocol):
    """Applies a version to destinations: `service.engine.pipeline.Replicator` is the one."""

    def deliver(
        self,
        version: Version,
        destinations: Sequence[str],
        *,
        fast: Precondition | None = None,
    ) -> Mapping[str, Delivery]: ...


class Backfill:
    """One backfill job: ``run()`` scans ``segments`` segments in parallel until each is done
    or ``stop`` is set (the page in hand is finished and its progress saved first)."""

    def __init__(
        self,
        *,
        settings: Settings,
        source: str,
        destinations: Sequence[str],
        scan: Callable[..., Mapping[str, Any]],
        table_name: str,
        source_table: Metered,
        replicator: Deliverer,
        progress: ProgressStore,
        segments: int,
        page_size: int | None,
        workers: int,
        stamp_at: int,
        stop: threading.Event,
        on_page: Callable[[Tally], None] = lambda _: None,
        new_id: Callable[[], str] = lambda: str(ulid.new()),
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.settings, self.source, self.destinations = settings, source, tuple(destinations)
        self.scan, self.table_name, self.source_table = scan, table_name, source_table
        self.replicator, self.progress = replicator, progress
        self.segments, self.page_size, self.workers = segments, page_size, workers
        self.stamp_at, self.stop, self.on_page = stamp_at, stop, on_page
        self.new_id, self.clock = new_id, clock

    # -- one item --------------------------------------------------------------------------

    def item(self, item: Mapping[str, Any]) -> ItemResult:
        """Stamp ``item`` if it is raw, deliver its version; re-read and plan again when a
        write landed in between. Never raises: an error is the item's failure."""
        label, stamped = _show_key(item, self.settings), False
        current: Mapping[str, Any] | None = item
        try:
            key = self.settings.keys_of(data_of(item))
            for _ in range(MAX_ATTEMPTS):
                step = plan(
                    current,
                    region=self.source,
                    at_hlc=self.stamp_at,
                    write_id=self.new_id(),
                    settings=self.settings,
                )
                match step:
                    case Gone():
                        return ItemResult(label, "skipped", stamped)
                    case Refuse(reason=reason):
                        return ItemResult(label, "failed", stamped, reason)
                    case Deliver(version=version):
                        return self._deliver(label, version, stamped=stamped)
                    case Stamp(version=version, precondition=precondition, in_place=in_place):
                        stored = encode_item(version, horizon_ms=self.settings.horizon_ms)
                        if in_place:
                            result = self.source_table.annotate(
                                key, stored[META_ATTR], precondition, units=write_units(stored)
                            )
                        else:
                            result = self.source_table.write(key, stored, precondition)
                        if result.ok:
                            return self._deliver(label, version, stamped=True)
                        current = result.current
            reason = f"gave up after {MAX_ATTEMPTS} writes landed between a read and a stamp"
            return ItemResult(label, "failed", stamped, reason)
        except Exception as error:  # one item's trouble is reported, never ends the run
            log.warning("backfill of %s failed: %s", label, error)
            return ItemResult(label, "failed", stamped, f"{type(error).__name__}: {error}")

    def _deliver(self, label: str, version: Version, *, stamped: bool) -> ItemResult:
        # NOTE: a version stamped just now was never sent anywhere: on a first sync the
        # destinations do not have the item, and one conditional put applies it (the condition
        # fails on an item that is there, which comes back with the failure and is decided on as
        # after a read). An older version is read first: a failed write costs write units.
        fast = ExpectAbsent() if stamped else None
        deliveries = self.replicator.deliver(version, self.destinations, fast=fast)
        trouble = {d: x for d, x in deliveries.items() if x.handled not in ("applied", "skipped")}
        if trouble:
            reason = "; ".join(f"{d}: {x}" for d, x in trouble.items())
            return ItemResult(label, "failed", stamped, reason)
        written = any(x.handled == "applied" for x in deliveries.values())
        return ItemResult(label, "delivered" if written else "skipped", stamped)

    # -- one segment -----------------------------------------------------------------------

    def _unless_stopped(self, item: Mapping[str, Any]) -> ItemResult | None:
        return None if self.stop.is_set() else self.item(item)

    def _page(self, segment: int, position: Mapping[str, Any] | None) -> Mapping[str, Any]:
        request: dict[str, Any] = {
            "TableName": self.table_name,
            "Segment": segment,
            "TotalSegments": self.segments,
        }
        if position is not None:
            request["ExclusiveStartKey"] = dict(position)
        request["Limit"] = self.page_size if self.page_size is not None else PAGE_ITEMS
        return self.scan(**request)

    def segment(
        self, segment: int, start: SegmentProgress, pool: ThreadPoolExecutor
    ) -> SegmentResult:
        saved, position, clean = start, start.position, True
        tally, failures = Tally(), list[ItemResult]()

        def result(status: SegmentStatus, error: str = "") -> SegmentResult:
            kept = tuple(failures[:KEPT_FAILURES])
            return SegmentResult(segment, status, tally, saved, kept, error)

        if start.done:
            return result("done")
        while not self.stop.is_set():
            try:
                page = self._page(segment, position)
            except AWS_ERRORS as error:
                return result("incomplete", f"segment {segment}: {type(error).__name__}: {error}")
            items = require(page, "Items", operation="Scan")  # a cut answer is no end
            # NOTE: once stop is set, the page's items not started yet are left: the page is
            # not saved, so the next run does it again (idempotently), and a stop waits for
            # the items in flight only, whatever the page size and the rate limit.
            applied = [r for r in pool.map(self._unless_stopped, items) if r is not None]
            results, cut = applied, len(applied) < len(items)
            page_tally = Tally.of(results)
            tally.add(page_tally)
            # Only the first few failures are reported: a run that fails every item must not
            # hold every item's result (bounded memory, issue 16).
            room = KEPT_FAILURES - len(failures)
            failures.extend([r for r in results if r.outcome == "failed"][: max(room, 0)])
            position = page.get("LastEvaluatedKey")
            clean = clean and not page_tally.failed
            self.on_page(page_tally)
            if cut:
                return result("interrupted")
            if clean:
                progress = SegmentProgress(position, saved.scanned + len(items), position is None)
                try:
                    self.progress.save(segment, self.segments, progress)
                except AWS_ERRORS as error:
                    return result("incomplete", f"segment {segment}, saving progress: {error}")
                saved = progress
            if position is None:
                return result("done" if clean else "incomplete")
        return result("interrupted")

    # -- the job ---------------------------------------------------------------------------

    def run(self, saved: Mapping[int, SegmentProgress]) -> Result:
        """Scan every segment from ``saved`` (what earlier runs stored for this segment
        count); on a clean finish, mark the job complete."""
        started = self.clock()
        with (
            ThreadPoolExecutor(self.workers, thread_name_prefix="backfill") as pool,
            ThreadPoolExecutor(self.segments, thread_name_prefix="segment") as segments,
        ):
            futures = [
                segments.submit(self.segment, s, saved.get(s, SegmentProgress()), pool)
                for s in range(self.segments)
            ]
            # NOTE: waiting with a timeout keeps the main thread free to run signal handlers.
            while wait(futures, timeout=0.2).not_done:
                if any(f.done() and f.exception() is not None for f in futures):
                    self.stop.set()  # a bug, not an AWS error: let the others stop cleanly
            results = tuple(f.result() for f in futures)
        outcome = Result(
            segments=results,
            elapsed=self.clock() - started,
            resumed_from=sum(p.scanned for p in saved.values()),
        )
        if outcome.complete:
            scanned = sum(s.progress.scanned for s in results)
            self.progress.finish(scanned=scanned, at=datetime.now(UTC))
        return outcome


def _show_key(item: Mapping[str, Any], settings: Settings) -> str:
    """An item's key for a report line: ``{"pk": "user#1"}`` (binary as base64 by boto3's
    JSON, numbers as their text)."""
    key = {name: item.get(name) for name in settings.key_attributes}
    plain = {
        name: next(iter(value.values())) if isinstance(value, dict) and value else value
        for name, value in key.items()
    }
    return json.dumps(plain, default=lambda b: b.hex() if isinstance(b, bytes) else str(b))


# -- wiring -----------------------------------------------------------------------------------


def build(
    config: Config,
    *,
    source: str,
    destinations: Sequence[str],
    clients: Mapping[str, Any],
    segments: int,
    page_size: int | None,
    workers: int,
    max_wcu: float | None,
    stamp_at: int,
    stop: threading.Event,
    on_page: Callable[[Tally], None] = lambda _: None,
) -> Backfill:
    """A backfill wired to DynamoDB from the configuration: one client per region (reused: its
    adaptive retry limiter lives in it) and one token bucket per region."""
    settings = config.settings()
    keys = config.key_attributes
    replication = config.replication
    store = replication.tombstone_table if replication.tombstone_store else None

    def table(region: str) -> Metered:
        dynamo = DynamoTable(
            clients[region],
            table_name=config.table_name(region),
            key_attributes=keys,
            store_table=store,
            name=config.table.name,
        )
        return Metered(dynamo, bucket=TokenBucket(max_wcu) if max_wcu else None)

    replicator = Replicator(
        region=source,
        settings=settings,
        tables={region: table(region) for region in destinations},
        dead_letters=MemoryDeadLetters(),
        metrics=MemoryMetrics(),
        executor=InlineExecutor(),
        table=config.table.name,
    )
    return Backfill(
        settings=settings,
        source=source,
        destinations=destinations,
        scan=clients[source].scan,
        table_name=config.table_name(source),
        source_table=table(source),
        replicator=replicator,
        progress=progress_store(config, source=source, destinations=destinations, clients=clients),
        segments=segments,
        page_size=page_size,
        workers=workers,
        stamp_at=stamp_at,
        stop=stop,
        on_page=on_page,
    )


def progress_store(
    config: Config, *, source: str, destinations: Sequence[str], clients: Mapping[str, Any]
) -> DynamoProgress:
    """The job's progress, in the checkpoint table of the source region."""
    prefix = job_prefix(table=config.table_name(source), source=source, destinations=destinations)
    return DynamoProgress(
        clients[source], table_name=config.replication.checkpoint_table, prefix=prefix
    )
