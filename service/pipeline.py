"""records -> core -> conditional writes: the one path the standalone consumer and the Lambda
handler share.

Per batch: every record is parsed and translated (echo, forward, adopt...); a record that
cannot be (malformed, tampered metadata, too large, a failing user rule) goes to the dead-letter
sink with its reason and the batch goes on. The versions to send are grouped by key (order kept
per key, a version dominated by the next one of the same key is coalesced away) and written to
each destination with one conditional write in the common case; different keys go in parallel
from a bounded pool. Delivery is at-least-once: a record whose writes failed (throttling past
botocore's retries, a network error) is reported failed and retried from there; the decision
is idempotent, so a retry changes nothing that was already applied.
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from service.core import hlc
from service.core.apply import (
    Adopt,
    Change,
    ExpectAbsent,
    ExpectMeta,
    Forward,
    Precondition,
    Restore,
    Settings,
    Skip,
    decide,
    read_item,
    translate,
)
from service.core.records import parse_record
from service.core.values import size_of
from service.core.version import META_ATTR, Order, Version, compare, encode_item
from service.errors import GeorepError, ItemTooLargeError
from service.ports import Table

log = logging.getLogger("georep")

MAX_ITEM_BYTES = 400 * 1024
MAX_ATTEMPTS = 25


class DeadLetterSink(Protocol):
    def put(self, *, region: str, record: Mapping[str, Any], reason: str, error: str) -> None: ...


Labels = Mapping[str, str]


class Metrics(Protocol):
    """Where counters and observations go (Prometheus, CloudWatch EMF, memory)."""

    def incr(self, name: str, labels: Labels, value: float = 1) -> None: ...

    def observe(self, name: str, labels: Labels, value: float) -> None: ...


@dataclass
class MemoryMetrics:
    """Counters and last observations in memory (tests; exported by the adapters)."""

    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    observations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self.observations[name].append(value)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.counters.items() if n == name)


@dataclass
class MemoryDeadLetters:
    entries: list[dict[str, Any]] = field(default_factory=list)

    def put(self, *, region: str, record: Mapping[str, Any], reason: str, error: str) -> None:
        self.entries.append({"region": region, "record": record, "reason": reason, "error": error})


Status = Literal["ok", "dead-lettered", "failed"]


@dataclass(frozen=True)
class RecordResult:
    sequence: str | None
    status: Status
    reason: str = ""


@dataclass(frozen=True)
class _Send:
    index: int
    record: Mapping[str, Any]
    version: Version
    destinations: tuple[str, ...]
    fast: Precondition | None


def fast_precondition(change: Change) -> Precondition | None:
    """The no-read path for a fresh local write: if the destination still holds what the
    source held before this write (the record's old image), the new version dominates it and
    one conditional write applies it. Otherwise the condition fails, DynamoDB hands back the
    current item (ALL_OLD) and the core decides."""
    if change.old is None:
        return ExpectAbsent()
    meta = change.old.get(META_ATTR)
    return ExpectMeta(meta) if meta is not None else None


class Replicator:
    """Replicates one source region's stream records to every destination table."""

    def __init__(
        self,
        *,
        region: str,
        settings: Settings,
        tables: Mapping[str, Table],
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        write_concurrency: int = 8,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
    ) -> None:
        self.region = region
        self.settings = settings
        self.tables = tables
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.now_ms = now_ms
        self.pool = ThreadPoolExecutor(max_workers=write_concurrency, thread_name_prefix="georep")
        self.others = tuple(r for r in settings.regions if r != region)
        self._dead_lettered: set[int] = set()

    def close(self) -> None:
        self.pool.shutdown(wait=True)

    # -- a batch ----------------------------------------------------------------------------

    def process(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Replicate a batch; one result per record, in order."""
        results: list[RecordResult] = []
        lanes: dict[str, list[_Send]] = defaultdict(list)
        for index, record in enumerate(records):
            sequence = _sequence_of(record)
            self.metrics.incr("records_read", {"region": self.region})
            try:
                send = self._plan(index, record)
            except GeorepError as error:
                self.dead_letter(record, error)
                results.append(RecordResult(sequence, "dead-lettered", str(error)))
                continue
            results.append(RecordResult(sequence, "ok"))
            if send is not None:
                key = json.dumps(
                    self.settings.keys_of(send.version.data), sort_keys=True, default=str
                )
                lanes[key].append(send)
        self._dead_lettered = set()
        failed = self._send_all(lanes)
        for index, reason in failed.items():
            results[index] = RecordResult(results[index].sequence, "failed", reason)
        for index in self._dead_lettered:
            results[index] = RecordResult(results[index].sequence, "dead-lettered", "see DLQ")
        return results

    def _plan(self, index: int, record: Mapping[str, Any]) -> _Send | None:
        change = parse_record(record)
        outcome = translate(change, region=self.region, settings=self.settings)
        match outcome:
            case Forward(version=v):
                self._check_size(v)
                return _Send(index, record, v, self.others, fast_precondition(change))
            case Adopt(version=v):
                self._check_size(v)
                self.metrics.incr("raw_writes_adopted", {"region": self.region})
                return _Send(index, record, v, self.settings.regions, None)
            case Restore(version=v):
                return _Send(index, record, v, (self.region,), ExpectAbsent())
        self.metrics.incr(f"dropped_{outcome.reason}", {"region": self.region})
        return None

    def _check_size(self, version: Version) -> None:
        size = size_of(encode_item(version, horizon_ms=self.settings.horizon_ms))
        if size > MAX_ITEM_BYTES:
            raise ItemTooLargeError(
                f"item is {size} bytes with georep metadata; DynamoDB's limit is {MAX_ITEM_BYTES}"
            )

    def dead_letter(self, record: Any, error: GeorepError) -> None:
        """Send a record that cannot be applied to the dead-letter sink, with its reason."""
        log.error("dead-lettering record %s: %s", _sequence_of(record), error)
        self.metrics.incr("dead_lettered", {"region": self.region, "error": type(error).__name__})
        self.dead_letters.put(
            region=self.region,
            record=record if isinstance(record, Mapping) else {"record": record},
            reason=str(error),
            error=type(error).__name__,
        )

    # -- sending ----------------------------------------------------------------------------

    def _send_all(self, lanes: Mapping[str, list[_Send]]) -> dict[int, str]:
        """Send every lane (key) in parallel; within a lane, in order. Returns failed indexes."""
        futures = [self.pool.submit(self._send_lane, _coalesce(lane)) for lane in lanes.values()]
        failed: dict[int, str] = {}
        for future in futures:
            failed.update(future.result())
        return failed

    def _send_lane(self, lane: list[_Send]) -> dict[int, str]:
        failed: dict[int, str] = {}
        for position, send in enumerate(lane):
            try:
                for destination in send.destinations:
                    self._apply(destination, send)
            except GeorepError as error:  # a user rule failing on this conflict, say
                self.dead_letter(send.record, error)
                self._dead_lettered.add(send.index)
            except Exception as error:  # reported, and retried from this record
                log.warning("replicating record %d failed: %s", send.index, error)
                self.metrics.incr("apply_failures", {"region": self.region})
                # Later versions of this key wait too: per-key order must hold on retry.
                for later in lane[position:]:
                    failed[later.index] = f"{type(error).__name__}: {error}"
                break
        return failed

    def _apply(self, destination: str, send: _Send) -> None:
        table = self.tables[destination]
        version = send.version
        key = self.settings.keys_of(version.data)
        labels = {"source": self.region, "destination": destination}
        if send.fast is not None:
            result = table.write(key, self._item(version), send.fast)
            if result.ok:
                self._applied(version, "written", labels)
                return
            current_item = result.current
        else:
            current_item = table.get(key)
        for _ in range(MAX_ATTEMPTS):
            current = read_item(current_item, settings=self.settings)
            decision = decide(current, version, settings=self.settings)
            if isinstance(decision, Skip):
                self.metrics.incr(f"skipped_{decision.reason}", labels)
                return
            result = table.write(key, self._item(decision.version), decision.precondition)
            if result.ok:
                if decision.conflict is not None:
                    self.metrics.incr(
                        "conflicts", {**labels, "resolver": self.settings.resolver.name}
                    )
                self._applied(version, "merged" if decision.conflict else "written", labels)
                return
            self.metrics.incr("precondition_retries", labels)
            current_item = result.current
        raise RuntimeError(f"gave up after {MAX_ATTEMPTS} contended attempts on {key}")

    def _item(self, version: Version) -> dict[str, Any]:
        return encode_item(version, horizon_ms=self.settings.horizon_ms)

    def _applied(self, version: Version, how: str, labels: Mapping[str, str]) -> None:
        self.metrics.incr("applied", {**labels, "how": how})
        if version.meta.adopted:
            # An adopted raw write's timestamp is the stream's approximate time (whole seconds,
            # or minutes on DynamoDB Local), not when it was written: no lag to measure.
            return
        lag_ms = self.now_ms() - hlc.wall_ms(version.meta.hlc)
        self.metrics.observe("replication_lag_seconds", labels, max(lag_ms, 0) / 1000)


def _coalesce(lane: list[_Send]) -> list[_Send]:
    """Drop a version the next one of the same key dominates and covers (same destinations):
    applying both or only the later one ends in the same state."""
    out: list[_Send] = []
    for send in lane:
        if (
            out
            and set(out[-1].destinations) <= set(send.destinations)
            and compare(send.version.meta, out[-1].version.meta) is Order.AFTER
        ):
            out.pop()
            # The destination still holds what preceded the dropped version: no fast path.
            send = _Send(send.index, send.record, send.version, send.destinations, None)
        out.append(send)
    return out


def _sequence_of(record: Mapping[str, Any]) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    value = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) else None
