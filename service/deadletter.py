"""Dead-letter destination: a DynamoDB table in the consumer's region, one item per record.

Each entry holds the full record (as JSON; binary as base64), the reason, the error type and,
for a record that reached destinations, what happened at each (``destinations``: region ->
``"applied (written)"``, ``"rejected (ItemTooLargeError: ...)"``...), so nothing is lost and a
replay knows which regions still lack the record.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
import zlib
from collections.abc import Mapping
from typing import Any

import ulid

from service.dynamo import ensure_table

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
            self.client.put_item(TableName=self.table_name, Item=item)

    def entries(self) -> list[dict[str, Any]]:
        """Every dead letter with its record reassembled (as JSON text)."""
        paginator = self.client.get_paginator("scan")
        items: dict[str, dict[str, Any]] = {}
        for page in paginator.paginate(TableName=self.table_name, ConsistentRead=True):
            for item in page.get("Items", []):
                items[item["id"]["S"]] = item
        out = []
        for key, item in sorted(items.items()):
            if "#" in key:
                continue
            count = int(item["parts"]["N"])
            blob = b"".join(
                bytes(items[key if n == 0 else f"{key}#{n}"]["record"]["B"]) for n in range(count)
            )
            out.append(
                {
                    "id": key,
                    "region": item["region"]["S"],
                    "reason": item["reason"]["S"],
                    "error": item["error"]["S"],
                    "at": int(item["at"]["N"]),
                    "record": zlib.decompress(blob).decode(),
                    "destinations": {
                        name: value["S"]
                        for name, value in item.get("destinations", {}).get("M", {}).items()
                    },
                }
            )
        return out
