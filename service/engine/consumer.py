"""The standalone consumer: one process per region, polling its own table's stream.

Lambda's event source mapping does the same job at scale (service/surfaces/lambda_handler.py);
both hand records to the same :class:`service.engine.pipeline.Replicator`.

:class:`StreamConsumer` is the polling loop over its ports (a DynamoDB client for DescribeTable,
a streams client, the checkpoint table, a batch replicator, a clock and a random source), so the
property tests drive it against service/adapters/streams_memory.py;
:class:`service.engine.wiring.Consumer` wires it to boto3 from the configuration. What happens
to each kind of trouble:

* a record a destination did not apply (throttled past botocore's retries, access denied...):
  the shard is checkpointed up to it by service/engine/checkpoint.py's rule (the one the
  property model proves) and read again from there after a backoff; other shards go on;
* an AWS error from the stream, the checkpoint or dead-letter table, or DescribeTable, after
  botocore's own retries: counted in ``stream_errors`` (labelled with the error code), logged,
  and retried after a backoff;
* records the stream lost (retention, a stream disabled then enabled again): logged, counted
  (``trimmed_data``, ``stream_gaps``) and the region marked as needing repair;
* what waiting cannot fix (credentials missing or rejected, the table deleted) raises
  :class:`service.errors.ConsumerHaltedError`; ``georep run`` prints it and exits 1.

Each of these is also the consumer's "last error" in its status (service/engine/heartbeat.py), which
it saves in the checkpoint table at most every few seconds for ``georep status``; failing to
save it is logged and never stops replication.

Backoffs are exponential with jitter and capped, per shard (a failing shard does not slow the
others) and for the stream as a whole.
"""

from __future__ import annotations

import logging
import math
import random
import threading
import time
from collections import deque
from collections.abc import Callable, Iterable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    NoCredentialsError,
    PartialCredentialsError,
)

from service.adapters.dynamo import require
from service.core.values import size_of
from service.engine.checkpoint import CheckpointTracker
from service.engine.heartbeat import StatusTracker
from service.engine.leases import LeaseKeeper
from service.engine.pipeline import RAW_NOT_ADOPTED, InlineExecutor, RecordResult
from service.engine.streams import AWS_ERRORS, NOT_FOUND, Batch, StreamReader, error_code
from service.errors import ConsumerHaltedError
from service.ports import CheckpointTable, Metrics, StatusStore

log = logging.getLogger("georep.consumer")


# Credentials that are missing or that AWS rejects do not get better by waiting. (AccessDenied
# does: a policy can be fixed while the consumer backs off.)
REJECTED_CREDENTIALS = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
    }
)


def halting_reason(error: BaseException) -> str | None:
    """Why ``error`` cannot be waited out, or None if retrying later may succeed."""
    if isinstance(error, NoCredentialsError | PartialCredentialsError | CredentialRetrievalError):
        return f"no usable AWS credentials ({error})"
    if isinstance(error, ClientError) and error_code(error) in REJECTED_CREDENTIALS:
        return f"AWS rejected the credentials ({error})"
    return None


def retry_delay(failures: int, *, base: float, cap: float, jitter: Callable[[], float]) -> float:
    """Exponential backoff with "equal jitter": between half and all of ``base * 2**(failures-1)``,
    capped at ``cap``. Never zero, so a failing call can never spin."""
    delay = min(cap, base * 2.0 ** min(failures - 1, 32))
    return delay / 2 + jitter() * delay / 2


def _stream_enabled(table: Mapping[str, Any]) -> bool:
    return bool(table.get("StreamSpecification", {}).get("StreamEnabled", False))


class WindowReplicator(Protocol):
    """What the consumer hands records to (service.engine.pipeline.Replicator)."""

    def prepare(self, records: Sequence[Mapping[str, Any]]) -> object | None:
        """What submit will need of ``records`` that takes requests (called in a read thread;
        None: nothing)."""
        ...

    def submit(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        scope: object,
        on_settled: Callable[[int, RecordResult], None],
        prepared: Any = None,
    ) -> object: ...

    def forget(self, scope: object) -> None: ...

    def stop_waiting(self, scope: object = None) -> None: ...

    def wait_again(self) -> None: ...


@dataclass(frozen=True)
class _Read:
    """One GetRecords' batch, which of its records to hand over (``todo``: their offsets; the
    others settled for good before the shard was read again) and `prepare` of those."""

    batch: Batch
    todo: tuple[int, ...]
    prepared: object | None


