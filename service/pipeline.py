"""records -> core -> conditional writes: the one path the standalone consumer and the Lambda
handler share.

Per batch: every record is parsed and translated (echo, forward, adopt...); a record that
cannot be (malformed, tampered metadata, too large) goes to the dead-letter sink with its
reason and the batch goes on. The versions to send are grouped by key (order kept per key, a
version dominated by the next one of the same key is coalesced away) and written to each
destination with one conditional write in the common case; different keys go in parallel from
a bounded pool.

Every destination is attempted, whatever happened at the others. A permanent error at one (a
merge too large, a user rule raising, a request the destination rejects) dead-letters the
record with what each destination did; a transient one (throttling past botocore's retries, a
network error) reports the record failed, to be retried from there, and holds the key's later
versions back at that destination only. Delivery is at-least-once: the decision is idempotent,
so a retry changes nothing that was already applied (and a record may be dead-lettered again
if it is replayed).
"""

from __future__ import annotations

import json
import logging
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeVar

from service.core import hlc
from service.core.apply import (
    Adopt,
    Annotate,
    Change,
    Drop,
    ExpectAbsent,
    ExpectMeta,
    Forward,
    Outcome,
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
from service.core.version import META_ATTR, Order, Version, compare, encode_item, encode_meta
from service.deadletter import DeadLetter
from service.errors import GeorepError, ItemTooLargeError
from service.ports import Table

log = logging.getLogger("georep")

MAX_ITEM_BYTES = 400 * 1024
MAX_ATTEMPTS = 25

T = TypeVar("T")


class DeadLetterSink(Protocol):
    def put(
        self,
        *,
        region: str,
        record: Mapping[str, Any],
        reason: str,
        error: str,
        destinations: Mapping[str, str],
    ) -> None:
        """Keep ``record`` with why it could not be applied. ``destinations``: what happened
        at each destination it was sent to (``"applied (written)"``, ``"rejected (...)"``),
        empty when it was refused before any (malformed, too large)."""
        ...


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


class TeeMetrics:
    """Every count and observation to each of ``sinks``, in order."""

    def __init__(self, *sinks: Metrics) -> None:
        self.sinks = sinks

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        for sink in self.sinks:
            sink.incr(name, labels, value)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        for sink in self.sinks:
            sink.observe(name, labels, value)


@dataclass
class MemoryDeadLetters:
    """The dead-letter table in memory: what service/deadletter.py's DynamoDeadLetters does,
    minus the storage format (tests/integration/test_dead_letter_store.py compares them)."""

    entries: list[dict[str, Any]] = field(default_factory=list)
    _made: int = field(default=0, init=False, repr=False)

    def put(
        self,
        *,
        region: str,
        record: Mapping[str, Any],
        reason: str,
        error: str,
        destinations: Mapping[str, str],
    ) -> None:
        self._made += 1
        self.entries.append(
            {
                "id": f"{self._made:026d}",  # sorts like the ULIDs DynamoDeadLetters uses
                "region": region,
                "record": record,
                "reason": reason,
                "error": error,
                "destinations": dict(destinations),
                "at": int(time.time()),
            }
        )

    def letters(self) -> list[DeadLetter]:
        return [
            DeadLetter(
                id=e["id"],
                region=e["region"],
                reason=e["reason"],
                error=e["error"],
                at=e["at"],
                record=e["record"],
                destinations=dict(e["destinations"]),
                replays=e.get("replays", 0),
                replayed_at=e.get("replayed_at"),
            )
            for e in self.entries
        ]

    def letter(self, entry_id: str) -> DeadLetter | None:
        return next((x for x in self.letters() if x.id == entry_id), None)

    def count(self) -> int:
        return len(self.entries)

    def update(
        self, entry_id: str, *, reason: str, error: str, destinations: Mapping[str, str]
    ) -> bool:
        for entry in self.entries:
            if entry["id"] == entry_id:
                entry |= {
                    "reason": reason,
                    "error": error,
                    "destinations": dict(destinations),
                    "replays": entry.get("replays", 0) + 1,
                    "replayed_at": int(time.time()),
                }
                return True
        return False

    def remove(self, entry_id: str) -> bool:
        kept = [e for e in self.entries if e["id"] != entry_id]
        removed = len(kept) < len(self.entries)
        self.entries[:] = kept
        return removed


class InlineExecutor(Executor):
    """Runs each task as it is submitted, in the caller's thread: a deterministic schedule for
    the state machine (the Replicator's default is a thread pool)."""

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        try:
            future.set_result(fn(*args, **kwargs))
        except BaseException as error:  # handed to whoever reads the result, as a pool does
            future.set_exception(error)
        return future


Status = Literal["ok", "dead-lettered", "failed"]
Handled = Literal["applied", "skipped", "rejected", "failed", "waiting"]


@dataclass(frozen=True)
class Delivery:
    """What became of one record's version at one destination.

    ``applied``/``skipped`` (``detail``: written or merged; duplicate, stale or absorbed);
    ``rejected``: a permanent error (``detail`` says which), the record is dead-lettered;
    ``failed``: a transient error, the record is retried; ``waiting``: not attempted, because an
    earlier version of the same key failed at this destination (per-key order).
    """

    handled: Handled
    detail: str = ""
    error: str = ""  # the exception's type, for rejected and failed

    def __str__(self) -> str:
        return f"{self.handled} ({self.detail})" if self.detail else self.handled


@dataclass(frozen=True)
class RecordResult:
    """One record's fate. ``outcome``: what the record meant (forward, adopt...; ``None`` when
    it could not be read); ``deliveries``: per destination, for a record that was sent (empty
    when nothing was sent, or its version was coalesced into a later one of the same key)."""

    sequence: str | None
    status: Status
    reason: str = ""
    outcome: Outcome | None = None
    deliveries: Mapping[str, Delivery] = field(default_factory=dict)


def is_permanent(error: Exception) -> bool:
    """Whether retrying cannot help. georep's own errors are permanent: a record that cannot
    be applied as it is, a destination that refuses this very request (service/dynamo.py
    turns those error codes into RequestRejectedError). Anything else is transient: throttling
    that outlasted botocore's own retries, the network, a destination table not there (yet).

    NOTE: unknown errors count as transient on purpose: a record retried in vain shows up as a
    stuck shard (apply_failures, iterator age); one dead-lettered in vain is easy to miss.
    """
    return isinstance(error, GeorepError)


@dataclass(frozen=True)
class _Send:
    index: int
    record: Mapping[str, Any]
    version: Version
    destinations: tuple[str, ...]
    fast: Precondition | None
    # "adoption": adopts a raw write of the source's own stream; "restore": a tombstone
    # removed by hand, put back in the source's own table (see `decide`'s ``here``)
    role: Literal["forward", "adoption", "restore"] = "forward"


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
        executor: Executor | None = None,
    ) -> None:
        """``executor`` runs the per-key lanes (default: a pool of ``write_concurrency``
        threads, shut down by :meth:`close`; one passed in belongs to the caller)."""
        self.region = region
        self.settings = settings
        self.tables = tables
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.now_ms = now_ms
        self._owns_pool = executor is None
        self.pool = executor or ThreadPoolExecutor(
            max_workers=write_concurrency, thread_name_prefix="georep"
        )
        self.others = tuple(r for r in settings.regions if r != region)

    def close(self) -> None:
        if self._owns_pool:
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
                change = parse_record(record)
                outcome = translate(change, region=self.region, settings=self.settings)
                send = self._plan(index, record, change, outcome)
            except GeorepError as error:
                results.append(self.refuse(record, error))
                continue
            results.append(RecordResult(sequence, "ok", outcome=outcome))
            if send is not None:
                key = json.dumps(
                    self.settings.keys_of(send.version.data), sort_keys=True, default=str
                )
                lanes[key].append(send)
        for index, deliveries in self._send_all(lanes).items():
            results[index] = self._settle(records[index], results[index], deliveries)
        return results

    def _plan(
        self, index: int, record: Mapping[str, Any], change: Change, outcome: Outcome
    ) -> _Send | None:
        match outcome:
            case Forward(version=v):
                self._check_size(v)
                return _Send(index, record, v, self.others, fast_precondition(change))
            case Adopt(version=v):
                self._check_size(v)
                self.metrics.incr("raw_writes_adopted", {"region": self.region})
                return _Send(index, record, v, self.settings.regions, None, role="adoption")
            case Restore(version=v):
                return _Send(index, record, v, (self.region,), ExpectAbsent(), role="restore")
            case Drop(reason=reason):
                self.metrics.incr(f"dropped_{reason}", {"region": self.region})
        return None

    def deliver(
        self,
        version: Version,
        destinations: Sequence[str],
        *,
        fast: Precondition | None = None,
    ) -> dict[str, Delivery]:
        """Apply one ``version`` of this region to ``destinations`` exactly as a forwarded
        record's version is applied (read, decide, conditional write, again on a lost race), in
        the caller's thread: for versions that no stream record brings (``georep backfill``).
        ``fast``: what a destination most likely holds, tried with one conditional write before
        any read (`fast_precondition`). What happened at each destination is reported as for a
        record (an error becomes ``rejected`` or ``failed``, never an exception); nothing is
        dead-lettered."""
        send = _Send(0, {}, version, tuple(destinations), fast)
        return self._send_lane([send])[0]

    def _check_size(self, version: Version) -> None:
        size = size_of(encode_item(version, horizon_ms=self.settings.horizon_ms))
        if size > MAX_ITEM_BYTES:
            raise ItemTooLargeError(
                f"item is {size} bytes with georep metadata; DynamoDB's limit is {MAX_ITEM_BYTES}"
            )

    def refuse(self, record: Any, error: GeorepError) -> RecordResult:
        """Dead-letter a record that cannot be applied anywhere (malformed, too large)."""
        result = RecordResult(_sequence_of(record), "dead-lettered", str(error))
        return self._dead_lettered(record, result, error=type(error).__name__, destinations={})

    def _settle(
        self, record: Mapping[str, Any], result: RecordResult, deliveries: Mapping[str, Delivery]
    ) -> RecordResult:
        """A sent record's status: failed if any destination must retry it (it is
        dead-lettered, if need be, once every destination has settled), dead-lettered if a
        destination rejected it, otherwise ok."""
        sequence, outcome = result.sequence, result.outcome
        retry = {d: x for d, x in deliveries.items() if x.handled in ("failed", "waiting")}
        if retry:
            reason = "; ".join(f"{d}: {x}" for d, x in retry.items())
            return RecordResult(sequence, "failed", reason, outcome, deliveries)
        rejected = {d: x for d, x in deliveries.items() if x.handled == "rejected"}
        if not rejected:
            return RecordResult(sequence, "ok", "", outcome, deliveries)
        reason = "; ".join(f"rejected by {d}: {x.detail}" for d, x in rejected.items())
        return self._dead_lettered(
            record,
            RecordResult(sequence, "dead-lettered", reason, outcome, deliveries),
            error=next(iter(rejected.values())).error,
            destinations={d: str(x) for d, x in deliveries.items()},
        )

    def _dead_lettered(
        self, record: Any, result: RecordResult, *, error: str, destinations: Mapping[str, str]
    ) -> RecordResult:
        """``result``, once the record is in the dead-letter sink; failed (to be retried) if
        the sink cannot take it: a record is let go only once it is safe somewhere."""
        log.error("dead-lettering record %s: %s", result.sequence, result.reason)
        try:
            self.dead_letters.put(
                region=self.region,
                record=record if isinstance(record, Mapping) else {"record": record},
                reason=result.reason,
                error=error,
                destinations=destinations,
            )
        except Exception as failure:
            log.warning("dead-lettering record %s failed: %s", result.sequence, failure)
            self.metrics.incr("apply_failures", {"region": self.region})
            reason = f"dead-lettering failed: {type(failure).__name__}: {failure}"
            return RecordResult(
                result.sequence, "failed", reason, result.outcome, result.deliveries
            )
        self.metrics.incr("dead_lettered", {"region": self.region, "error": error})
        return result

    # -- sending ----------------------------------------------------------------------------

    def _send_all(self, lanes: Mapping[str, list[_Send]]) -> dict[int, dict[str, Delivery]]:
        """Send every lane (key) in parallel; within a lane, in order. Returns what happened
        at each destination, per record index."""
        futures = [self.pool.submit(self._send_lane, _coalesce(lane)) for lane in lanes.values()]
        deliveries: dict[int, dict[str, Delivery]] = {}
        for future in futures:
            deliveries.update(future.result())
        return deliveries

    def _send_lane(self, lane: list[_Send]) -> dict[int, dict[str, Delivery]]:
        """Each version of one key to every one of its destinations, in order. An error at one
        destination never keeps the version from the others; a transient one holds the key's
        later versions back at that destination only (they would overtake it on retry)."""
        failed_at: dict[str, str] = {}  # destination -> the record that failed there
        out: dict[int, dict[str, Delivery]] = {}
        for send in lane:
            deliveries: dict[str, Delivery] = {}
            for destination in send.destinations:
                if destination in failed_at:
                    earlier = f"behind record {failed_at[destination]}"
                    deliveries[destination] = Delivery("waiting", earlier)
                    continue
                try:
                    deliveries[destination] = self._apply(destination, send)
                except Exception as error:
                    kind = type(error).__name__
                    if is_permanent(error):
                        labels = {"source": self.region, "destination": destination}
                        self.metrics.incr("rejected", labels)
                        deliveries[destination] = Delivery("rejected", f"{kind}: {error}", kind)
                        continue
                    sequence = _sequence_of(send.record) or f"#{send.index}"
                    log.warning(
                        "replicating record %s to %s failed: %s", sequence, destination, error
                    )
                    self.metrics.incr("apply_failures", {"region": self.region})
                    deliveries[destination] = Delivery("failed", f"{kind}: {error}", kind)
                    failed_at[destination] = sequence
            out[send.index] = deliveries
        return out

    def _apply(self, destination: str, send: _Send) -> Delivery:
        table = self.tables[destination]
        version = send.version
        key = self.settings.keys_of(version.data)
        labels = {"source": self.region, "destination": destination}
        here = send.role if destination == self.region and send.role != "forward" else None
        if send.fast is not None:
            result = table.write(key, self._item(version), send.fast)
            if result.ok:
                return self._applied(version, "written", labels)
            current_item = result.current
        else:
            current_item = table.get(key)
        for _ in range(MAX_ATTEMPTS):
            current = read_item(current_item, settings=self.settings)
            decision = decide(current, version, settings=self.settings, here=here)
            if isinstance(decision, Skip):
                self.metrics.incr(f"skipped_{decision.reason}", labels)
                return Delivery("skipped", decision.reason)
            if isinstance(decision, Annotate):
                result = table.annotate(key, encode_meta(decision.meta), decision.precondition)
                if result.ok:
                    return self._applied(version, "annotated", labels)
                self.metrics.incr("precondition_retries", labels)
                current_item = result.current
                continue
            if decision.conflict is not None:
                self._check_size(decision.version)  # a merge can outgrow both of its inputs
            result = table.write(key, self._item(decision.version), decision.precondition)
            if result.ok:
                if decision.conflict is not None:
                    self.metrics.incr(
                        "conflicts", {**labels, "resolver": self.settings.resolver.name}
                    )
                return self._applied(version, "merged" if decision.conflict else "written", labels)
            self.metrics.incr("precondition_retries", labels)
            current_item = result.current
        raise RuntimeError(f"gave up after {MAX_ATTEMPTS} contended attempts on {key}")

    def _item(self, version: Version) -> dict[str, Any]:
        return encode_item(version, horizon_ms=self.settings.horizon_ms)

    def _applied(self, version: Version, how: str, labels: Mapping[str, str]) -> Delivery:
        self.metrics.incr("applied", {**labels, "how": how})
        if not version.meta.adopted:
            # An adopted raw write's timestamp is the stream's approximate time (whole seconds,
            # on AWS and moto), not when it was written: no lag to measure.
            lag_ms = self.now_ms() - hlc.wall_ms(version.meta.hlc)
            self.metrics.observe("replication_lag_seconds", labels, max(lag_ms, 0) / 1000)
        return Delivery("applied", how)


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
            send = _Send(send.index, send.record, send.version, send.destinations, None, send.role)
        out.append(send)
    return out


def _sequence_of(record: Mapping[str, Any]) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    value = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) else None
