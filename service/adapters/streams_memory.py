"""DynamoDB Streams for one table, in memory: what a stream consumer must survive, on demand.

:class:`MemoryStreams` answers the streams client's DescribeStream, GetShardIterator and
GetRecords and the DynamoDB client's DescribeTable, the way AWS does
(../shared/reference/backends.md, "AWS behaviour to design for"), including what the emulators
cannot be made to do:

* shards close and split into one or two children; a key's records stay in one lineage;
* records are trimmed 24 h after they were written, and a closed shard disappears from the
  listing once its records are; an iterator below the trim horizon, or a sequence number older
  than it, is a TrimmedDataAccessException;
* iterators expire 15 minutes after they were handed out (ExpiredIteratorException);
* disabling the stream closes its shards, which stay readable for 24 h, then the stream is gone
  (ResourceNotFoundException); enabling it again makes a new stream with a new ARN, while
  writes made in between are in no stream;
* any call can be made to fail with a queued error (:meth:`fail`, :func:`client_error`).

Time is the caller's clock (seconds). Sequence numbers increase across the whole table, so they
order every record ever streamed. Checked against moto, where moto can do the same thing, by
tests/integration/test_streams_memory.py.
"""

from __future__ import annotations

import zlib
from bisect import bisect_right
from collections import Counter, defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from botocore.exceptions import ClientError

# The error codes DynamoDB Streams answers with, spelled here as AWS does: the fake does not
# borrow them from the reader it is used to test.
EXPIRED = "ExpiredIteratorException"
TRIMMED = "TrimmedDataAccessException"
NOT_FOUND = "ResourceNotFoundException"

RETENTION_SECONDS = 24 * 3600.0
ITERATOR_SECONDS = 15 * 60.0


def client_error(code: str, operation: str, *, status: int = 400, message: str = "") -> ClientError:
    """The exception boto3 raises for an AWS error answer."""
    response: Any = {
        "Error": {"Code": code, "Message": message or code},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, operation)


@dataclass
class StreamedRecord:
    sequence: int
    key: str
    written_at: float
    stream_arn: str
    shard_id: str
    record: dict[str, Any]


@dataclass
class _Shard:
    shard_id: str
    parent: str | None
    start: int  # starting sequence number
    records: list[StreamedRecord] = field(default_factory=list)
    trimmed: int = 0  # records[:trimmed] are gone
    closed_at: float | None = None
    end: int | None = None  # ending sequence number, once closed


@dataclass
class _Stream:
    arn: str
    label: str
    created_at: float
    shards: dict[str, _Shard] = field(default_factory=dict)
    disabled_at: float | None = None


