"""Reading one region's DynamoDB Stream: shards, lineage, iterators, checkpoints.

* A child shard is read only after its parent is finished (or gone past retention): per-item
  order survives shard splits.
* Iterators start AFTER_SEQUENCE_NUMBER the checkpoint, or at TRIM_HORIZON for a new shard;
  an expired iterator is simply taken again from the checkpoint.
* The checkpoint of a shard moves only after every destination applied the records up to it
  (the caller says so), and is stored in a DynamoDB table of the same region.
* Reading past the 24 h retention (TrimmedDataAccessException, or a checkpoint the stream no
  longer has) is a loud error and a metric, and marks the region as needing repair; it never
  silently skips.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from botocore.exceptions import ClientError

from service.dynamo import ensure_table

log = logging.getLogger("georep.streams")

REPAIR_MARKER = "__needs_repair__"


@dataclass
class ShardState:
    sequence: str | None = None  # last sequence number fully applied
    finished: bool = False


class CheckpointStore(Protocol):
    def load(self) -> dict[str, ShardState]: ...

    def save(self, shard_id: str, state: ShardState) -> None: ...

    def mark_needs_repair(self, reason: str) -> None: ...


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.shards: dict[str, ShardState] = {}
        self.repair: str | None = None

    def load(self) -> dict[str, ShardState]:
        return {k: ShardState(v.sequence, v.finished) for k, v in self.shards.items()}

    def save(self, shard_id: str, state: ShardState) -> None:
        self.shards[shard_id] = ShardState(state.sequence, state.finished)

    def mark_needs_repair(self, reason: str) -> None:
        self.repair = reason


class DynamoCheckpoints:
    """Checkpoints in a small table of the consumer's own region (key ``shard``, S)."""

    def __init__(self, client: Any, *, table_name: str, stream_arn: str) -> None:
        self.client, self.table_name, self.stream_arn = client, table_name, stream_arn

    def ensure_table(self) -> None:
        ensure_table(self.client, table_name=self.table_name, key="shard")

    def _key(self, shard_id: str) -> dict[str, Any]:
        return {"shard": {"S": f"{self.stream_arn}|{shard_id}"}}

    def load(self) -> dict[str, ShardState]:
        prefix = f"{self.stream_arn}|"
        out: dict[str, ShardState] = {}
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name, ConsistentRead=True):
            for item in page.get("Items", []):
                name = item["shard"]["S"]
                if name.startswith(prefix) and REPAIR_MARKER not in name:
                    out[name[len(prefix) :]] = ShardState(
                        item.get("sequence", {}).get("S"),
                        item.get("finished", {}).get("BOOL", False),
                    )
        return out

    def save(self, shard_id: str, state: ShardState) -> None:
        item = {**self._key(shard_id), "finished": {"BOOL": state.finished}}
        if state.sequence is not None:
            item["sequence"] = {"S": state.sequence}
        self.client.put_item(TableName=self.table_name, Item=item)

    def mark_needs_repair(self, reason: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={**self._key(REPAIR_MARKER), "reason": {"S": reason}},
        )


class TrimmedError(Exception):
    """The stream no longer has records the checkpoint says were not applied yet."""


@dataclass(frozen=True)
class Batch:
    shard_id: str
    records: list[dict[str, Any]]
    closed: bool  # the shard is finished once this batch is applied
    millis_behind: int | None = None


class StreamReader:
    """Hands out batches from ready shards, in lineage order, and records checkpoints."""

    def __init__(
        self,
        streams: Any,
        *,
        stream_arn: str,
        checkpoints: CheckpointStore,
        batch_size: int = 100,
        discover_every: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.streams, self.stream_arn = streams, stream_arn
        # NOTE: DescribeStream is rate-limited (10/s per account on AWS): shards are listed
        # again only every ``discover_every`` seconds, or when a shard was finished.
        self.discover_every, self.clock = discover_every, clock
        self._discovered_at: float | None = None
        self.checkpoints = checkpoints
        self.batch_size = batch_size
        self.state = checkpoints.load()
        self.iterators: dict[str, str] = {}
        self.parents: dict[str, str | None] = {}

    def _discover(self) -> None:
        shards: list[Mapping[str, Any]] = []
        start: str | None = None
        while True:
            kwargs = {"StreamArn": self.stream_arn}
            if start:
                kwargs["ExclusiveStartShardId"] = start
            description = self.streams.describe_stream(**kwargs)["StreamDescription"]
            shards.extend(description.get("Shards", []))
            start = description.get("LastEvaluatedShardId")
            if not start:
                break
        self.parents = {s["ShardId"]: s.get("ParentShardId") for s in shards}
        for shard_id in self.parents:
            self.state.setdefault(shard_id, ShardState())

    def ready_shards(self) -> list[str]:
        """Unfinished shards whose parent is finished or no longer in the stream."""
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

    def _iterator(self, shard_id: str) -> str:
        if shard_id in self.iterators:
            return self.iterators[shard_id]
        sequence = self.state[shard_id].sequence
        kwargs: dict[str, Any] = {"StreamArn": self.stream_arn, "ShardId": shard_id}
        if sequence is None:
            kwargs["ShardIteratorType"] = "TRIM_HORIZON"
        else:
            kwargs["ShardIteratorType"] = "AFTER_SEQUENCE_NUMBER"
            kwargs["SequenceNumber"] = sequence
        try:
            iterator: str = self.streams.get_shard_iterator(**kwargs)["ShardIterator"]
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            # NOTE: AWS says TrimmedDataAccessException; DynamoDB Local answers InternalFailure
            # and moto a 500 for a sequence number below the trim horizon (backends.md).
            if sequence is not None and code in {
                "TrimmedDataAccessException",
                "InternalFailure",
                "500",
            }:
                raise TrimmedError(
                    f"shard {shard_id}: checkpoint {sequence} is past retention ({code})"
                ) from error
            raise
        self.iterators[shard_id] = iterator
        return iterator

    def read(self, shard_id: str) -> Batch:
        try:
            response = self.streams.get_records(
                ShardIterator=self._iterator(shard_id), Limit=self.batch_size
            )
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code", "")
            if code == "ExpiredIteratorException":
                self.iterators.pop(shard_id, None)  # taken again from the checkpoint next time
                return Batch(shard_id, [], closed=False)
            if code == "TrimmedDataAccessException":
                raise TrimmedError(f"shard {shard_id}: {error}") from error
            raise
        following = response.get("NextShardIterator")
        if following:
            self.iterators[shard_id] = following
        else:
            self.iterators.pop(shard_id, None)
        return Batch(shard_id, response.get("Records", []), closed=not following)

    def commit(self, shard_id: str, *, sequence: str | None, finished: bool) -> None:
        """Everything up to ``sequence`` is applied everywhere (``finished``: the whole shard)."""
        state = self.state[shard_id]
        if sequence is not None:
            state.sequence = sequence
        state.finished = finished
        self.checkpoints.save(shard_id, state)
        if finished:
            self._discovered_at = None  # its children may be ready: list shards again

    def rewind(self, shard_id: str) -> None:
        """Forget the iterator: the next read starts again after the checkpoint."""
        self.iterators.pop(shard_id, None)

    def needs_repair(self, reason: str) -> None:
        log.error("REGION NEEDS REPAIR: %s", reason)
        self.checkpoints.mark_needs_repair(reason)
