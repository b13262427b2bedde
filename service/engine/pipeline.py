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
import threading
import time
from collections import defaultdict, deque
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Any, Literal, TypeVar

from service.adapters.conflicts import ConflictSink
from service.core import hlc
from service.core.adopt import Adopt, Change, Drop, Forward, Outcome, Restore, translate
from service.core.apply import (
    Annotate,
    Defer,
    ExpectAbsent,
    ExpectMeta,
    Precondition,
    Skip,
    Write,
    supersedes,
)
from service.core.conflicts import conflict_entry, is_conflict
from service.core.places import KeyState, commit_for, decide_key, read_key
from service.core.records import parse_record
from service.core.residency import decide_for, residency_of
from service.core.stored import Settings, Stamped, read_item
from service.core.tombstones import Deletion, commit_kind, decode_store_item, explain_remove
from service.core.values import same_item, size_of
from service.core.version import META_ATTR, Order, Version, compare, encode_item, encode_meta
from service.errors import GeorepError, ItemTooLargeError
from service.ports import DeadLetterSink, Metrics, Table

log = logging.getLogger("georep")

MAX_ITEM_BYTES = 400 * 1024
MAX_ATTEMPTS = 25
# A delivery `decide` deferred (`Defer`): the destination holds a raw item not adopted yet.
RAW_NOT_ADOPTED = "RawItemNotAdopted"
# A patient Replicator's deferred delivery is tried again after this long, doubling to the cap.
DEFER_FIRST_S = 0.05
DEFER_CAP_S = 2.0
# A patient wait longer than this is logged as a warning (and again each time as long again):
# a wait that never ends is otherwise silent (session 37's long chaos run).
DEFER_WARN_S = 30.0