class MemoryStreams:
    """One table with its stream(s); see the module docstring."""

    def __init__(
        self,
        *,
        clock: Callable[[], float],
        table_name: str = "georep-table",
        region: str = "us-east-1",
        key_attribute: str = "pk",
        retention: float = RETENTION_SECONDS,
        iterator_lifetime: float = ITERATOR_SECONDS,
        page_size: int = 100,
    ) -> None:
        self.clock, self.table_name, self.region = clock, table_name, region
        self.key_attribute = key_attribute
        self.retention, self.iterator_lifetime, self.page_size = (
            retention,
            iterator_lifetime,
            page_size,
        )
        self.streams: dict[str, _Stream] = {}
        self.latest: str | None = None
        self.enabled = False
        self.table_exists = True
        self.errors: dict[str, list[Exception]] = defaultdict(list)
        self.calls: Counter[str] = Counter()
        self.unstreamed: list[tuple[str, float]] = []  # writes while no stream was enabled
        self._sequence = 10**20
        self._shard_serial = 0
        self._stream_serial = 0
        self._owner: dict[str, str] = {}  # key -> the shard its last record went to
        self.lineage: dict[str, str | None] = {}  # every shard ever -> its parent (kept)
        self.enable()

    # -- what happens to the table -----------------------------------------------------------

    def write(self, key: str) -> StreamedRecord | None:
        """A write of item ``key``: its stream record, or None when no stream is enabled."""
        now = self.clock()
        if not self.enabled or self.latest is None:
            self.unstreamed.append((key, now))
            return None
        stream = self.streams[self.latest]
        shard = self._shard_for(stream, key)
        self._sequence += 1
        sequence = str(self._sequence)
        record = {
            "eventID": f"{sequence[-8:]}-{len(shard.records)}",
            "eventName": "MODIFY" if key in self._owner else "INSERT",
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": {
                "ApproximateCreationDateTime": datetime.fromtimestamp(int(now), UTC),
                "Keys": {self.key_attribute: {"S": key}},
                "SequenceNumber": sequence,
                "SizeBytes": 10,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }
        streamed = StreamedRecord(self._sequence, key, now, stream.arn, shard.shard_id, record)
        shard.records.append(streamed)
        self._owner[key] = shard.shard_id
        return streamed

    def _shard_for(self, stream: _Stream, key: str) -> _Shard:
        """The open shard of the key's lineage (a key stays in one lineage, as on AWS)."""
        shard = stream.shards.get(self._owner.get(key, ""))
        while shard is not None and shard.closed_at is not None:
            children = [s for _, s in sorted(stream.shards.items()) if s.parent == shard.shard_id]
            shard = children[zlib.crc32(key.encode()) % len(children)] if children else None
        if shard is None:
            open_shards = [s for _, s in sorted(stream.shards.items()) if s.closed_at is None]
            shard = open_shards[zlib.crc32(key.encode()) % len(open_shards)]
        return shard

    def open_shards(self) -> list[str]:
        if not self.enabled or self.latest is None:
            return []
        shards = self.streams[self.latest].shards.values()
        return sorted(s.shard_id for s in shards if s.closed_at is None)

    def split(self, shard_id: str, *, children: int = 2) -> list[str]:
        """Close an open shard of the enabled stream; its keys go on in ``children`` new ones."""
        assert self.latest is not None
        stream = self.streams[self.latest]
        parent = stream.shards[shard_id]
        assert parent.closed_at is None, "only an open shard splits"
        self._close(parent)
        return [self._new_shard(stream, parent=shard_id).shard_id for _ in range(children)]

    def disable(self) -> None:
        """Disable the stream: its shards close and stay readable until the retention passes."""
        if not self.enabled or self.latest is None:
            return
        stream = self.streams[self.latest]
        stream.disabled_at = self.clock()
        for shard in stream.shards.values():
            if shard.closed_at is None:
                self._close(shard)
        self.enabled = False

    def enable(self) -> str:
        """Enable the stream: a new stream, with a new ARN and one shard."""
        if self.enabled and self.latest is not None:
            return self.latest
        now = self.clock()
        stamp = datetime.fromtimestamp(now, UTC).isoformat(timespec="seconds")
        self._stream_serial += 1
        label = f"{stamp}.{self._stream_serial:03d}"
        arn = f"arn:aws:dynamodb:{self.region}:000000000000:table/{self.table_name}/stream/{label}"
        self.streams[arn] = _Stream(arn, label, now)
        self._new_shard(self.streams[arn], parent=None)
        self.latest, self.enabled = arn, True
        return arn

    def delete_table(self) -> None:
        self.table_exists = False

    def fail(self, operation: str, error: Exception) -> None:
        """The next call of ``operation`` (e.g. ``"get_records"``) raises ``error``."""
        self.errors[operation].append(error)

    def _close(self, shard: _Shard) -> None:
        shard.closed_at = self.clock()
        shard.end = shard.records[-1].sequence if shard.records else shard.start

    def _new_shard(self, stream: _Stream, *, parent: str | None) -> _Shard:
        self._shard_serial += 1
        shard_id = f"shardId-{self._shard_serial:020d}-{zlib.crc32(stream.arn.encode()):08x}"
        shard = _Shard(shard_id, parent, start=self._sequence + 1)
        stream.shards[shard_id] = shard
        self.lineage[shard_id] = parent
        return shard

    # -- retention ---------------------------------------------------------------------------

    def _trim(self) -> None:
        horizon = self.clock() - self.retention
        for arn, stream in list(self.streams.items()):
            if stream.disabled_at is not None and stream.disabled_at <= horizon:
                del self.streams[arn]  # a disabled stream lives as long as its records
                continue
            for shard_id, shard in list(stream.shards.items()):
                while (
                    shard.trimmed < len(shard.records)
                    and shard.records[shard.trimmed].written_at <= horizon
                ):
                    shard.trimmed += 1
                if shard.closed_at is not None and shard.closed_at <= horizon:
                    del stream.shards[shard_id]

    def is_lost(self, record: StreamedRecord) -> bool:
        """The record can no longer be read: trimmed, or its shard or stream is gone."""
        self._trim()
        return record.written_at <= self.clock() - self.retention

    # -- the clients' side -------------------------------------------------------------------

    def _call(self, operation: str) -> None:
        self.calls[operation] += 1
        self._trim()
        if self.errors[operation]:
            raise self.errors[operation].pop(0)

    def _stream(self, arn: str, operation: str) -> _Stream:
        stream = self.streams.get(arn)
        if stream is None:
            raise client_error(NOT_FOUND, operation, message=f"Requested resource not found: {arn}")
        return stream

    def describe_stream(
        self, *, StreamArn: str, ExclusiveStartShardId: str | None = None, Limit: int = 100
    ) -> dict[str, Any]:
        self._call("describe_stream")
        stream = self._stream(StreamArn, "DescribeStream")
        ids = sorted(stream.shards)
        if ExclusiveStartShardId is not None:
            ids = [i for i in ids if i > ExclusiveStartShardId]
        page = ids[: min(Limit, self.page_size)]
        shards = []
        for shard_id in page:
            shard = stream.shards[shard_id]
            numbers = {"StartingSequenceNumber": str(shard.start)}
            if shard.end is not None:
                numbers["EndingSequenceNumber"] = str(shard.end)
            shards.append(
                {
                    "ShardId": shard_id,
                    **({"ParentShardId": shard.parent} if shard.parent else {}),
                    "SequenceNumberRange": numbers,
                }
            )
        description: dict[str, Any] = {
            "StreamArn": stream.arn,
            "StreamLabel": stream.label,
            "StreamStatus": "DISABLED" if stream.disabled_at is not None else "ENABLED",
            "StreamViewType": "NEW_AND_OLD_IMAGES",
            "CreationRequestDateTime": datetime.fromtimestamp(stream.created_at, UTC),
            "TableName": self.table_name,
            "KeySchema": [{"AttributeName": self.key_attribute, "KeyType": "HASH"}],
            "Shards": shards,
        }
        if len(ids) > len(page):
            description["LastEvaluatedShardId"] = page[-1]
        return {"StreamDescription": description}

    def get_shard_iterator(
        self,
        *,
        StreamArn: str,
        ShardId: str,
        ShardIteratorType: str,
        SequenceNumber: str | None = None,
    ) -> dict[str, Any]:
        self._call("get_shard_iterator")
        stream = self._stream(StreamArn, "GetShardIterator")
        shard = stream.shards.get(ShardId)
        if shard is None:
            raise client_error(NOT_FOUND, "GetShardIterator", message=f"Shard {ShardId} not found")
        sequences = [r.sequence for r in shard.records]
        if ShardIteratorType == "TRIM_HORIZON":
            position = shard.trimmed
        elif ShardIteratorType == "LATEST":
            position = len(shard.records)
        else:
            if SequenceNumber is None:
                raise client_error("ValidationException", "GetShardIterator")
            after = ShardIteratorType == "AFTER_SEQUENCE_NUMBER"
            position = bisect_right(sequences, int(SequenceNumber) - (0 if after else 1))
            # AWS: a sequence number older than the trim point is trimmed data.
            if shard.trimmed and int(SequenceNumber) <= sequences[shard.trimmed - 1]:
                raise client_error(TRIMMED, "GetShardIterator")
        return {"ShardIterator": self._iterator(stream, shard, position)}

    def _iterator(self, stream: _Stream, shard: _Shard, position: int) -> str:
        return f"{stream.arn}|{shard.shard_id}|{position}|{self.clock()!r}"

    def get_records(self, *, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:
        self._call("get_records")
        arn, shard_id, position_text, issued = ShardIterator.rsplit("|", 3)
        if self.clock() - float(issued) > self.iterator_lifetime:
            raise client_error(EXPIRED, "GetRecords")
        stream = self._stream(arn, "GetRecords")
        shard = stream.shards.get(shard_id)
        position = int(position_text)
        if shard is None or position < shard.trimmed:
            raise client_error(TRIMMED, "GetRecords")
        batch = shard.records[position : position + Limit]
        following = position + len(batch)
        response: dict[str, Any] = {"Records": [r.record for r in batch]}
        if shard.closed_at is None or following < len(shard.records):
            response["NextShardIterator"] = self._iterator(stream, shard, following)
        return response

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        self._call("describe_table")
        if not self.table_exists or TableName != self.table_name:
            raise client_error(NOT_FOUND, "DescribeTable", message=f"Table not found: {TableName}")
        table: dict[str, Any] = {"TableName": self.table_name, "TableStatus": "ACTIVE"}
        if self.latest is not None:  # it stays after the stream is disabled, as on AWS
            table["LatestStreamArn"] = self.latest
            table["LatestStreamLabel"] = self.latest.rsplit("/", 1)[-1]
        if self.enabled:
            table["StreamSpecification"] = {
                "StreamEnabled": True,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            }
        return {"Table": table}
