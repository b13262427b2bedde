"""Dead-letter destination: a DynamoDB table in the consumer's region, one item per record.

Each entry holds the full record (as JSON; binary as base64), the reason, the error type and,
for a record that reached destinations, what happened at each (``destinations``: region ->
``"applied (written)"``, ``"rejected (ItemTooLargeError: ...)"``...), so nothing is lost and a
replay knows which regions still lack the record.

``georep dlq replay`` (service/engine/replay.py) feeds a letter's record back through the
Replicator: a letter that applies is removed, one that fails again is updated in place with its
new reason (``replays`` counts the attempts), never stored twice.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import zlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import ulid
from botocore.exceptions import ClientError

from service.adapters.dynamo import ensure_table

PART_BYTES = 300 * 1024


def _json_default(value: object) -> object:
    if isinstance(value, bytes | bytearray):
        return {"__b64__": base64.b64encode(bytes(value)).decode()}
    if isinstance(value, dt.datetime):
        return value.isoformat()
    if isinstance(value, set | frozenset):
        return sorted(value, key=repr)
    return repr(value)


def record_json(record: Mapping[str, Any]) -> str:
    return json.dumps(record, default=_json_default, sort_keys=True)


def _json_object(value: dict[str, Any]) -> Any:
    if value.keys() == {"__b64__"}:
        return base64.b64decode(value["__b64__"])
    return value


def decode_record(text: str) -> dict[str, Any]:
    r"""The record :func:`record_json` stored, as the Replicator takes it: binary values as
    bytes, and a stream's ``ApproximateCreationDateTime`` (a datetime from boto3, stored as its
    ISO form) as a datetime again.

    >>> decode_record('{"dynamodb": {"NewImage": {"b": {"B": {"__b64__": "AP8="}}}}}')
    {'dynamodb': {'NewImage': {'b': {'B': b'\x00\xff'}}}}
    """
    record = json.loads(text, object_hook=_json_object)
    if not isinstance(record, dict):
        return {"record": record}
    body = record.get("dynamodb")
    if isinstance(body, dict) and isinstance(body.get("ApproximateCreationDateTime"), str):
        try:
            created = dt.datetime.fromisoformat(body["ApproximateCreationDateTime"])
        except ValueError:
            return record  # not one record_json wrote: the parser will say what is wrong
        body["ApproximateCreationDateTime"] = created
    return record


@dataclass(frozen=True)
class DeadLetter:
    """One dead letter. ``record``: the record as it was read (decoded); ``destinations``:
    what happened at each destination the last time it was tried."""

    id: str
    region: str
    reason: str
    error: str
    at: int  # epoch seconds it was first dead-lettered
    record: Mapping[str, Any]
    destinations: Mapping[str, str]
    replays: int = 0  # how many times georep dlq replay tried it again
    replayed_at: int | None = None
    # The configured table whose stream the record came from (None: a letter written before
    # georep recorded it, or a record refused before its table was known).
    table: str | None = None


class DynamoDeadLetters:
    def __init__(self, client: Any, *, table_name: str) -> None:
        self.client, self.table_name = client, table_name

    def ensure_table(self) -> None:
        ensure_table(self.client, table_name=self.table_name, key="id")

    def put(
        self,
        *,
        region: str,
        record: Mapping[str, Any],
        reason: str,
        error: str,
        destinations: Mapping[str, str],
        table: str | None = None,
    ) -> None:
        """Store the record compressed, split into parts that each fit an item.

        NOTE: the record that is dead-lettered for being too large is itself near 400 KB, so a
        single item could not hold it; nothing is truncated.
        """
        entry = str(ulid.new())
        blob = zlib.compress(record_json(record).encode(), 6)
        parts = [blob[i : i + PART_BYTES] for i in range(0, len(blob), PART_BYTES)] or [b""]
        for number, part in enumerate(parts):
            item: dict[str, Any] = {
                "id": {"S": entry if number == 0 else f"{entry}#{number}"},
                "record": {"B": part},
            }
            if number == 0:
                item |= {
                    "region": {"S": region},
                    "reason": {"S": reason[:10_000]},
                    "error": {"S": error},
                    "parts": {"N": str(len(parts))},
                    "at": {"N": str(int(time.time()))},
                    "destinations": {
                        "M": {name: {"S": what[:2_000]} for name, what in destinations.items()}
                    },
                }
                if table is not None:
                    item["table"] = {"S": table}
            self.client.put_item(TableName=self.table_name, Item=item)

    def entries(self) -> list[dict[str, Any]]:
        """Every dead letter with its record reassembled (as JSON text)."""
        out = []
        items = self._items()
        for key, item in sorted(items.items()):
            if "#" in key or "parts" not in item:
                continue  # a later part, or a part left behind by an interrupted remove
            out.append(_entry(key, item, items))
        return out

    def letters(self) -> list[DeadLetter]:
        """Every dead letter, oldest first (ids are ULIDs)."""
        return [_letter(entry) for entry in self.entries()]

    def letter(self, entry_id: str) -> DeadLetter | None:
        """The letter ``entry_id``, or None if there is none (replayed, or never was)."""
        head = self._get(entry_id)
        if head is None or "#" in entry_id:
            return None
        items = {entry_id: head}
        for number in range(1, int(head["parts"]["N"])):
            part = self._get(f"{entry_id}#{number}")
            if part is None:
                return None  # removed meanwhile
            items[f"{entry_id}#{number}"] = part
        return _letter(_entry(entry_id, head, items))

    def count(self, *, table: str | None = None) -> int:
        """How many letters there are (reads only their ids), or only ``table``'s."""
        total = 0
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            ConsistentRead=True,
            ProjectionExpression="id, parts, #t",
            ExpressionAttributeNames={"#t": "table"},
        ):
            total += sum(
                "#" not in i["id"]["S"]
                and "parts" in i
                and (table is None or i.get("table", {}).get("S") == table)
                for i in page.get("Items", [])
            )
        return total

    def update(
        self, entry_id: str, *, reason: str, error: str, destinations: Mapping[str, str]
    ) -> bool:
        """Record a failed replay: the new reason, error and outcomes, one more replay. False if
        the letter is gone (a concurrent replay applied and removed it): never recreated."""
        try:
            self.client.update_item(
                TableName=self.table_name,
                Key={"id": {"S": entry_id}},
                UpdateExpression=(
                    "SET reason = :reason, #error = :error, destinations = :destinations, "
                    "replayed_at = :now ADD replays :one"
                ),
                # The letter is still there: an update never creates a headless item.
                ConditionExpression="attribute_exists(id)",
                ExpressionAttributeNames={"#error": "error"},
                ExpressionAttributeValues={
                    ":reason": {"S": reason[:10_000]},
                    ":error": {"S": error},
                    ":destinations": {
                        "M": {name: {"S": what[:2_000]} for name, what in destinations.items()}
                    },
                    ":now": {"N": str(int(time.time()))},
                    ":one": {"N": "1"},
                },
            )
        except ClientError as failure:
            if failure.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                raise
            return False
        return True

    def remove(self, entry_id: str) -> bool:
        """Delete a letter, its first item first: a remove cut short leaves only parts, which
        listing ignores. False if it was already gone."""
        head = self.client.delete_item(
            TableName=self.table_name, Key={"id": {"S": entry_id}}, ReturnValues="ALL_OLD"
        ).get("Attributes")
        if not head:
            return False
        for number in range(1, int(head.get("parts", {}).get("N", "1"))):
            self.client.delete_item(
                TableName=self.table_name, Key={"id": {"S": f"{entry_id}#{number}"}}
            )
        return True

    def _get(self, key: str) -> dict[str, Any] | None:
        item = self.client.get_item(
            TableName=self.table_name, Key={"id": {"S": key}}, ConsistentRead=True
        ).get("Item")
        return dict(item) if item else None

    def _items(self) -> dict[str, dict[str, Any]]:
        items: dict[str, dict[str, Any]] = {}
        paginator = self.client.get_paginator("scan")
        for page in paginator.paginate(TableName=self.table_name, ConsistentRead=True):
            for item in page.get("Items", []):
                items[item["id"]["S"]] = item
        return items