@dataclass
class _Flow:
    """One shard's records between being read and being checkpointed. Positions count the
    records read since the shard was (re)started from its checkpoint."""

    scope: object  # the replicator's lanes of this shard
    tracker: CheckpointTracker = field(default_factory=CheckpointTracker)
    sequences: dict[int, str | None] = field(default_factory=dict)  # not yet checkpointed
    sizes: dict[int, int] = field(default_factory=dict)  # bytes of each record in flight
    in_flight: int = 0
    bytes: int = 0
    reading: Future[_Read] | None = None
    closed: bool = False  # the shard's last batch was read
    failed: str | None = None  # why the shard must be read again from its checkpoint
    failed_position: int | None = None  # the first record that failed, if one did
    # Whether every failure was a wait behind a raw write's adoption (`Defer`): the intended
    # order under merge rules and with the tombstone store, logged at INFO, not WARNING.
    only_waiting: bool = True
    committed: int = 0  # positions before this one are checkpointed
    committed_at: float = -math.inf
    empty_reads: int = 0
    idle_until: float = -math.inf
    lost: bool = False  # its lease went to another consumer
    # The records of this flow that settled for good (applied, skipped or dead-lettered), by
    # sequence number: the flow that reads the shard again after a failure skips them.
    settled_for_good: set[str] = field(default_factory=set)
    started_at: int = 0  # when its latest read started (the consumer's count of reads)


def _sequence(record: Mapping[str, Any]) -> str | None:
    value = record.get("dynamodb", {}).get("SequenceNumber")
    return value if isinstance(value, str) else None


def _record_bytes(record: Mapping[str, Any]) -> int:
    """About what a record holds in memory: its images' DynamoDB sizes."""
    body = record.get("dynamodb", {})
    try:
        return sum(size_of(body[image]) for image in ("NewImage", "OldImage") if image in body)
    except Exception:  # a malformed record is dead-lettered; it still counts for something
        return 1024


