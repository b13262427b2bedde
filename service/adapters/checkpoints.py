"""Checkpoint stores: where a region's consumer keeps each shard's position, the stream it
follows, repair markers and its heartbeat. In memory, and in a small DynamoDB table of the
consumer's own region."""

from __future__ import annotations

import time
from dataclasses import dataclass, replace
from typing import Any

from botocore.exceptions import ClientError

from service.adapters.dynamo import ensure_table
from service.core.checkpoints import may_save, position_key
from service.ports import ConsumerStatus, ShardState

CONDITION_FAILED = "ConditionalCheckFailedException"

REPAIR_MARKER = "__needs_repair__"


FOLLOWED_STREAM = "__followed_stream__"


CONSUMER_STATUS = "__consumer_status__"


class MemoryCheckpoints:
    def __init__(self) -> None:
        self.shards: dict[str, ShardState] = {}
        self.repairs: list[str] = []

    @property
    def repair(self) -> str | None:
        """The latest repair marker's reason (the DynamoDB store keeps only the latest)."""
        return self.repairs[-1] if self.repairs else None

    def load(self) -> dict[str, ShardState]:
        return {k: replace(v) for k, v in self.shards.items()}

    def save(self, shard_id: str, state: ShardState) -> bool:
        """Save ``state`` iff it keeps the checkpoint monotonic (atomic, like DynamoDB's)."""
        if not may_save(self.shards.get(shard_id), state):
            return False
        self.shards[shard_id] = replace(state)
        return True

    def mark_needs_repair(self, reason: str) -> None:
        self.repairs.append(reason)


class MemoryCheckpointTable:
    def __init__(self) -> None:
        self.streams: dict[str, MemoryCheckpoints] = {}
        self.followed: str | None = None
        self.statuses: list[ConsumerStatus] = []  # every status saved, the latest last

    def save_status(self, status: ConsumerStatus) -> None:
        self.statuses.append(status)

    def consumer_status(self) -> ConsumerStatus | None:
        return self.statuses[-1] if self.statuses else None

    def for_stream(self, stream_arn: str) -> MemoryCheckpoints:
        return self.streams.setdefault(stream_arn, MemoryCheckpoints())

    def followed_stream(self) -> str | None:
        return self.followed

    def follow(self, stream_arn: str) -> None:
        self.followed = stream_arn


@dataclass(frozen=True)
class RepairMarker:
    """A region's stream lost or skipped records: ``georep verify --repair`` mends and clears."""

    stream_arn: str
    reason: str
    marked_at: float  # epoch seconds (0 for a marker written before georep recorded the time)


class DynamoCheckpoints:
    """One stream's checkpoints in a small table of the consumer's own region (key ``shard``, S:
    ``<stream arn>|<shard id>``)."""

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
                    created = item.get("created_after", {}).get("N")
                    out[name[len(prefix) :]] = ShardState(
                        item.get("sequence", {}).get("S"),
                        item.get("finished", {}).get("BOOL", False),
                        float(created) if created is not None else None,
                    )
        return out

    def save(self, shard_id: str, state: ShardState) -> bool:
        """A conditional PutItem: service.core.checkpoints.may_save as a ConditionExpression.
        False when the condition failed (the stored checkpoint is as far or further)."""
        item = {**self._key(shard_id), "finished": {"BOOL": state.finished}}
        if state.sequence is not None:
            item["sequence"] = {"S": state.sequence}
            item["position"] = {"S": position_key(state.sequence)}
        if state.created_after is not None:
            item["created_after"] = {"N": repr(state.created_after)}
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **_monotonic(state))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                raise
            return False
        return True

    def mark_needs_repair(self, reason: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                **self._key(REPAIR_MARKER),
                "reason": {"S": reason},
                "marked_at": {"N": repr(time.time())},
            },
        )


def _monotonic(new: ShardState) -> dict[str, Any]:
    """may_save as a DynamoDB condition, one named clause per line (``position`` holds the
    stored sequence number's `position_key`, whose string order is the integers' order)."""
    clauses = ["attribute_not_exists(#k)"]  # nothing stored yet
    names = {"#k": "shard"}
    values: dict[str, Any] = {}
    if new.finished or new.sequence is not None:
        names["#f"] = "finished"
        values[":done"] = {"BOOL": True}
        unfinished = "#f <> :done"  # a finished shard stays finished
        if new.finished:
            clauses.append(unfinished)  # finishing: past every record
        else:
            assert new.sequence is not None
            names["#p"] = "position"
            values[":p"] = {"S": position_key(new.sequence)}
            # NOTE: no position stored: a shard only discovered, or a checkpoint saved by a
            # georep before positions (its next save writes one).
            forward = "(attribute_not_exists(#p) OR #p < :p)"  # strictly forward
            clauses.append(f"({unfinished} AND {forward})")
    # An empty state (discovery) only creates.
    condition: dict[str, Any] = {
        "ConditionExpression": " OR ".join(clauses),
        "ExpressionAttributeNames": names,
    }
    if values:
        condition["ExpressionAttributeValues"] = values
    return condition