def _entry(
    key: str, head: Mapping[str, Any], items: Mapping[str, Mapping[str, Any]]
) -> dict[str, Any]:
    """A letter's first item and its parts as :meth:`DynamoDeadLetters.entries` gives it."""
    count = int(head["parts"]["N"])
    blob = b"".join(
        bytes(items[key if n == 0 else f"{key}#{n}"]["record"]["B"]) for n in range(count)
    )
    entry = {
        "id": key,
        "region": head["region"]["S"],
        "reason": head["reason"]["S"],
        "error": head["error"]["S"],
        "at": int(head["at"]["N"]),
        "record": zlib.decompress(blob).decode(),
        "destinations": {
            name: value["S"] for name, value in head.get("destinations", {}).get("M", {}).items()
        },
    }
    if "replays" in head:
        entry["replays"] = int(head["replays"]["N"])
    if "replayed_at" in head:
        entry["replayed_at"] = int(head["replayed_at"]["N"])
    if "table" in head:
        entry["table"] = head["table"]["S"]
    return entry


def _letter(entry: Mapping[str, Any]) -> DeadLetter:
    return DeadLetter(
        id=entry["id"],
        region=entry["region"],
        reason=entry["reason"],
        error=entry["error"],
        at=entry["at"],
        record=decode_record(entry["record"]),
        destinations=dict(entry["destinations"]),
        replays=entry.get("replays", 0),
        replayed_at=entry.get("replayed_at"),
        table=entry.get("table"),
    )


@dataclass
class MemoryDeadLetters:
    """The dead-letter table in memory: what :class:`DynamoDeadLetters` does, minus the storage
    format (tests/integration/test_dead_letter_store.py compares them)."""

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
        table: str | None = None,
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
                "table": table,
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
                table=e.get("table"),
            )
            for e in self.entries
        ]

    def letter(self, entry_id: str) -> DeadLetter | None:
        return next((x for x in self.letters() if x.id == entry_id), None)

    def count(self, *, table: str | None = None) -> int:
        return sum(table is None or e.get("table") == table for e in self.entries)

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