T = TypeVar("T")


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
    # With the tombstone store, at an adoption's own region: a version of that region no
    # stream record will forward (a successor tombstone written to the store alone, where the
    # table holds no item to change), which the other regions receive instead of the adoption.
    replacement: Version | None = field(default=None, compare=False)

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
    be applied as it is, a destination that refuses this very request (service/adapters/dynamo.py
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
    # The no-read path at the destinations other than the source region (`fast_precondition`)
    fast: Precondition | None
    # "adoption": adopts a raw write of the source's own stream; "restore": a tombstone
    # removed by hand, put back in the source's own table (see `decide`'s ``here``)
    role: Literal["forward", "adoption", "restore"] = "forward"
    # The no-read path in the source region itself, for an adoption or a restore
    here: _Fast | None = None


@dataclass(frozen=True)
class _Fast:
    """One request that applies a version when the destination holds what it most likely
    holds: a conditional write, or (``annotate``) a conditional update of ``_georep`` alone.
    Only where `decide` on any item the condition admits would make exactly that request."""

    precondition: Precondition
    annotate: bool = False


def fast_precondition(change: Change, settings: Settings | None = None) -> Precondition | None:
    """The no-read path at another region, for a fresh local write or an adopted raw write: if
    the destination still holds what the source held before this write (the record's old
    image: absent, that metadata, or no metadata at all), the new version succeeds it and one
    conditional write applies it. Otherwise the condition fails, DynamoDB hands back the
    current item (ALL_OLD) and the core decides: never more requests than a read first.

    Why one request is what `decide` would do on any item the condition admits: the version
    succeeds its old image's metadata (a fresh write and an adoption both do), so it is AFTER a
    stamped item holding that metadata and not stale for a raw item that copied it (or none).
    """
    if change.old is None:
        return ExpectAbsent()
    if settings is not None and settings.resolver.keeps_deleted_data:
        # NOTE: under merge rules `decide` defers a version that meets a raw item (`Defer`),
        # and a raw item can hold exactly the metadata expected (none, or what a raw
        # read-modify-write copied back): only absence is certain without a read.
        return None
    return ExpectMeta(change.old.get(META_ATTR))


def _fast_here(change: Change, version: Version, settings: Settings) -> _Fast | None:
    """The no-read path for an adoption in its own region (raw writes as cheap as stamped
    ones: issue 9). `decide` with ``here="adoption"`` on the items these conditions admit:

    * a raw delete: the item is still absent, and a tombstone is written (`ExpectAbsent`);
    * a raw put whose new image has no ``_georep``: the item is that raw write, or a later
      raw write without metadata (`ExpectMeta(None)`); `decide` writes the version over the
      same data or annotates different data, and an annotation of the same data is the same
      bytes as the write (`Table.annotate` also drops a stale ``_georep_ttl``).

    A new image that copied metadata back goes the slow way (read, decide), and so does a raw
    put under merge rules: there `decide` merges a later raw write's data with the version,
    which needs the data read."""
    if change.new is None:
        return _Fast(ExpectAbsent())
    if META_ATTR in change.new or settings.resolver.keeps_deleted_data:
        return None
    return _Fast(ExpectMeta(None), annotate=True)


@dataclass
class _Task:
    """One record's version, to one destination. ``gate``: an adoption under merge rules
    reaches another region only once its own region's table has it (`_Gate`)."""

    send: _Send
    destination: str
    fast: _Fast | None
    here: Literal["adoption", "restore"] | None
    batch: Submitted
    gate: _Gate | None = None
    deferred: int = 0  # attempts `decide` deferred so far (a patient Replicator's backoff)
    waited: float = 0.0  # seconds of backoff so far, and when the next warning is due
    warn_at: float = DEFER_WARN_S


@dataclass
class _Gate:
    """Opens when an adoption has been applied in its own region (``ok``), or closes for good
    if that failed (the record is retried whole). Under merge rules a version that meets a
    raw item not adopted yet keeps the raw data beside it as written later (`beside_raw`): if
    another region received the adoption first and wrote over it, that write, reaching the
    raw write's own region while its adoption had not, would bring the raw value back over
    the write that replaced it (test_a_raw_writes_adoption_reaches_its_own_region_first_...).
    Lanes waiting on the gate, by key, restart when it settles."""

    settled: bool = False
    ok: bool = False
    # The own region did not apply the adoption as such: it wrote a successor (forwarded from
    # its own record) or found it covered (`Skip("covered")`). The other regions must not
    # receive it either: it would be a second, later-timed version of data they get anyway.
    superseded: bool = False
    # With the tombstone store: what the other regions receive instead (`Delivery`).
    replacement: Version | None = None
    waiting: list[tuple[object, str, str]] = field(default_factory=list)


@dataclass
class _Lane:
    """The versions of one key waiting for one destination, in stream order. ``failed_at``:
    the record that failed there; later versions are not attempted until the scope is
    forgotten (they would overtake it when it is delivered again)."""

    tasks: deque[_Task] = field(default_factory=deque)
    running: bool = False
    failed_at: str | None = None


Settled = Callable[[int, RecordResult], None]


@dataclass
class _StoreReads:
    """What a batch's store reads found (`Replicator._store_reads`), by key (its JSON)."""

    wanted: dict[str, dict[str, Any]] = field(default_factory=dict)  # the keys to read
    stored: dict[str, Mapping[str, Any]] = field(default_factory=dict)  # the store's items
    items: dict[str, Mapping[str, Any] | None] = field(default_factory=dict)  # the table's

    def deletion_of(self, change: Change, *, settings: Settings) -> Deletion | None:
        """For a REMOVE: which of georep's own deletes removed its old image, if the store
        recorded one (`translate`)."""
        if change.event != "REMOVE" or change.old is None:
            return None
        stored = self.stored.get(json.dumps(change.keys, sort_keys=True, default=str))
        if stored is None:
            return None
        store = decode_store_item(stored, regions=settings.region_set)
        return explain_remove(store, change.old)

    def beside_of(self, change: Change, *, settings: Settings) -> Stamped | None:
        """For an INSERT of a stamped image: the store's tombstone if the table still holds
        that image beside it (an application's copy or restore, `translate`)."""
        if change.event != "INSERT" or change.new is None or META_ATTR not in change.new:
            return None  # a raw INSERT is adopted over what it replaced (`KeyState.current`)
        key = json.dumps(change.keys, sort_keys=True, default=str)
        stored = self.stored.get(key)
        if stored is None:
            return None
        state = read_key(self.items.get(key), stored, settings=settings)
        tombstone = state.tombstone
        if tombstone is None or state.item is None or not same_item(state.item, change.new):
            return None
        assert state.store_attr is not None
        return Stamped(version=tombstone, meta_attr=state.store_attr)


@dataclass(frozen=True)
class Prepared:
    """`Replicator.prepare` of a batch: its records parsed, and its store reads."""

    count: int
    parsed: list[Change | GeorepError]
    reads: _StoreReads
    unread: str | GeorepError | None  # why the store reads failed, if they did


class Submitted:
    """A batch handed to :meth:`Replicator.submit`: each record's result, filled in as it
    settles (every destination applied, skipped, rejected or failed it)."""

    def __init__(self, records: Sequence[Mapping[str, Any]], scope: object, on_settled: Settled):
        self.records = records
        self.scope = scope
        self.results: list[RecordResult] = [RecordResult(None, "ok") for _ in records]
        self._on_settled = on_settled
        self._waiting: dict[int, int] = {}  # record index -> destinations not reported yet
        self._deliveries: dict[int, dict[str, Delivery]] = defaultdict(dict)
        self._unsettled = len(records)
        self._lock = threading.Lock()
        self._done = threading.Event()
        if not records:
            self._done.set()

    def wait(self, timeout: float | None = None) -> bool:
        """Block until every record settled; False on timeout."""
        return self._done.wait(timeout)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def _settled(self, index: int, result: RecordResult) -> None:
        self.results[index] = result
        self._on_settled(index, result)
        with self._lock:
            self._unsettled -= 1
            finished = self._unsettled == 0
        if finished:
            self._done.set()

    def _expect(self, index: int, destinations: int) -> None:
        self._waiting[index] = destinations

    def _report(self, index: int, destination: str, delivery: Delivery) -> dict[str, Delivery]:
        """Record one destination's outcome; all of the record's, once the last came in."""
        with self._lock:
            self._deliveries[index][destination] = delivery
            self._waiting[index] -= 1
            if self._waiting[index]:
                return {}
            del self._waiting[index]
            return self._deliveries.pop(index)


class Replicator:
    """Replicates one source region's stream records to every destination table.

    Records go through a window rather than batch by batch: :meth:`submit` queues each
    record's version on a lane per (key, destination) and returns at once; each lane writes its
    versions in order, every lane independently, at most ``write_concurrency`` requests in
    flight per destination. So the destinations of one record are written in parallel, a slow
    destination holds back only its own lanes, and a caller may submit the next batch while
    this one is in flight (the standalone consumer bounds the window by records and bytes).
    :meth:`process` is submit-and-wait, for the Lambda handler and the model.
    """

    def __init__(
        self,
        *,
        region: str,
        settings: Settings,
        tables: Mapping[str, Table],
        dead_letters: DeadLetterSink,
        metrics: Metrics,
        write_concurrency: int = 64,
        now_ms: Callable[[], int] = lambda: int(time.time() * 1000),
        executor: Executor | None = None,
        conflicts: ConflictSink | None = None,
        table: str | None = None,
        patient: bool = False,
    ) -> None:
        """``write_concurrency``: requests in flight per destination (a pool of threads each;
        boto3's connection pool must be at least as large). ``executor``, if given, runs every
        lane instead (an `InlineExecutor` makes the schedule deterministic for the model); it
        belongs to the caller. ``conflicts``: where each merge written is logged (none: only
        the ``conflicts`` metric counts them). ``table``: the configured table this replicator
        serves, recorded with each dead letter and conflict (several tables share those).

        ``patient``: a delivery `decide` defers (the destination holds a raw write its own
        consumer has not adopted yet) is tried again in its lane after a backoff, its record
        left in flight, instead of failing the record. The standalone consumer is patient: a
        failed record stops its shard's reads until it is retried from the checkpoint, and the
        adoption waited for can be a record beyond that batch in a region whose shard waits in
        turn on this one (a cycle: the chaos runs with the tombstone store that never
        converged). Adoptions never wait on another region, so patient lanes always drain.
        Not for the thread-less executor (the model, the Lambda handler), which must return."""
        self.region = region
        self.table = table
        self.settings = settings
        self.tables = tables
        self.dead_letters = dead_letters
        self.metrics = metrics
        self.now_ms = now_ms
        self.conflicts = conflicts
        self.write_concurrency = write_concurrency
        self._executor = executor
        self.patient = patient and executor is None
        # Scopes whose deferred deliveries fail at their next attempt (`stop_waiting`); None
        # in it: every scope.
        self._impatient: set[object] = set()
        self._pools: dict[str, ThreadPoolExecutor] = {}
        self._lanes: dict[tuple[object, str, str], _Lane] = {}
        self._lock = threading.Lock()
        self.others = tuple(r for r in settings.regions if r != region)
        # NOTE: no coalescing under residency rules: a version a destination never receives
        # never joins its redaction register there, so a dropped delete would leave one holder
        # its redacted attribute (test_a_delete_coalesced_away_still_clears_ssn_at_a_holder).
        self._coalesce = residency_of(settings) is None

    def close(self) -> None:
        """Finish what is in flight and stop the writer threads."""
        for pool in self._pools.values():
            pool.shutdown(wait=True)
        self._pools.clear()

    # -- a batch ----------------------------------------------------------------------------

    def process(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        """Replicate a batch and wait for it; one result per record, in order."""
        submitted = self.submit(records)
        submitted.wait()
        self.forget(submitted.scope)
        return submitted.results

    def prepare(self, records: Sequence[Mapping[str, Any]]) -> Prepared:
        """What `submit` needs to know of ``records`` before it plans them: each parsed, and
        the tombstone store's items their REMOVEs and copied INSERTs are explained by (one or
        two BatchGetItem requests for the batch). The consumer calls it in its read thread,
        right after GetRecords, so that its own loop, which renews the leases, makes no
        request for it."""
        parsed: list[Change | GeorepError] = []
        for record in records:
            try:
                parsed.append(parse_record(record))
            except GeorepError as error:
                parsed.append(error)
        # NOTE: the store reads of the whole batch, in one or two BatchGetItem requests. One
        # GetItem per record, in the consumer's own thread, took 7 s for a batch of 100 on a
        # loaded server: longer than the lease, so the consumer lost its own shard's lease
        # every turn and read the same batch again for good (chaos seed 2027, session 38).
        reads, unread = self._store_reads([c for c in parsed if isinstance(c, Change)])
        return Prepared(len(records), parsed, reads, unread)

    def submit(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        scope: object = None,
        on_settled: Settled = lambda index, result: None,
        prepared: Prepared | None = None,
    ) -> Submitted:
        """Start replicating ``records`` (in stream order) and return at once.

        ``on_settled(index, result)`` is called once per record when it has settled, from
        whichever thread settled it. ``scope`` groups the lanes a failure holds back: the
        records of one shard (per-key order holds within it); :meth:`forget` it once every
        record submitted in it settled, before records after a failure are submitted again.
        ``prepared``: `prepare` of these very records, done earlier (else done here).
        """
        submitted = Submitted(records, object() if scope is None else scope, on_settled)
        tasks: list[_Task] = []
        settled: list[tuple[int, RecordResult]] = []
        if prepared is None:
            prepared = self.prepare(records)
        assert prepared.count == len(records), "prepared for other records"
        self.metrics.incr("records_read", {"region": self.region}, len(records))
        parsed, reads, unread = prepared.parsed, prepared.reads, prepared.unread
        failed_keys: dict[str, str] = {}  # key -> the record whose store read failed
        for index, record in enumerate(records):
            change = parsed[index]
            try:
                if isinstance(change, GeorepError):
                    raise change
                key = json.dumps(change.keys, sort_keys=True, default=str)
                if key in failed_keys:  # per-key order: nothing overtakes the record not read
                    reason = f"behind record {failed_keys[key]}"
                    settled.append((index, _failed(record, reason)))
                    continue
                if isinstance(unread, GeorepError) and key in reads.wanted:
                    raise unread  # refused, as the read of this one record would have been
                if isinstance(unread, str) and key in reads.wanted:
                    # NOTE: a store read failing here stopped `georep run` (chaos run, session
                    # 37, a partition of its own region). The record fails, so it is retried.
                    failed_keys[key] = _sequence_of(record) or f"#{index}"
                    log.warning("record %s: %s", failed_keys[key], unread)
                    settled.append((index, _failed(record, unread)))
                    continue
                outcome = translate(
                    change,
                    region=self.region,
                    settings=self.settings,
                    deletion=reads.deletion_of(change, settings=self.settings),
                    beside=reads.beside_of(change, settings=self.settings),
                )
                send = self._plan(index, record, change, outcome)
            except GeorepError as error:
                settled.append((index, self.refuse(record, error)))
                continue
            result = RecordResult(_sequence_of(record), "ok", outcome=outcome)
            if send is None:
                settled.append((index, result))
                continue
            submitted.results[index] = result
            submitted._expect(index, len(send.destinations))
            # NOTE: with the tombstone store every adoption is gated: its own region may
            # supersede it with a successor written to the store alone, which no record
            # forwards, so the other regions must wait to receive that instead.
            gated = send.role == "adoption" and (
                self.settings.resolver.keeps_deleted_data or self.settings.tombstone_store
            )
            gate = _Gate() if gated and self.region in send.destinations else None
            for destination in send.destinations:
                here = send.role if destination == self.region and send.role != "forward" else None
                fast = send.here if here else (_Fast(send.fast) if send.fast else None)
                task = _Task(send, destination, fast, here, submitted)
                if gate is not None:
                    task.gate = gate  # the own region's task opens it, the others wait on it
                tasks.append(task)
        for index, result in settled:
            submitted._settled(index, result)
        self._enqueue(tasks)
        return submitted

    def _store_reads(
        self, changes: Sequence[Change]
    ) -> tuple[_StoreReads, str | GeorepError | None]:
        """With the tombstone store, what `translate` needs to know of it for ``changes``: the
        store's items of the keys REMOVEd or INSERTed with a stamped image (one consistent
        batch read), and the table's items of those INSERTs' keys that the store holds
        something for (a second one). Returns the reads and, if they failed, why: a reason (a
        transient error: those records fail) or the permanent error (they are refused)."""
        reads = _StoreReads()
        if not self.settings.tombstone_store:
            return reads, None
        for change in changes:
            if (change.event == "REMOVE" and change.old is not None) or (
                change.event == "INSERT" and change.new is not None and META_ATTR in change.new
            ):
                key = json.dumps(change.keys, sort_keys=True, default=str)
                reads.wanted.setdefault(key, self.settings.keys_of(change.keys))
        if not reads.wanted:
            return reads, None
        table = self.tables[self.region]
        try:
            keys = list(reads.wanted)
            stored = table.get_stored_many([reads.wanted[k] for k in keys])
            reads.stored = {k: item for k, item in zip(keys, stored, strict=True) if item}
            inserted = {
                json.dumps(c.keys, sort_keys=True, default=str)
                for c in changes
                if c.event == "INSERT"
            }
            beside = [k for k in keys if k in reads.stored and k in inserted]
            if beside:
                items = table.get_many([reads.wanted[k] for k in beside])
                reads.items = dict(zip(beside, items, strict=True))
        except GeorepError as error:
            return reads, error
        except Exception as error:
            return reads, f"reading the tombstone store: {type(error).__name__}: {error}"
        return reads, None

    def stop_waiting(self, scope: object = None) -> None:
        """Let the deferred deliveries of ``scope`` (None: of every scope) fail at their next
        attempt, within `DEFER_CAP_S`: the consumer stops, or lost the shard's lease, and
        needs its records in flight settled. New deferrals in it fail at once."""
        with self._lock:
            self._impatient.add(scope)

    def wait_again(self) -> None:
        """Undo `stop_waiting` for every scope (the consumer reads again after `finish`)."""
        with self._lock:
            self._impatient.discard(None)

    def _waits(self, task: _Task) -> bool:
        """Whether ``task``, just deferred, waits in its lane (`patient`) rather than fails."""
        with self._lock:
            impatient = None in self._impatient or task.batch.scope in self._impatient
        if self.patient and task.here is None and impatient:
            log.debug("record %s stops waiting: its shard stops", _sequence_of(task.send.record))
        return self.patient and task.here is None and not impatient

    def _retry_later(self, lane_key: tuple[object, str, str], task: _Task, reason: str) -> None:
        """Put deferred ``task`` back at the head of its lane (still running: nothing overtakes
        it) and run the lane again after the backoff."""
        delay = min(DEFER_FIRST_S * 2 ** min(task.deferred, 16), DEFER_CAP_S)
        task.deferred += 1
        sequence = _sequence_of(task.send.record) or f"#{task.send.index}"
        if task.deferred == 1:
            log.info("record %s waits at %s: %s", sequence, task.destination, reason)
            self.metrics.incr("deferred_waits", {"region": self.region})
        elif task.waited >= task.warn_at:
            log.warning(
                "record %s has waited %.0f s at %s: %s",
                sequence,
                task.waited,
                task.destination,
                reason,
            )
            task.warn_at *= 2
        task.waited += delay
        with self._lock:
            self._lanes[lane_key].tasks.appendleft(task)

        def again() -> None:
            try:
                future = self._executor_for(lane_key[2]).submit(self._run_lane, lane_key)
            except RuntimeError:  # the pool is shut down (close): nothing waits any more
                return
            future.add_done_callback(_report_crash)

        timer = threading.Timer(delay, again)
        timer.daemon = True
        timer.start()

    def forget(self, scope: object) -> None:
        """Drop what failures in ``scope`` hold back (every record of it must have settled)."""
        with self._lock:
            self._impatient.discard(scope)
            for lane_key in [k for k in self._lanes if k[0] == scope]:
                lane = self._lanes[lane_key]
                lane.failed_at = None  # a lane still running deletes itself once empty
                if not lane.running and not lane.tasks:
                    del self._lanes[lane_key]

    def _plan(
        self, index: int, record: Mapping[str, Any], change: Change, outcome: Outcome
    ) -> _Send | None:
        match outcome:
            case Forward(version=v):
                self._check_size(v)
                return _Send(
                    index, record, v, self.others, fast_precondition(change, self.settings)
                )
            case Adopt(version=v):
                self._check_size(v)
                self.metrics.incr("raw_writes_adopted", {"region": self.region})
                return _Send(
                    index,
                    record,
                    v,
                    self.settings.regions,
                    fast_precondition(change, self.settings),
                    role="adoption",
                    here=_fast_here(change, v, self.settings),
                )
            case Restore(version=v):
                return _Send(
                    index,
                    record,
                    v,
                    (self.region,),
                    None,
                    role="restore",
                    here=_Fast(ExpectAbsent()),
                )
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
        path = _Fast(fast) if fast is not None else None
        return {d: self._attempt(d, send, path, None) for d in destinations}

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
                table=self.table,
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

    # -- lanes ------------------------------------------------------------------------------

    def _enqueue(self, tasks: Sequence[_Task]) -> None:
        """Queue each task on its (scope, key, destination) lane, coalescing a queued version
        the new one succeeds; start the lanes that are idle."""
        start: list[tuple[object, str, str]] = []
        coalesced: list[_Task] = []
        with self._lock:
            for task in tasks:
                key = json.dumps(
                    self.settings.keys_of(task.send.version.data), sort_keys=True, default=str
                )
                lane_key = (task.batch.scope, key, task.destination)
                lane = self._lanes.setdefault(lane_key, _Lane())
                if lane.tasks and self._coalesce and _coalescible(lane.tasks[-1], task):
                    dropped = lane.tasks.pop()
                    coalesced.append(dropped)
                    if task.here is None:
                        # The destination still holds what preceded the dropped version.
                        task.fast = dropped.fast
                lane.tasks.append(task)
                if not lane.running:
                    lane.running = True
                    start.append(lane_key)
        for task in coalesced:
            labels = {"source": self.region, "destination": task.destination}
            self.metrics.incr("coalesced", labels)
            self._report(task, Delivery("skipped", "coalesced"))
        for lane_key in start:
            future = self._executor_for(lane_key[2]).submit(self._run_lane, lane_key)
            if future.done():
                future.result()  # run inline: what escaped a lane is the caller's
            else:
                future.add_done_callback(_report_crash)

    def _executor_for(self, destination: str) -> Executor:
        if self._executor is not None:
            return self._executor
        with self._lock:
            pool = self._pools.get(destination)
            if pool is None:
                pool = self._pools[destination] = ThreadPoolExecutor(
                    max_workers=self.write_concurrency,
                    thread_name_prefix=f"georep-{destination}",
                )
        return pool

    def _run_lane(self, lane_key: tuple[object, str, str]) -> None:
        """Write a lane's versions one after the other until it is empty."""
        while True:
            with self._lock:
                lane = self._lanes[lane_key]
                if not lane.tasks:
                    lane.running = False
                    if lane.failed_at is None:
                        del self._lanes[lane_key]
                    return
                task = lane.tasks[0]
                gate = task.gate if task.here is None else None
                if gate is not None and not gate.settled and lane.failed_at is None:
                    if lane_key not in gate.waiting:
                        gate.waiting.append(lane_key)  # `_open` restarts the lane
                    lane.running = False
                    return
                lane.tasks.popleft()
                failed_at = lane.failed_at
            if failed_at is not None:
                delivery = Delivery("waiting", f"behind record {failed_at}")
            elif gate is not None and not gate.ok:
                delivery = Delivery("waiting", "behind its adoption in its own region")
            elif gate is not None and gate.replacement is not None:
                instead = replace(task.send, version=gate.replacement)
                delivery = self._attempt(task.destination, instead, None, None)
            elif gate is not None and gate.superseded:
                delivery = Delivery("skipped", "superseded in its own region")
            else:
                delivery = self._attempt(task.destination, task.send, task.fast, task.here)
            if delivery.error == RAW_NOT_ADOPTED and self._waits(task):
                self._retry_later(lane_key, task, delivery.detail)
                return
            if delivery.handled in ("failed", "waiting") and failed_at is None:
                with self._lock:
                    lane.failed_at = _sequence_of(task.send.record) or f"#{task.send.index}"
            if task.gate is not None and task.here is not None:
                self._open(
                    task.gate,
                    ok=delivery.handled not in ("failed", "waiting"),
                    superseded=delivery.detail in ("succeeded", "covered"),
                    replacement=delivery.replacement,
                )
            self._report(task, delivery)

    def _open(
        self,
        gate: _Gate,
        *,
        ok: bool,
        superseded: bool = False,
        replacement: Version | None = None,
    ) -> None:
        """Settle ``gate`` and restart the lanes waiting on it."""
        waiting: list[tuple[object, str, str]] = []
        with self._lock:
            gate.settled, gate.ok, gate.superseded = True, ok, superseded
            gate.replacement = replacement
            for lane_key in gate.waiting:
                # NOTE: a lane that `_enqueue` restarted meanwhile is running (and finds the
                # gate settled): a second runner would break the lane's order.
                lane = self._lanes.get(lane_key)
                if lane is not None and not lane.running:
                    lane.running = True
                    waiting.append(lane_key)
            gate.waiting = []
        for lane_key in waiting:
            future = self._executor_for(lane_key[2]).submit(self._run_lane, lane_key)
            if future.done():
                future.result()
            else:
                future.add_done_callback(_report_crash)

    def _report(self, task: _Task, delivery: Delivery) -> None:
        batch, index = task.batch, task.send.index
        if log.isEnabledFor(logging.DEBUG):
            log.debug(
                "record %s (%s, %s) at %s: %s",
                _sequence_of(task.send.record) or f"#{index}",
                task.here or "forward",
                json.dumps(self.settings.keys_of(task.send.version.data), default=str),
                task.destination,
                delivery,
            )
        deliveries = batch._report(index, task.destination, delivery)
        if deliveries:
            ordered = {d: deliveries[d] for d in task.send.destinations}
            batch._settled(index, self._settle(task.send.record, batch.results[index], ordered))

    def _attempt(
        self,
        destination: str,
        send: _Send,
        fast: _Fast | None,
        here: Literal["adoption", "restore"] | None,
    ) -> Delivery:
        """Apply ``send`` at ``destination``; an error becomes a rejected or failed delivery."""
        try:
            return self._apply(destination, send.version, fast, here)
        except Exception as error:
            kind = type(error).__name__
            labels = {"source": self.region, "destination": destination}
            if is_permanent(error):
                self.metrics.incr("rejected", labels)
                return Delivery("rejected", f"{kind}: {error}", kind)
            sequence = _sequence_of(send.record) or f"#{send.index}"
            log.warning("replicating record %s to %s failed: %s", sequence, destination, error)
            self.metrics.incr("apply_failures", {"region": self.region})
            return Delivery("failed", f"{kind}: {error}", kind)

    def _apply(
        self,
        destination: str,
        version: Version,
        fast: _Fast | None,
        here: Literal["adoption", "restore"] | None,
    ) -> Delivery:
        table = self.tables[destination]
        key = self.settings.keys_of(version.data)
        labels = {"source": self.region, "destination": destination}
        if residency_of(self.settings) is not None:
            # NOTE: no one-request path under residency rules: what a destination receives
            # depends on what it holds (the register is joined with its own), so every write
            # is read, decided (`decide_for`) and conditional (docs/decisions.md).
            fast = None
        in_store = self.settings.tombstone_store
        if in_store and fast is not None and not _update_of_a_live_item(fast, version):
            # NOTE: with the tombstone store only an update of a stamped item needs no read:
            # the store cannot hold a tombstone that item does not succeed (core/places.py).
            fast = None
        if fast is not None:
            if fast.annotate:
                result = table.annotate(key, encode_meta(version.meta), fast.precondition)
                how = "annotated"
            else:
                result = table.write(key, self._item(version), fast.precondition)
                how = "written"
            if result.ok:
                return self._applied(version, how, labels)
            current_item = result.current
        else:
            current_item = table.get(key)
        stored = table.get_stored(key) if in_store else None
        for _ in range(MAX_ATTEMPTS):
            state = None
            if in_store:
                state = read_key(current_item, stored, settings=self.settings)
                decision = decide_key(
                    state, version, destination=destination, settings=self.settings, here=here
                )
            else:
                current = read_item(current_item, settings=self.settings)
                decision = decide_for(
                    current, version, destination=destination, settings=self.settings, here=here
                )
            if isinstance(decision, Skip):
                self.metrics.incr(f"skipped_{decision.reason}", labels)
                instead = _state_succeeding(state, version, here)
                return Delivery("skipped", decision.reason, replacement=instead)
            if isinstance(decision, Defer):
                # Retried like a transient error, until the destination's own consumer has
                # adopted the raw item (docs/design.md, "Raw writes under merge rules").
                self.metrics.incr("deferred_behind_raw", labels)
                return Delivery("failed", decision.reason, RAW_NOT_ADOPTED)
            if isinstance(decision, Annotate):
                result = table.annotate(key, encode_meta(decision.meta), decision.precondition)
                if result.ok:
                    return self._applied(version, "annotated", labels)
                self.metrics.incr("precondition_retries", labels)
                current_item = result.current
                stored = table.get_stored(key) if in_store else None
                continue
            if decision.conflict is not None:
                self._check_size(decision.version)  # a merge can outgrow both of its inputs
            if state is not None:
                steps = commit_for(
                    state,
                    decision.version,
                    local=False,
                    table=self.table or "",
                    settings=self.settings,
                )
                committed = table.commit(key, table=steps[0], store=steps[1]).ok
                self.metrics.incr(
                    "store_commits", {**labels, "kind": commit_kind(steps)}, committed
                )
            else:
                result = table.write(key, self._item(decision.version), decision.precondition)
                committed = result.ok
            if committed:
                if decision.conflict is not None and is_conflict(*decision.conflict):
                    self.metrics.incr(
                        "conflicts", {**labels, "resolver": self.settings.resolver.name}
                    )
                    self._log_conflict(destination, key, decision)
                how = "merged" if decision.conflict else "written"
                if here is not None and supersedes(decision, version):
                    how = "succeeded"  # a successor of the adoption, forwarded from its record
                    if state is not None and decision.version.meta.deleted:
                        # A tombstone in the store: no record forwards it (`Delivery`). The
                        # table's step is a check, or the Delete of the item it succeeds, whose
                        # REMOVE is replication's own (an echo, recorded so in the store).
                        applied = self._applied(version, how, labels)
                        return replace(applied, replacement=decision.version)
                return self._applied(version, how, labels)
            self.metrics.incr("precondition_retries", labels)
            if state is not None:
                current_item, stored = table.get(key), table.get_stored(key)
            else:
                current_item = result.current
        raise RuntimeError(f"gave up after {MAX_ATTEMPTS} contended attempts on {key}")

    def _log_conflict(self, destination: str, key: Mapping[str, Any], decision: Write) -> None:
        """Log the merge ``decision`` just wrote at ``destination``. Best effort: a sink that
        fails is logged and counted, never fails the record (the merge is written already)."""
        if self.conflicts is None or decision.conflict is None:
            return
        existing, incoming = decision.conflict
        try:
            self.conflicts.put(
                conflict_entry(
                    key=key,
                    destination=destination,
                    source=self.region,
                    resolver=self.settings.resolver.name,
                    existing=existing,
                    incoming=incoming,
                    merged=decision.version,
                    at=self.now_ms() // 1000,
                    table=self.table,
                )
            )
        except Exception as failure:
            log.warning("logging a conflict at %s on %s failed: %s", destination, key, failure)
            labels = {"source": self.region, "destination": destination}
            self.metrics.incr("conflict_log_failures", labels)

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


def _state_succeeding(
    state: KeyState | None,
    adoption: Version,
    here: Literal["adoption", "restore"] | None,
) -> Version | None:
    """At an adoption's own region, with the tombstone store, when the adoption is stale: the
    key's state in the region, if it succeeds the adoption. It may hold a successor written to
    the store alone on an earlier attempt (`Delivery.replacement`) whose deliveries to the
    other regions were lost (a crash, a destination that failed or deferred, and the record
    retried), merged since with other versions, or with a live item written over it; no
    record forwards that successor. Sending the region's state, which succeeds the adoption,
    is always safe: a region that holds it already skips it, any other merges it as it would
    the versions it holds (a later write of this region, which its own record forwards too,
    then arrives twice: the second is a duplicate)."""
    if state is None or here != "adoption":
        return None
    current = state.current
    if not isinstance(current, Stamped):
        return None
    if compare(current.version.meta, adoption.meta) is not Order.AFTER:
        return None
    return current.version


def _update_of_a_live_item(fast: _Fast, version: Version) -> bool:
    """Whether the no-read path writes a live version over a stamped item (an update)."""
    precondition = fast.precondition
    return (
        not fast.annotate
        and not version.meta.deleted
        and isinstance(precondition, ExpectMeta)
        and precondition.value is not None
    )


def _failed(record: Mapping[str, Any], reason: str) -> RecordResult:
    """A record that could not be attempted now (retried from the checkpoint)."""
    return RecordResult(_sequence_of(record), "failed", reason)


def _report_crash(future: Future[None]) -> None:
    error = future.exception()
    if error is not None:  # a bug: the lane's records never settle, and the shard stalls
        log.critical("a replication lane stopped on an unexpected error", exc_info=error)


def _coalescible(queued: _Task, task: _Task) -> bool:
    """Whether applying only ``task`` ends where applying ``queued`` then ``task`` would: the
    later version succeeds the queued one, and both are applied the same way (an adoption in
    its own region is not coalesced with a forwarded version)."""
    return (
        queued.here == task.here
        and queued.gate is None
        and compare(task.send.version.meta, queued.send.version.meta) is Order.AFTER
    )


def _sequence_of(record: Mapping[str, Any]) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    value = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) else None