class DynamoCheckpointTable:
    """Every checkpoint of one replica table, in one table of the consumer's region: shards per
    stream ARN, a repair marker per stream, and the stream the consumer follows (key
    ``table/<replica table>|__followed_stream__``), so that a restart after the stream was
    disabled and enabled again still finds the old stream and the gap between the two."""

    def __init__(self, client: Any, *, table_name: str, replica_table: str) -> None:
        self.client, self.table_name, self.replica_table = client, table_name, replica_table

    def ensure_table(self) -> None:
        ensure_table(self.client, table_name=self.table_name, key="shard")

    def for_stream(self, stream_arn: str) -> DynamoCheckpoints:
        return DynamoCheckpoints(self.client, table_name=self.table_name, stream_arn=stream_arn)

    def _followed_key(self) -> dict[str, Any]:
        return {"shard": {"S": f"table/{self.replica_table}|{FOLLOWED_STREAM}"}}

    def followed_stream(self) -> str | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=self._followed_key(), ConsistentRead=True
        )
        arn = response.get("Item", {}).get("stream", {}).get("S")
        return arn if isinstance(arn, str) else None

    def follow(self, stream_arn: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={**self._followed_key(), "stream": {"S": stream_arn}},
        )

    def _status_key(self) -> dict[str, Any]:
        return {"shard": {"S": f"table/{self.replica_table}|{CONSUMER_STATUS}"}}

    def save_status(self, status: ConsumerStatus) -> None:
        """The consumer's heartbeat (service/engine/heartbeat.py): one item per replica table."""
        item: dict[str, Any] = {**self._status_key(), "stopped": {"BOOL": status.stopped}}
        numbers = {
            "started_at": status.started_at,
            "polled_at": status.polled_at,
            "applied": status.applied,
            "dead_lettered": status.dead_lettered,
            "lag_seconds": status.lag_seconds,
            "last_error_at": status.last_error_at,
        }
        item |= {name: {"N": repr(value)} for name, value in numbers.items() if value is not None}
        if status.last_error is not None:
            item["last_error"] = {"S": status.last_error}
        self.client.put_item(TableName=self.table_name, Item=item)

    def consumer_status(self) -> ConsumerStatus | None:
        """The latest heartbeat of this replica table's consumer, or None if none ever ran."""
        item = self.client.get_item(
            TableName=self.table_name, Key=self._status_key(), ConsistentRead=True
        ).get("Item")
        if not item:
            return None

        def number(name: str) -> float | None:
            value = item.get(name, {}).get("N")
            return float(value) if value is not None else None

        return ConsumerStatus(
            started_at=number("started_at") or 0.0,
            polled_at=number("polled_at"),
            applied=int(number("applied") or 0),
            dead_lettered=int(number("dead_lettered") or 0),
            lag_seconds=number("lag_seconds"),
            last_error=item.get("last_error", {}).get("S"),
            last_error_at=number("last_error_at"),
            stopped=bool(item.get("stopped", {}).get("BOOL", False)),
        )

    def repair_markers(self) -> list[RepairMarker]:
        """Every needs-repair marker of this replica table's streams (one per stream: the
        latest reason), oldest first."""
        markers: list[RepairMarker] = []
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table_name, ConsistentRead=True
        ):
            for item in page.get("Items", []):
                name = item["shard"]["S"]
                stream, _, shard = name.rpartition("|")
                if shard != REPAIR_MARKER or f"table/{self.replica_table}/" not in stream:
                    continue
                marked_at = item.get("marked_at", {}).get("N")
                markers.append(
                    RepairMarker(
                        stream_arn=stream,
                        reason=item.get("reason", {}).get("S", ""),
                        marked_at=float(marked_at) if marked_at is not None else 0.0,
                    )
                )
        return sorted(markers, key=lambda m: m.marked_at)

    def clear_repair_markers(self, *, marked_before: float) -> int:
        """Delete the markers set before ``marked_before`` (epoch seconds: when a clean repair
        pass started), never one set again since (conditional delete). Returns how many."""
        cleared = 0
        for marker in self.repair_markers():
            if marker.marked_at >= marked_before:
                continue
            try:
                self.client.delete_item(
                    TableName=self.table_name,
                    Key={"shard": {"S": f"{marker.stream_arn}|{REPAIR_MARKER}"}},
                    ConditionExpression="attribute_not_exists(marked_at) OR marked_at < :t",
                    ExpressionAttributeValues={":t": {"N": repr(marked_before)}},
                )
            except ClientError as error:
                if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                    raise
                continue  # marked again while the pass ran: keep it
            cleared += 1
        return cleared
