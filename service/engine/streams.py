"""Reading one region's DynamoDB Stream: shards, lineage, iterators, checkpoints.

* A child shard is read only after its parent is finished: per-item order survives shard splits.
* Iterators start AFTER_SEQUENCE_NUMBER the checkpoint, or at TRIM_HORIZON for a shard with
  none (then AT_SEQUENCE_NUMBER the first record read, until something is checkpointed); an
  expired iterator is simply taken again from there.
* The checkpoint of a shard moves only after every destination applied the records up to it
  (the caller says so, by service/engine/checkpoint.py's rule), and is stored in a DynamoDB table of
  the same region, per stream ARN: a new stream never reuses an old stream's checkpoints.
* Records lost to the 24 h retention are never skipped silently. Each of these is logged, counted
  (``trimmed_data``) and marks the region as needing repair, then reading goes on:
  1. a checkpoint below the trim horizon (TrimmedDataAccessException, and only that);
  2. a shard this consumer knew, gone from the listing before it was read to its end;
  3. a listed shard whose parent is gone and was never read to its end by this consumer (on a
     first start too: the history before it is unknown, so it is not assumed replicated);
  4. a shard without a checkpoint read from its trim horizon when it may have been created more
     than the retention ago (TRIM_HORIZON silently starts after whatever was trimmed).
* A disabled stream's shards are closed (AWS): the reader reads them to their end, then says it
  is ``exhausted``; the consumer then follows the table's new stream (service/engine/consumer.py).
* Every other error drops the shard's iterator and propagates; the caller backs off and reads
  again from the checkpoint.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, replace
from datetime import datetime
from typing import Any

from botocore.exceptions import BotoCoreError, ClientError

from service.adapters.dynamo import IncompleteResponseError, require
from service.adapters.metrics import MemoryMetrics
from service.ports import CheckpointStore, Metrics, ShardState

log = logging.getLogger("georep.streams")


# What boto3 raises for an AWS call that failed after botocore's own retries.
AWS_ERRORS = (ClientError, BotoCoreError)


EXPIRED = "ExpiredIteratorException"
TRIMMED = "TrimmedDataAccessException"
NOT_FOUND = "ResourceNotFoundException"

RETENTION_SECONDS = 24 * 3600.0
# NOTE: rule 4 compares this host's clock with DynamoDB's stream creation time: the margin
# absorbs clock skew, and errs towards a repair marker when reading that close to the horizon.
HORIZON_MARGIN_SECONDS = 3600.0


def error_code(error: BaseException) -> str:
    """The AWS error code of a botocore error, or the exception's class name."""
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code") or "ClientError")
    return type(error).__name__


@dataclass(frozen=True)
class Batch:
    shard_id: str
    records: list[dict[str, Any]]
    closed: bool  # the shard is finished once this batch is applied
    millis_behind: int | None = None


def _seconds(value: object) -> float | None:
    if isinstance(value, datetime):
        return value.timestamp()
    if isinstance(value, int | float):
        return float(value)
    return None