class StreamConsumer:
    """Polls one region's table stream and hands each batch to a replicator."""

    def __init__(
        self,
        *,
        region: str,
        table_name: str,
        dynamodb: Any,
        streams: Any,
        checkpoints: CheckpointTable,
        replicator: WindowReplicator,
        metrics: Metrics,
        batch_size: int = 100,
        window_records: int = 2000,
        window_bytes: int = 32 * 1024 * 1024,
        checkpoint_every: float = 0.0,
        read_executor: Executor | None = None,
        leases: Callable[[str], LeaseKeeper] | None = None,
        discover_every: float = 10.0,
        table_check_every: float = 60.0,
        retry_base: float = 0.1,
        retry_cap: float = 20.0,
        idle_backoff: float = 0.05,
        max_idle_backoff: float = 0.25,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        jitter: Callable[[], float] = random.random,
        status_store: StatusStore | None = None,
        tracker: StatusTracker | None = None,
        wake: threading.Event | None = None,
    ) -> None:
        """``status_store`` keeps the consumer's status for ``georep status`` (none: not
        kept); ``tracker`` is the one the replicator's metrics also feed (the lag), if any.

        ``window_records``/``window_bytes``: records read and not yet applied everywhere, over
        all shards (no shard is read while the window is full). ``checkpoint_every``: seconds
        between two checkpoints of a shard whose records keep being applied (0: every turn).
        ``read_executor`` runs GetRecords, one read in flight per shard (default: inline, in
        the loop's thread; :class:`Consumer` reads shards in parallel from a pool).
        ``leases``: the lease keeper of a stream (service/engine/leases.py), when several consumers
        of the region share its shards: only the shards held are read and checkpointed."""
        self.region, self.table_name = region, table_name
        self.table_client, self.streams = dynamodb, streams
        self.checkpoints, self.replicator, self.metrics = checkpoints, replicator, metrics
        self.batch_size, self.discover_every = batch_size, discover_every
        self.window_records, self.window_bytes = max(window_records, batch_size), window_bytes
        self.checkpoint_every = checkpoint_every
        self.read_executor: Executor = read_executor or InlineExecutor()
        self._flows: dict[str, _Flow] = {}  # shard -> what is in flight
        self._started = 0  # reads started
        self._settled: deque[tuple[str, int, RecordResult]] = deque()
        # A read returned or a record settled. (``wake``: the tests' own, whose wait moves
        # their clock instead of sleeping.)
        self._wake = wake if wake is not None else threading.Event()
        self._stopping = False
        self._lease_keeper_for = leases
        self.leases: LeaseKeeper | None = None  # the followed stream's
        self._leases_ticked = -math.inf
        self._ready: list[str] = []  # the ready shards, as last listed for the leases
        # NOTE: DescribeTable tells a disabled or replaced stream (StreamStatus on AWS says so
        # too, moto's does not); once a minute costs nothing next to the polls.
        self.table_check_every = table_check_every
        self.retry_base, self.retry_cap = retry_base, retry_cap
        self.idle_backoff, self.max_idle_backoff = idle_backoff, max_idle_backoff
        self.clock, self.wall, self.jitter = clock, wall, jitter
        self.reader: StreamReader | None = None
        self._failures: dict[str | None, int] = {}  # shard (None: the stream) -> failures in a row
        self._retry_at: dict[str | None, float] = {}
        # Per shard read again from its checkpoint after a failure: the sequence numbers of the
        # records that settled for good before (`_retry_from_checkpoint`), not handed over again.
        self._settled_before: dict[str, frozenset[str]] = {}
        self._table_checked_at = -math.inf
        self._said_disabled = False
        self.status_store = status_store
        self.tracker = tracker if tracker is not None else StatusTracker(started_at=wall())

    # -- the stream to follow ----------------------------------------------------------------

    def setup(self) -> None:
        """Find the stream to follow: the one followed before a restart, else the table's latest.
        Any AWS error here stops the consumer with one clear line (botocore already retried)."""
        try:
            if self.status_store is not None:
                self.tracker.resume(self.status_store.consumer_status())
            table = self._describe_table()
            latest = table.get("LatestStreamArn")
            followed = self.checkpoints.followed_stream()
            if followed is None:
                if not latest:
                    raise ConsumerHaltedError(
                        f"table {self.table_name} in {self.region} has no stream; enable "
                        "NEW_AND_OLD_IMAGES (georep init does)"
                    )
                self.checkpoints.follow(latest)
                followed = latest
            reader = self._reader_for(followed)
        except AWS_ERRORS as error:
            raise ConsumerHaltedError(
                f"cannot start replicating {self.region}: "
                f"{halting_reason(error) or f'{error_code(error)}: {error}'}"
            ) from error
        if followed != latest or not _stream_enabled(table):
            reader.mark_disabled()  # replaced or disabled while the consumer was stopped
        self.reader = reader
        self._table_checked_at = self.clock()

    def _reader_for(self, stream_arn: str) -> StreamReader:
        if self._lease_keeper_for is not None:
            if self.leases is not None:
                self._release_leases()
            self.leases = self._lease_keeper_for(stream_arn)
            self._leases_ticked = -math.inf
        return StreamReader(
            self.streams,
            stream_arn=stream_arn,
            checkpoints=self.checkpoints.for_stream(stream_arn),
            metrics=self.metrics,
            region=self.region,
            batch_size=self.batch_size,
            discover_every=self.discover_every,
            clock=self.clock,
            wall=self.wall,
        )

    def _describe_table(self) -> Mapping[str, Any]:
        try:
            described = self.table_client.describe_table(TableName=self.table_name)
            table: Mapping[str, Any] = require(described, "Table", operation="DescribeTable")
        except ClientError as error:
            if error_code(error) == NOT_FOUND:
                raise ConsumerHaltedError(
                    f"table {self.table_name} does not exist in {self.region} (deleted?)"
                ) from error
            raise
        return table

    def _watch_table(self, *, stream_missing: bool = False) -> None:
        """Ask DescribeTable which stream is current (every ``table_check_every``, more often once
        the followed stream is read to its end, at once if it is missing); follow a newer one once
        the old one is read to its end, marking the gap between the two for repair."""
        reader = self._current()
        now = self.clock()
        every = self.discover_every if reader.exhausted else self.table_check_every
        if not stream_missing and now - self._table_checked_at < every:
            return
        table = self._describe_table()
        self._table_checked_at = now
        latest, enabled = table.get("LatestStreamArn"), _stream_enabled(table)
        if latest != reader.stream_arn or not enabled:
            reader.mark_disabled()
            if stream_missing:
                reader.abandon(f"stream {reader.stream_arn} no longer exists")
        if not enabled and not self._said_disabled:
            log.error(
                "the stream of table %s in %s is disabled: nothing written now is replicated "
                "until it is enabled again (the gap will be marked for repair)",
                self.table_name,
                self.region,
            )
            self.metrics.incr("stream_disabled", {"region": self.region})
        self._said_disabled = not enabled
        if latest and latest != reader.stream_arn and reader.exhausted:
            self._follow(latest)

    def _follow(self, stream_arn: str) -> None:
        old = self._current()
        reader = self._reader_for(stream_arn)  # its own, empty checkpoints: TRIM_HORIZON
        self.metrics.incr("stream_gaps", {"region": self.region})
        # NOTE: marked before the new stream is recorded as followed: a crash in between marks
        # again after the restart, never not at all.
        # NOTE: the table's latest stream, not the next one: a stream enabled and disabled
        # again in between (while the consumer was stopped) is not read; this marker covers
        # its records too. (ListStreams might list it; AWS does not document that it lists
        # disabled streams, and moto lists only the latest.)
        reader.needs_repair(
            f"the stream of table {self.table_name} changed from {old.stream_arn} to "
            f"{stream_arn} (disabled, then enabled again): writes made after the first ended "
            "were not replicated (in no stream, or in a stream enabled and disabled meanwhile)"
        )
        self.checkpoints.follow(stream_arn)
        self.reader = reader
        self._failures = {k: v for k, v in self._failures.items() if k is None}
        self._retry_at = {k: v for k, v in self._retry_at.items() if k is None}

    def _current(self) -> StreamReader:
        if self.reader is None:
            self.setup()
        assert self.reader is not None
        return self.reader

    # -- polling -----------------------------------------------------------------------------

    def poll_once(self, *, paced: bool = False) -> int:
        """One turn of the loop: start a read of every ready shard that has none in flight and is
        not backing off (while the window has room), hand every batch read to the replicator,
        count what settled, checkpoint. Returns the number of records handed to the replicator.

        With inline executors (the tests) a turn reads, applies and commits; with the thread
        pools of :class:`Consumer`, reads and writes go on between turns. ``paced`` (the
        loop of :meth:`run`): a shard whose last read was empty is read again only after an
        idle backoff, however often records of other shards wake the loop."""
        handed = self._poll(paced=paced)
        self.tracker.polled(self.wall())
        self._save_status()
        return handed

    def _poll(self, *, paced: bool) -> int:
        self._current()
        ready: list[str] = []
        if self._due(None):
            try:
                ready = self._ready_shards()
            except AWS_ERRORS as error:
                self._trouble(None, error, f"listing the shards of {self._current().stream_arn}")
            else:
                self._recovered(None)
        # NOTE: every turn, backing off or not: a lease lapses after lease_seconds whatever the
        # stream's backoff (up to retry_cap) is doing.
        held = self._leased()
        if held is not None:
            ready = [s for s in ready if s in held]
        # Collect first, so that a shard whose read came back is read again in this turn (read
        # ahead of its records being written); collect again, so that an inline read (tests)
        # is applied and checkpointed in the turn that made it.
        handed = self._settle_turn()
        self._start_reads(ready, paced=paced)
        return handed + self._settle_turn()

    def _settle_turn(self) -> int:
        handed = self._collect_reads()
        self._count_settled()
        self._checkpoint()
        return handed

    @property
    def busy(self) -> bool:
        """Reads or records in flight."""
        return any(f.reading is not None or f.in_flight for f in self._flows.values())

    @property
    def applying(self) -> bool:
        """Records in flight (read, not settled yet); reads alone do not count."""
        return any(f.in_flight for f in self._flows.values())

    def _leased(self, *, draining: bool = False) -> frozenset[str] | None:
        """The shards this consumer holds a lease on (None: no leases, every shard). Every
        ``renew_every`` seconds: renew and take leases, take the checkpoints of the shards not
        being read here under a lease again (another consumer may have moved or finished
        them), start a shard just taken from its stored checkpoint, and stop reading a shard
        whose lease was lost (its records in flight settle, uncheckpointed). ``draining``
        (`finish`): renew only the leases of the shards still in flight, take none."""
        keeper = self.leases
        if keeper is None:
            return None
        now = self.clock()
        if now - self._leases_ticked >= keeper.renew_every:
            reader = self._current()
            try:
                if draining:
                    keeper.tick(sorted(self._flows), taking=False)
                else:
                    reading = frozenset(s for s, f in self._flows.items() if not f.lost)
                    reader.reload(keep=reading & keeper.held())
                    try:
                        self._ready = reader.ready_shards()
                    except AWS_ERRORS as error:  # renew what was ready; the loop backs off
                        log.warning("listing shards to renew leases failed: %s", error)
                    keeper.tick(self._ready)
                    if keeper.last_taken:
                        log.info("took the leases of %s", ", ".join(sorted(keeper.last_taken)))
                    for shard_id in keeper.last_taken & set(self._flows):
                        self._flows[shard_id].lost = True  # a stale flow: drained, then dropped
                    reader.refresh(keeper.last_taken)
            except AWS_ERRORS as error:  # held leases stay held until their time runs out
                self._trouble(None, error, "renewing shard leases")
            else:
                self._leases_ticked = now
        self._mark_lost()
        return keeper.held()

    def _mark_lost(self, shard_ids: Iterable[str] | None = None) -> None:
        """A flow whose lease this consumer no longer holds hands nothing more out.
        ``shard_ids``: look at those flows only (default: every flow)."""
        if self.leases is None:
            return
        for shard_id in self._flows if shard_ids is None else shard_ids:
            flow = self._flows[shard_id]
            if not flow.lost and not self.leases.holds(shard_id):
                log.warning(
                    "shard %s: lease lost to another consumer; it stops reading it", shard_id
                )
                flow.lost = True

    def _release_leases(self) -> None:
        if self.leases is None:
            return
        try:
            self.leases.release_all()
        except AWS_ERRORS as error:  # they run out after lease_seconds
            log.warning("releasing shard leases failed: %s", error)

    @property
    def quiet_reads(self) -> int:
        """How many reads running every shard came back empty with nothing in flight and no
        shard backing off (0 if any of that is not so)."""
        flows = self._flows.values()
        if self.backing_off or any(f.in_flight or f.failed for f in flows):
            return 0
        return min((f.empty_reads for f in flows), default=1 << 30)  # no shard to read

    def forget_quiet(self) -> None:
        """Count empty reads afresh (`quiet_reads`): from now on, not before."""
        for flow in self._flows.values():
            flow.empty_reads = 0

    def _in_window(self) -> tuple[int, int]:
        """Records (a read in flight counts a whole batch) and bytes in the window."""
        flows = self._flows.values()
        records = sum(f.in_flight + (self.batch_size if f.reading else 0) for f in flows)
        return records, sum(f.bytes for f in flows)

    def _ready_shards(self) -> list[str]:
        self._watch_table()
        reader = self._current()
        try:
            return reader.ready_shards()
        except ClientError as error:
            if error_code(error) != NOT_FOUND:
                raise
            # Gone (a day after it was disabled), or not visible yet: the table says which.
            self._watch_table(stream_missing=True)
            if not reader.gone:
                raise
            return []  # abandoned, and replaced if the table has a newer stream

    def _start_reads(self, ready: Sequence[str], *, paced: bool) -> None:
        reader = self._current()
        now = self.clock()
        records, size = self._in_window()  # counted once a turn, not once per shard
        for shard_id in ready:
            if shard_id not in self._flows:
                self._flows[shard_id] = _Flow(scope=(reader.stream_arn, shard_id))
        # NOTE: the shards read least recently first: in the order listed, the first shards
        # filled the window every turn and the last ones were never read (found by
        # tests/property/test_consumers.py, three shards and a window of two batches).
        for shard_id in sorted(ready, key=lambda s: self._flows[s].started_at):
            flow = self._flows[shard_id]
            if (
                flow.reading is not None
                or flow.closed
                or flow.failed is not None
                or flow.lost
                or not self._due(shard_id)
                or (paced and flow.idle_until > now)
                or records + self.batch_size > self.window_records
                or size >= self.window_bytes
            ):
                continue
            flow.started_at = self._started = self._started + 1
            flow.reading = self.read_executor.submit(self._read, reader, shard_id)
            records += self.batch_size

    def _read(self, reader: StreamReader, shard_id: str) -> _Read:
        """One GetRecords, and what the replicator needs to know of its records beforehand
        (`prepare`: the store reads), here in the read thread: the consumer's own loop, which
        renews the leases, makes no request for a batch (session 38: 2-4 s of store reads
        per turn on a loaded server lost the leases again and again). Records that settled
        for good before the shard was read again from its checkpoint are not handed over
        again (`_settled_before`)."""
        try:
            batch = reader.read(shard_id)
            before = self._settled_before.get(shard_id, frozenset())
            todo = tuple(i for i, r in enumerate(batch.records) if _sequence(r) not in before)
            records = [batch.records[i] for i in todo]
            return _Read(batch, todo, self.replicator.prepare(records) if records else None)
        finally:
            self._wake.set()

    def _collect_reads(self) -> int:
        """Hand every batch read since the last turn to the replicator."""
        handed = 0
        reader = self._current()
        for shard_id, flow in list(self._flows.items()):
            if flow.reading is None or not flow.reading.done():
                continue
            future, flow.reading = flow.reading, None
            try:
                read = future.result()
            except AWS_ERRORS as error:
                flow.failed = f"{error_code(error)}: {error}"
                self._trouble(shard_id, error, f"shard {shard_id}")
                continue
            # NOTE: this shard's lease only: every flow for every batch collected made a turn
            # cost shards x reads (1.4 ms per shard read at 1,000 shards, bench/shards.py);
            # the other flows are looked at when their own batch comes in, and every turn.
            self._mark_lost((shard_id,))
            if flow.failed is not None or flow.lost or self._stopping:
                reader.rewind(shard_id)  # read again from the checkpoint
                continue
            batch = read.batch
            flow.closed = batch.closed
            if not batch.records:
                flow.empty_reads += 1
                flow.idle_until = self.clock() + min(
                    self.idle_backoff * 2 ** min(flow.empty_reads - 1, 16), self.max_idle_backoff
                )
                continue
            flow.empty_reads, flow.idle_until = 0, -math.inf
            handed += len(batch.records)
            log.debug(
                "shard %s: read %d records, %s to %s",
                shard_id,
                len(batch.records),
                _sequence(batch.records[0]),
                _sequence(batch.records[-1]),
            )
            self._observe_age(batch.records[-1])
            start = flow.tracker.read_position
            todo = set(read.todo)
            for offset, record in enumerate(batch.records):
                position = start + offset
                sequence = _sequence(record)
                flow.sequences[position] = sequence
                if offset not in todo:  # settled for good before this read: nothing to do
                    flow.tracker.read(position, tasks=0)
                    if sequence is not None:
                        flow.settled_for_good.add(sequence)
                    continue
                flow.tracker.read(position, tasks=1)
                flow.sizes[position] = _record_bytes(record)
            positions = [start + offset for offset in read.todo]
            if not positions:
                continue
            flow.in_flight += len(positions)
            flow.bytes += sum(flow.sizes[p] for p in positions)

            def settled(
                index: int, result: RecordResult, shard: str = shard_id, at: list[int] = positions
            ) -> None:
                self._settled.append((shard, at[index], result))
                self._wake.set()

            began = time.monotonic()
            records = [batch.records[offset] for offset in read.todo]
            extra = {"prepared": read.prepared} if read.prepared is not None else {}
            self.replicator.submit(records, scope=flow.scope, on_settled=settled, **extra)
            took = time.monotonic() - began
            if self.leases is not None and took > self.leases.renew_every:
                # NOTE: leases are renewed between turns: a turn longer than the lease loses the
                # shard to no one (session 38: 7 s of store reads per batch, 6 s leases).
                log.warning(
                    "shard %s: handing %d records over took %.1f s, more than the leases' "
                    "renewal interval (%.1f s): its lease may lapse",
                    shard_id,
                    len(batch.records),
                    took,
                    self.leases.renew_every,
                )
        return handed

    def _on_settled(self, shard_id: str, start: int) -> Callable[[int, RecordResult], None]:
        def settled(index: int, result: RecordResult) -> None:  # from a writer thread
            self._settled.append((shard_id, start + index, result))
            self._wake.set()

        return settled

    def _count_settled(self) -> None:
        """Take in the records settled since the last turn."""
        while self._settled:
            shard_id, position, result = self._settled.popleft()
            flow = self._flows[shard_id]
            self.tracker.settled([result])
            flow.in_flight -= 1
            flow.bytes -= flow.sizes.pop(position)
            if result.status != "failed":
                flow.tracker.done(position)
                if (sequence := flow.sequences.get(position)) is not None:
                    flow.settled_for_good.add(sequence)
                continue
            flow.only_waiting = flow.only_waiting and _only_waiting(result)
            if flow.failed is None:
                flow.failed = result.reason
                flow.failed_position = position

    def _checkpoint(self) -> None:
        """Save each shard's checkpoint where it is due; finish a shard read and applied to its
        end; after a failure, once the shard's records in flight settled, read it again from its
        checkpoint after a backoff."""
        reader = self._current()
        now = self.clock()
        for shard_id, flow in list(self._flows.items()):
            drained = flow.in_flight == 0 and flow.reading is None
            self._mark_lost((shard_id,))  # another consumer reads it from its checkpoint now
            if flow.lost:
                self.replicator.stop_waiting(flow.scope)  # its deferred records settle
                if drained:  # read again only from the stored checkpoint (refresh)
                    del self._flows[shard_id]
                    self._settled_before.pop(shard_id, None)
                    reader.rewind(shard_id)
                    self.replicator.forget(flow.scope)
                continue
            if flow.failed is not None:
                # NOTE: a failed shard is read again from its checkpoint once every record in
                # flight settled, and a record waiting patiently for an adoption would hold
                # that off for good: the adoption may be beyond what the other region reads
                # while its own shard waits likewise (chaos seed 2027, session 38: three
                # regions stuck, each shard failed once and then waited on another). It is
                # read again anyway, so its waits end now.
                self.replicator.stop_waiting(flow.scope)
            finished = flow.closed and drained and flow.failed is None
            safe = flow.tracker.safe_position()
            due = now - flow.committed_at >= self.checkpoint_every or drained
            try:
                if finished or (safe > flow.committed and due):
                    done = [
                        flow.sequences[p]
                        for p in range(flow.committed, safe)
                        if flow.sequences.get(p) is not None
                    ]
                    sequence = done[-1] if done else None
                    if sequence is not None or finished:
                        reader.commit(shard_id, sequence=sequence, finished=finished)
                        log.debug("shard %s: checkpointed at %s", shard_id, sequence)
                    for p in range(flow.committed, safe):
                        flow.sequences.pop(p, None)
                    flow.committed, flow.committed_at = safe, now
                    if flow.failed is None:
                        self._recovered(shard_id)
            except AWS_ERRORS as error:
                flow.failed = flow.failed or f"{error_code(error)}: {error}"
                self._trouble(shard_id, error, f"checkpointing shard {shard_id}")
            if finished:
                del self._flows[shard_id]
                if self.leases is not None:
                    self._release(shard_id)
            elif flow.failed is not None and drained:
                self._retry_from_checkpoint(reader, shard_id, flow)

    def _release(self, shard_id: str) -> None:
        assert self.leases is not None
        try:
            self.leases.release(shard_id)
        except AWS_ERRORS as error:  # it runs out after lease_seconds
            log.warning("releasing the lease of finished shard %s failed: %s", shard_id, error)

    def _retry_from_checkpoint(self, reader: StreamReader, shard_id: str, flow: _Flow) -> None:
        """Every record of a failed shard settled: read it again from its checkpoint (the
        records applied after the failure are applied again: idempotent)."""
        del self._flows[shard_id]
        reader.rewind(shard_id)
        self.replicator.forget(flow.scope)
        # NOTE: read again from the checkpoint, every record after it is read again, but only
        # those that did not settle for good are handed over again: re-applying the rest cost
        # the loaded server two reads per record and destination with the store (session 38),
        # wrote an adoption's successor a second time, and dead-lettered a bad record twice.
        self._settled_before[shard_id] = frozenset(flow.settled_for_good)
        if flow.failed_position is None:
            log.debug("shard %s: read again from its checkpoint (%s)", shard_id, flow.failed)
            return  # a read or checkpoint error: already counted and backing off
        behind = flow.tracker.read_position - flow.failed_position
        read = flow.tracker.read_position - flow.committed
        what = f"{behind} of {read} records not applied yet"
        delay = self._back_off(shard_id)
        self.tracker.error(self.wall(), f"shard {shard_id}: {what} ({flow.failed})")
        # NOTE: a wait behind a raw write's adoption is the design working (the region's own
        # consumer adopts it within a poll or two), not a fault: INFO, so that a healthy run
        # (make demo) does not print warnings; the `deferred_behind_raw` counter still counts it.
        level = logging.INFO if flow.only_waiting else logging.WARNING
        log.log(level, "shard %s: %s (%s); retrying in %.2f s", shard_id, what, flow.failed, delay)

    def _observe_age(self, record: Mapping[str, Any]) -> None:
        created = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp"):
            age = max(self.wall() - created.timestamp(), 0.0)
            self.metrics.observe("iterator_age_seconds", {"region": self.region}, age)

    # -- backoff -----------------------------------------------------------------------------

    def _trouble(self, key: str | None, error: Exception, where: str) -> None:
        reason = halting_reason(error)
        if reason is not None:
            raise ConsumerHaltedError(f"{self.region}: {reason}") from error
        self.metrics.incr("stream_errors", {"region": self.region, "error": error_code(error)})
        self.tracker.error(self.wall(), f"{where}: {error_code(error)}: {error}")
        delay = self._back_off(key)
        log.warning("%s: %s; retrying in %.2f s", where, error, delay)

    def _back_off(self, key: str | None) -> float:
        self._failures[key] = self._failures.get(key, 0) + 1
        delay = retry_delay(
            self._failures[key], base=self.retry_base, cap=self.retry_cap, jitter=self.jitter
        )
        self._retry_at[key] = self.clock() + delay
        return delay

    def _save_status(self, *, stopped: bool = False) -> None:
        """Save the status if it is due (or the consumer stops). A failure is logged only:
        the status is for people, and replication must not wait on it."""
        now = self.wall()
        if self.status_store is None or not (stopped or self.tracker.due(now)):
            return
        try:
            self.status_store.save_status(self.tracker.snapshot(now, stopped=stopped))
        except AWS_ERRORS as error:
            log.warning("saving the consumer status of %s failed: %s", self.region, error)

    def _recovered(self, key: str | None) -> None:
        self._failures.pop(key, None)
        self._retry_at.pop(key, None)

    def _due(self, key: str | None) -> bool:
        return self._retry_at.get(key, -math.inf) <= self.clock()

    @property
    def backing_off(self) -> bool:
        """Some shard, or the stream, waits to be retried: the consumer is not idle."""
        return bool(self._retry_at)

    def run(self, *, stop: threading.Event, idle_exit_after: float | None = None) -> None:
        """Poll until ``stop`` is set (or, with ``idle_exit_after``, until idle that long: nothing
        read, nothing in flight and nothing waiting to be retried), then let the records in
        flight settle and checkpoint them. Raises ConsumerHaltedError on what waiting cannot
        fix; every other error is retried."""
        backoff = self.idle_backoff
        idle_since: float | None = None
        try:
            while not stop.is_set():
                self._wake.clear()
                if self.poll_once(paced=True):
                    backoff, idle_since = self.idle_backoff, None
                    continue
                if self.busy:  # a read returning or a record settling wakes the loop
                    # NOTE: an idle shard is read again every idle backoff (at most 0.25 s by
                    # default), so a read is in flight most of the time: only records in flight
                    # end the idle spell (records read end it above), or it never lasts long
                    # enough for `idle_exit_after` (`georep run --exit-when-idle` never exited).
                    if self.applying:
                        idle_since = None
                    self._wake.wait(self.max_idle_backoff)
                    continue
                now = self.clock()
                if self.backing_off:
                    idle_since = None
                elif idle_since is None:
                    idle_since = now
                if (
                    idle_exit_after is not None
                    and idle_since is not None
                    and now - idle_since >= idle_exit_after
                ):
                    return
                stop.wait(backoff)
                backoff = min(backoff * 2, self.max_idle_backoff)
        except ConsumerHaltedError as error:
            self.tracker.error(self.wall(), f"halted: {error}")
            raise
        finally:
            self.finish()
            self._save_status(stopped=True)

    def finish(self, timeout: float = 60.0) -> None:
        """Stop reading; wait (up to ``timeout`` seconds) for the records in flight to settle and
        checkpoint what was applied. A batch still being read is dropped (read again after a
        restart, from the checkpoint)."""
        self._stopping = True
        self.replicator.stop_waiting()  # deferred records settle (replayed after a restart)
        deadline = self.clock() + timeout
        try:
            while self.busy and self.clock() < deadline:
                self._wake.wait(0.1)
                self._wake.clear()
                self._leased(draining=True)  # a slow destination must not cost the leases
                self._collect_reads()
                self._count_settled()
                self._checkpoint()
            if self.busy:
                log.warning("stopped with records in flight: they are replayed after a restart")
        except ConsumerHaltedError:
            pass  # said already
        finally:
            self._stopping = False  # polled again, it reads again
            self.replicator.wait_again()
        if not self.busy:
            self._release_leases()
            self._leases_ticked = -math.inf


def _only_waiting(result: RecordResult) -> bool:
    """Whether a failed record failed only by waiting behind a raw write's adoption."""
    failures = [d for d in result.deliveries.values() if d.handled == "failed"]
    return bool(failures) and all(d.error == RAW_NOT_ADOPTED for d in failures)
