"""The conflict log: one item per merge georep wrote, in a table of the consumer's own region.

The Replicator puts an entry (service/core/conflicts.py builds it) once a merge of two
concurrent versions is written at a destination. Entry ids depend on the conflict alone, and a
put of an id already there changes nothing, so a replayed record or a second consumer of the
region never logs a conflict twice. Items expire after ``[replication]
conflict_retention_days`` (TTL on ``expires_at``).

The log is best effort, and says so: a failing sink never fails or holds back replication (the
Replicator logs a warning and counts ``conflict_log_failures``), and a consumer that stops
between writing a merge and logging it does not log it when the record is replayed (the
destination then holds the merge, and the replayed version is skipped as stale). The
``conflicts`` metric counts every merge either way.

With the tombstone store (issue 22) the sink is told the store's name and records it with
each entry (`ConflictEntry.tombstone_table`): a deleted ``existing`` side came from there.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Protocol

from botocore.exceptions import ClientError

from service.adapters.dynamo import ensure_table
from service.core.conflicts import EXPIRES_ATTR, ConflictEntry, decode_entry, encode_entry

__all__ = ["ConflictSink", "DynamoConflicts", "MemoryConflicts"]


class ConflictSink(Protocol):
    def put(self, entry: ConflictEntry) -> None:
        """Keep ``entry``; an entry whose id is already kept is left as it is (idempotent)."""
        ...


@dataclass
class MemoryConflicts:
    """The conflict table in memory (tests): entries by id, the first one kept."""

    by_id: dict[str, ConflictEntry] = field(default_factory=dict)
    tombstone_table: str | None = None

    def put(self, entry: ConflictEntry) -> None:
        self.by_id.setdefault(entry.id, _with_store(entry, self.tombstone_table))

    def entries(self) -> list[ConflictEntry]:
        return sorted(self.by_id.values(), key=lambda e: (e.at, e.id))


def _with_store(entry: ConflictEntry, tombstone_table: str | None) -> ConflictEntry:
    """``entry`` naming the tombstone store its destination keeps tombstones in, unless it
    names one already (the Replicator may say so itself)."""
    if tombstone_table is None or entry.tombstone_table is not None:
        return entry
    return replace(entry, tombstone_table=tombstone_table)


class DynamoConflicts:
    """The conflict table: hash key ``id`` (S), TTL on ``expires_at``. ``tombstone_table``:
    the tombstone store every region keeps tombstones in, if deletes use one."""

    def __init__(
        self,
        client: Any,
        *,
        table_name: str,
        retention_days: int = 30,
        tombstone_table: str | None = None,
    ) -> None:
        self.client, self.table_name = client, table_name
        self.retention_days = retention_days
        self.tombstone_table = tombstone_table

    def ensure_table(self) -> None:
        """Create the table unless it exists, and turn its TTL on."""
        ensure_table(self.client, table_name=self.table_name, key="id")
        ttl = self.client.describe_time_to_live(TableName=self.table_name)
        if ttl.get("TimeToLiveDescription", {}).get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
            return
        self.client.update_time_to_live(
            TableName=self.table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": EXPIRES_ATTR},
        )

    def put(self, entry: ConflictEntry) -> None:
        """One PutItem; the first entry of an id is kept (its ``at`` is when the merge was
        first logged), a replay's is dropped by the condition."""
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=encode_entry(
                    _with_store(entry, self.tombstone_table), retention_days=self.retention_days
                ),
                # Logged already (a replay, another consumer of the region): keep the first.
                ConditionExpression="attribute_not_exists(id)",
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise

    def entries(self) -> list[ConflictEntry]:
        """Every entry still kept, oldest first (a scan: for the CLI and tests)."""
        found: list[ConflictEntry] = []
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table_name, ConsistentRead=True
        ):
            found.extend(decode_entry(item) for item in page.get("Items", []))
        return sorted(found, key=lambda e: (e.at, e.id))
