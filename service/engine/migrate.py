"""Moving a region's tombstone items, written before the tombstone store, into it (issue 22).

A parallel segmented Scan of the region's table returns only items that may be tombstones
(``_georep`` and ``_georep_ttl`` both present: a FilterExpression, so the pages carry no live
data; the read capacity is the whole table's all the same). Each one that is a tombstone is
read again from both places (consistent reads), planned by the pure core
(`service.core.migration.plan_move`) and moved in one commit: the table's Delete conditioned
on exactly the ``_georep`` read, the store's Put conditioned on the store item as read. A
failed condition (a write landed) reads both places and plans again; an item found live is
left alone.

Idempotent and resumable without saved progress: each key's move is atomic, a moved key is
no longer in the table, so a second run, or a run after a crash or Ctrl-C, scans again and
finds only what is left. NOTE: unlike ``georep backfill``, no scan position is saved: a rerun
reads the whole table again (read units only), which keeps the command stateless; see
docs/decisions.md.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal

from service.config import Config
from service.core.migration import Leave, is_tombstone_item, plan_move
from service.core.places import read_key
from service.core.stored import Settings, read_item
from service.core.version import META_ATTR, TTL_ATTR
from service.engine.backfill import _show_key
from service.engine.streams import AWS_ERRORS, error_code
from service.engine.wiring import places_for
from service.errors import GeorepError, UsageError
from service.ports import Table

# Attempts per key when writes keep landing between its read and its move.
MAX_ATTEMPTS = 25
# Failed keys kept with their reason for the report (all are counted).
KEPT_FAILURES = 20

Kind = Literal["moved", "already_moved", "skipped", "failed"]


@dataclass
class Tally:
    """What one region's migration did. ``scanned``: items the Scan read (the filter's
    ScannedCount); ``moved``: tombstones now in the store; ``already_moved``: the store held
    the tombstone, or one succeeding it, so only the table item was deleted; ``skipped``:
    found as tombstones by the scan, not by the read after it (a write landed, or a
    residency marker); ``failed``: errors, kept in ``failures`` (up to KEPT_FAILURES)."""

    scanned: int = 0
    moved: int = 0
    already_moved: int = 0
    skipped: int = 0
    failed: int = 0
    failures: list[str] = field(default_factory=list)

    def count(self, kind: Kind, detail: str = "") -> None:
        setattr(self, kind, getattr(self, kind) + 1)
        if kind == "failed" and len(self.failures) < KEPT_FAILURES:
            self.failures.append(detail)

    def add(self, other: Tally) -> None:
        for name in ("scanned", "moved", "already_moved", "skipped", "failed"):
            setattr(self, name, getattr(self, name) + getattr(other, name))
        room = KEPT_FAILURES - len(self.failures)
        self.failures.extend(other.failures[: max(room, 0)])


def move_key(
    places: Table,
    key: Mapping[str, Any],
    *,
    name: str,
    region: str,
    settings: Settings,
    dry_run: bool = False,
) -> tuple[Kind, str]:
    """Move ``key``'s tombstone item to the store if the table still holds one: read both
    places, plan, commit; again on a failed condition. Returns what happened and why."""
    for _ in range(MAX_ATTEMPTS):
        state = read_key(places.get(key), places.get_stored(key), settings=settings)
        plan = plan_move(state, table=name, region=region, settings=settings)
        if isinstance(plan, Leave):
            return "skipped", plan.reason
        kind: Kind = "already_moved" if plan.already else "moved"
        if dry_run:
            return kind, ""
        if places.commit(key, table=plan.table, store=plan.store).ok:
            return kind, ""
    return "failed", f"gave up after {MAX_ATTEMPTS} contended attempts"


# Only items holding both could be tombstone items (`encode_item`: a tombstone gets the TTL
# attribute; a live item written by georep never has it).
SCAN_FILTER = {
    "FilterExpression": "attribute_exists(#georep_meta) AND attribute_exists(#georep_ttl)",
    "ExpressionAttributeNames": {"#georep_meta": META_ATTR, "#georep_ttl": TTL_ATTR},
}


@dataclass
class Migration:
    """One region's migration of one table: ``run()`` scans ``segments`` segments in parallel
    (a thread each) and moves every tombstone item found. ``scan``: the region's client's
    ``scan``; ``places``: the region's table and store (`DynamoTable` with its store).
    ``on_page`` is called (from the segment's thread) with each page's tally; ``stop`` set
    ends every segment after the item in hand."""

    places: Table
    scan: Callable[..., Mapping[str, Any]]
    table_name: str  # the physical table in this region
    name: str  # the configured name (it keys the store's items)
    region: str
    settings: Settings
    segments: int = 4
    dry_run: bool = False
    stop: threading.Event = field(default_factory=threading.Event)
    on_page: Callable[[Tally], None] = lambda _: None

    def item(self, found: Mapping[str, Any], tally: Tally) -> None:
        try:
            if not is_tombstone_item(read_item(found, settings=self.settings)):
                return  # a live item that carries a TTL of the application's own
            key = self.settings.keys_of(found)
            kind, why = move_key(
                self.places,
                key,
                name=self.name,
                region=self.region,
                settings=self.settings,
                dry_run=self.dry_run,
            )
        except GeorepError as error:  # unreadable metadata: reported, never deleted
            kind, why = "failed", f"{error}"
        except AWS_ERRORS as error:  # throttled past retries, a transaction conflict: rerun
            kind, why = "failed", f"{error_code(error)}: {error}"
        tally.count(kind, f"{_show_key(found, self.settings)}: {why}")

    def segment(self, segment: int) -> Tally:
        total = Tally()
        start: Mapping[str, Any] | None = None
        while not self.stop.is_set():
            request: dict[str, Any] = {
                "TableName": self.table_name,
                "Segment": segment,
                "TotalSegments": self.segments,
                **SCAN_FILTER,
            }
            if start is not None:
                request["ExclusiveStartKey"] = dict(start)
            page = self.scan(**request)
            tally = Tally(scanned=int(page.get("ScannedCount", 0)))
            for found in page.get("Items", []):
                if self.stop.is_set():
                    break
                self.item(found, tally)
            total.add(tally)
            self.on_page(tally)
            start = page.get("LastEvaluatedKey")
            if start is None:
                break
        return total

    def run(self) -> Result:
        started = time.monotonic()
        tally = Tally()
        with ThreadPoolExecutor(self.segments, thread_name_prefix="georep-migrate") as pool:
            futures = [pool.submit(self.segment, s) for s in range(self.segments)]
            try:
                for future in futures:
                    tally.add(future.result())
            except BaseException:
                self.stop.set()  # Ctrl-C or a failing segment: the others stop after the item
                raise
        return Result(
            region=self.region,
            tally=tally,
            interrupted=self.stop.is_set(),
            elapsed=time.monotonic() - started,
        )


@dataclass(frozen=True)
class Result:
    region: str
    tally: Tally
    interrupted: bool
    elapsed: float

    @property
    def complete(self) -> bool:
        return not self.interrupted and self.tally.failed == 0


def migration_for(
    config: Config,
    *,
    region: str,
    client: Any,
    segments: int = 4,
    dry_run: bool = False,
    stop: threading.Event | None = None,
    on_page: Callable[[Tally], None] = lambda _: None,
) -> Migration:
    """``region``'s migration of the one table ``config`` names (a [table] form, or
    ``for_table``), over the region's DynamoDB ``client``: `georep migrate-tombstones` and
    `georep init` build it here. Needs the tombstone store configured."""
    places = places_for(config, region=region, client=client)
    if places.store_table is None:
        raise UsageError(
            "the tombstone store is off: set [replication] tombstone_store = true first"
        )
    return Migration(
        places=places,
        scan=client.scan,
        table_name=config.table_name(region),
        name=config.table.name,
        region=region,
        settings=config.settings(),
        segments=segments,
        dry_run=dry_run,
        stop=stop or threading.Event(),
        on_page=on_page,
    )
