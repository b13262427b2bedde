"""Dead-letter destination: a DynamoDB table in the consumer's region, one item per record.

Each entry holds the full record (as JSON; binary as base64), the reason and the error type,
so nothing is lost and `georep dlq` can show and replay them.
"""

from __future__ import annotations

import base64
import datetime as dt
import json
import time
from collections.abc import Mapping
from typing import Any

import ulid


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
        from botocore.exceptions import ClientError

        try:
            self.client.create_table(
                TableName=self.table_name,
                KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
                AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
                BillingMode="PAY_PER_REQUEST",
            )
            self.client.get_waiter("table_exists").wait(
                TableName=self.table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
                raise

    def put(self, *, region: str, record: Mapping[str, Any], reason: str, error: str) -> None:
        self.client.put_item(
            TableName=self.table_name,
            Item={
                "id": {"S": str(ulid.new())},
                "region": {"S": region},
                "reason": {"S": reason[:10_000]},
                "error": {"S": error},
                "record": {"S": record_json(record)},
                "at": {"N": str(int(time.time()))},
            },
        )

    def entries(self) -> list[dict[str, Any]]:
        paginator = self.client.get_paginator("scan")
        out = []
        for page in paginator.paginate(TableName=self.table_name, ConsistentRead=True):
            for item in page.get("Items", []):
                out.append({k: next(iter(v.values())) for k, v in item.items()})
        return sorted(out, key=lambda e: e["id"])