class StreamReader:
    """Hands out batches from ready shards, in lineage order, and records checkpoints."""

    def __init__(
        self,
        streams: Any,
        *,
        stream_arn: str,
        checkpoints: CheckpointStore,
        metrics: Metrics | None = None,
        region: str = "",
        batch_size: int = 100,
        discover_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        wall: Callable[[], float] = time.time,
        retention: float = RETENTION_SECONDS,
        margin: float = HORIZON_MARGIN_SECONDS,
    ) -> None:
        self.streams, self.stream_arn = streams, stream_arn
        # NOTE: DescribeStream is rate-limited (10/s per account on AWS): shards are listed
        # again only every ``discover_every`` seconds, or when a shard was finished.
        self.discover_every, self.clock, self.wall = discover_every, clock, wall
        self.retention, self.margin = retention, margin
        self._discovered_at: float | None = None
        self.checkpoints = checkpoints
        self.metrics: Metrics = metrics if metrics is not None else MemoryMetrics()
        self.region = region
        self.batch_size = batch_size
        self.state = checkpoints.load()
        self.first_start = not self.state
        self.iterators: dict[str, str] = {}
        self.parents: dict[str, str | None] = {}
        self.status: str | None = None
        self.created: float | None = None  # the stream's CreationRequestDateTime
        self.gone = False  # the stream no longer exists
        self._disabled = False  # DescribeTable says the stream is disabled or replaced
        self._final_listing = False  # shards were listed after the stream was disabled
        self._listed_at: float | None = None  # wall time of the latest listing
        # Shards without a checkpoint: the first record read from the trim horizon. Read again
        # AT it, so that AWS says TrimmedDataAccessException if it aged out meanwhile.
        self._first_read: dict[str, str] = {}
        # The last record handed out per shard: an iterator lost while records after the
        # checkpoint are still in flight (expired, a server error) resumes after it, not at
        # the checkpoint (which would hand the records in flight out twice). `rewind` forgets it.
        self._handed: dict[str, str] = {}

    # -- the stream's life -------------------------------------------------------------------

    @property
    def disabled(self) -> bool:
        return self.gone or self._disabled or self.status in ("DISABLING", "DISABLED")

    @property
    def exhausted(self) -> bool:
        """Nothing more will ever come from this stream: it is disabled and every shard listed
        since then is finished (or the stream is gone)."""
        if self.gone:
            return True
        return (
            self.disabled
            and self._final_listing
            and all(self.state[s].finished for s in self.parents)
        )

    def mark_disabled(self) -> None:
        """The table says this stream is disabled or replaced by a newer one: AWS has closed its
        shards, so read them to their end (listing them once more first)."""
        if not self._disabled:
            self._disabled = True
            self._discovered_at = None

    def abandon(self, reason: str) -> None:
        """The stream no longer exists: whatever was not read from it is lost."""
        for shard_id, state in sorted(self.state.items()):
            if not state.finished:
                self._lost(
                    shard_id, f"{reason}: shard {shard_id} was not read to its end", gone=True
                )
        self.gone = True
        self.parents = {}
        self.iterators.clear()

    # -- shards ------------------------------------------------------------------------------

    def _discover(self) -> None:
        shards: list[Mapping[str, Any]] = []
        start: str | None = None
        while True:
            kwargs = {"StreamArn": self.stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            description = require(
                self.streams.describe_stream(**kwargs),
                "StreamDescription",
                operation="DescribeStream",
            )
            shards.extend(description.get("Shards", []))
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        now = self.wall()
        self.status = description.get("StreamStatus")
        self.created = _seconds(description.get("CreationRequestDateTime"))
        listed = {s["ShardId"]: s.get("ParentShardId") for s in shards}
        self._report_gone(listed)
        # New shards are saved at first sight, with a bound on their age (rule 4 after a restart).
        bound = self._listed_at if self._listed_at is not None else self._bound_for_unknown()
        for shard_id in sorted(listed):
            if shard_id not in self.state:
                # NOTE: only if absent (the store refuses an empty state over any other): a peer
                # of the region may hold this shard and have checkpointed it already.
                state = ShardState(created_after=bound)
                if not self.checkpoints.save(shard_id, state):
                    state = self.checkpoints.load().get(shard_id, state)
                self.state[shard_id] = state
        self.parents = listed
        self._listed_at = now
        if self.disabled:
            self._final_listing = True

    def _report_gone(self, listed: Mapping[str, str | None]) -> None:
        """Rules 2 and 3: shards that left the listing before this consumer read them to their
        end took their unread records with them."""
        # Rule 2: a shard gone before it was read to its end lost every record after its
        # checkpoint (a consumer stopped for a day meets this on every restart).
        for shard_id, state in sorted(self.state.items()):
            if shard_id not in listed and not state.finished:
                self._lost(
                    shard_id,
                    f"shard {shard_id} aged out of the stream before it was read to its end "
                    f"(checkpoint {state.sequence or 'none'})",
                    gone=True,
                )
        # Rule 3: a parent gone without this consumer ever finishing it lost its records.
        for shard_id, parent in sorted(listed.items()):
            if parent and parent not in listed and parent not in self.state:
                first = (
                    " (a first start: no checkpoint for this stream; records older than the "
                    "trim horizon were never replicated by this consumer)"
                    if self.first_start
                    else ""
                )
                self._lost(
                    parent,
                    f"shard {parent}, parent of {shard_id}, aged out of the stream before this "
                    f"consumer read it{first}",
                    gone=True,
                )

    def _bound_for_unknown(self) -> float | None:
        """When a shard first listed now did not exist yet: after the stream's creation, and after
        every listing that saved a shard it does not have (none listed it, or it would be known)."""
        known = [s.created_after for s in self.state.values() if s.created_after is not None]
        candidates = [*known, *([self.created] if self.created is not None else [])]
        return max(candidates, default=None)

    def ready_shards(self) -> list[str]:
        """Unfinished shards whose parent is finished or no longer in the stream."""
        if self.gone:
            return []
        now = self.clock()
        if self._discovered_at is None or now - self._discovered_at >= self.discover_every:
            self._discover()
            self._discovered_at = now
        ready = []
        for shard_id, parent in sorted(self.parents.items()):
            if self.state[shard_id].finished:
                continue
            if parent is None or parent not in self.parents or self.state[parent].finished:
                ready.append(shard_id)
        return ready

    # -- records -----------------------------------------------------------------------------

    def _iterator(self, shard_id: str) -> str:
        if shard_id in self.iterators:
            return self.iterators[shard_id]
        sequence = self._handed.get(shard_id) or self.state[shard_id].sequence
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if sequence is None and shard_id in self._first_read:
            kwargs["ShardIteratorType"] = "AT_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = self._first_read[shard_id]
        elif sequence is None:
            self._check_head(shard_id)
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = sequence
        answer = self.streams.get_shard_iterator(**kwargs)
        iterator: str = require(answer, "ShardIterator", operation="GetShardIterator")
        self.iterators[shard_id] = iterator
        return iterator

    def _check_head(self, shard_id: str) -> None:
        """Rule 4: TRIM_HORIZON starts after whatever was trimmed, without saying so. A shard that
        may be older than the retention may have lost its first records unread."""
        # NOTE: asked again at every read from the trim horizon, even right after a report: a
        # loss after the report needs a marker after it (reads after the first record use
        # AT_SEQUENCE_NUMBER instead, where AWS itself says whether it was trimmed).
        created_after = self.state[shard_id].created_after
        if created_after is None:
            return  # nothing says how old it is (a checkpoint saved by an older georep)
        age = self.wall() - created_after
        if age >= self.retention - self.margin:
            self._lost(
                shard_id,
                f"shard {shard_id} is read from its trim horizon {age / 3600:.1f} h after it was "
                "created: records at its head may have aged out unread",
            )

    def read(self, shard_id: str) -> Batch:
        """The next batch of ``shard_id``. Expired iterators and trimmed data are handled here
        (an empty batch); any other error drops the iterator and propagates."""
        try:
            response = self.streams.get_records(
                ShardIterator=self._iterator(shard_id), Limit=self.batch_size
            )
        except AWS_ERRORS as error:
            self.iterators.pop(shard_id, None)  # next time, again from the checkpoint
            code = error_code(error)
            if code == EXPIRED:
                return Batch(shard_id, [], closed=False)
            if code == TRIMMED:  # rule 1
                sequence = self.state[shard_id].sequence
                self._lost(
                    shard_id,
                    f"shard {shard_id}: records after checkpoint {sequence or '(none)'} were "
                    f"trimmed before they were read ({error})",
                )
                return Batch(shard_id, [], closed=False)
            if code == NOT_FOUND:
                self._discovered_at = None  # the shard or the stream is gone: list again
            raise
        if "Records" not in response:  # not even an empty list: the answer was cut short
            self.iterators.pop(shard_id, None)
            raise IncompleteResponseError(operation="GetRecords", field="Records")
        following = response.get("NextShardIterator")
        if following:
            self.iterators[shard_id] = following
        else:
            self.iterators.pop(shard_id, None)
        records = response.get("Records", [])
        last = records[-1].get("dynamodb", {}).get("SequenceNumber") if records else None
        if isinstance(last, str):
            self._handed[shard_id] = last
        if records and self.state[shard_id].sequence is None:
            first = records[0].get("dynamodb", {}).get("SequenceNumber")
            if isinstance(first, str):
                self._first_read.setdefault(shard_id, first)
        return Batch(shard_id, records, closed=not following)

    def commit(self, shard_id: str, *, sequence: str | None, finished: bool) -> bool:
        """Everything up to ``sequence`` is applied everywhere (``finished``: the whole shard).
        The save is conditional (service.core.checkpoints.may_save): False when the stored
        checkpoint is already as far or further (another consumer of the region saved it), in
        which case this reader takes the stored one, which only covers applied records too."""
        state = replace(self.state[shard_id])
        if sequence is not None:
            state.sequence = sequence
        state.finished = finished
        saved = self.checkpoints.save(shard_id, state)
        if saved:
            self.state[shard_id] = state
        else:
            self.state[shard_id] = self.checkpoints.load().get(shard_id, state)
        if self.state[shard_id].sequence is not None:
            self._first_read.pop(shard_id, None)
        if self.state[shard_id].finished:
            self._discovered_at = None  # its children may be ready: list shards again
        return saved

    def reload(self, *, keep: frozenset[str] = frozenset()) -> None:
        """Take the stored checkpoints again for every shard but ``keep`` (the shards this
        reader is reading under a lease it holds): with shard leases, other consumers of the
        region read and finish shards too."""
        stored = self.checkpoints.load()
        for shard_id, state in stored.items():
            if shard_id in keep:
                continue
            if self.state.get(shard_id) != state:
                self._take(shard_id, state)

    def refresh(self, shard_ids: frozenset[str]) -> None:
        """A lease on ``shard_ids`` was just taken: start each of them again from its stored
        checkpoint, whatever this reader remembers of it (another consumer may have moved it
        since this one last read it, service/engine/leases.py)."""
        if not shard_ids:
            return
        stored = self.checkpoints.load()
        for shard_id in sorted(shard_ids):
            if shard_id in stored:
                self._take(shard_id, stored[shard_id])

    def _take(self, shard_id: str, state: ShardState) -> None:
        self.state[shard_id] = state
        self.iterators.pop(shard_id, None)
        self._handed.pop(shard_id, None)
        self._first_read.pop(shard_id, None)

    def rewind(self, shard_id: str) -> None:
        """Forget the iterator: the next read starts again after the checkpoint."""
        self.iterators.pop(shard_id, None)
        self._handed.pop(shard_id, None)

    # -- losses ------------------------------------------------------------------------------

    def _lost(self, shard_id: str, reason: str, *, gone: bool = False) -> None:
        """Records of ``shard_id`` can no longer be read: say so loudly, then go on (a gone shard
        is finished; a trimmed one is read again from its trim horizon)."""
        self.metrics.incr("trimmed_data", {"region": self.region})
        self.needs_repair(reason)
        state = self.state.setdefault(shard_id, ShardState())
        if gone:
            state.finished = True
        else:
            state.sequence = None
        self._first_read.pop(shard_id, None)
        self._handed.pop(shard_id, None)
        self.iterators.pop(shard_id, None)
        self.checkpoints.save(shard_id, state)

    def needs_repair(self, reason: str) -> None:
        log.error("REGION NEEDS REPAIR: %s", reason)
        self.checkpoints.mark_needs_repair(reason)
