"""Lease tables: where a region's consumers record who reads which shard. In memory, and in
the checkpoint table of the consumer's region (conditional writes: a lease changes hands only
from the holder the writer last saw). The protocol itself is service/engine/leases.py."""

from __future__ import annotations

from typing import Any

from botocore.exceptions import ClientError

from service.adapters.dynamo import ensure_table
from service.core.leases import Lease, condition_holds

CONDITION_FAILED = "ConditionalCheckFailedException"


class MemoryLeaseTable:
    """The in-memory lease table (atomic conditional writes, like DynamoDB)."""

    def __init__(self) -> None:
        self.items: dict[tuple[str, str], Lease] = {}

    def list(self, *, stream_arn: str) -> list[Lease]:
        return [lease for (arn, _), lease in sorted(self.items.items()) if arn == stream_arn]

    def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool:
        key = (stream_arn, new.shard)
        if not condition_holds(self.items.get(key), expected):
            return False
        self.items[key] = new
        return True


class DynamoLeaseTable:
    """Leases as items of the checkpoint table (boto3 low-level client). Listing is a consistent
    Scan filtered by ``lease/<stream arn>|`` (docs/decisions.md: cost at 1,000 shards)."""

    def __init__(self, client: Any, *, table_name: str) -> None:
        self.client, self.table_name = client, table_name

    def ensure_table(self) -> None:
        ensure_table(self.client, table_name=self.table_name, key="shard")

    def list(self, *, stream_arn: str) -> list[Lease]:
        prefix = lease_prefix(stream_arn)
        leases = []
        for page in self.client.get_paginator("scan").paginate(
            TableName=self.table_name,
            ConsistentRead=True,
            FilterExpression="begins_with(#k, :p)",
            ExpressionAttributeNames={"#k": "shard"},
            ExpressionAttributeValues={":p": {"S": prefix}},
        ):
            for item in page.get("Items", []):
                leases.append(
                    Lease(
                        item["shard"]["S"][len(prefix) :],
                        owner=item.get("owner", {}).get("S"),
                        counter=int(item["counter"]["N"]),
                        wanted_by=item.get("wanted_by", {}).get("S"),
                    )
                )
        return sorted(leases, key=lambda lease: lease.shard)

    def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool:
        item: dict[str, Any] = {
            "shard": {"S": lease_prefix(stream_arn) + new.shard},
            "counter": {"N": str(new.counter)},
        }
        if new.owner is not None:
            item["owner"] = {"S": new.owner}
        if new.wanted_by is not None:
            item["wanted_by"] = {"S": new.wanted_by}
        try:
            self.client.put_item(TableName=self.table_name, Item=item, **_condition(expected))
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != CONDITION_FAILED:
                raise
            return False  # someone wrote the lease since we listed it: not ours
        return True


def _condition(expected: Lease) -> dict[str, Any]:
    """condition_holds as a DynamoDB condition, one named clause per line."""
    if expected.counter == 0:
        # No item yet: the first take of this shard.
        return {
            "ConditionExpression": "attribute_not_exists(#k)",
            "ExpressionAttributeNames": {"#k": "shard"},
        }
    clauses = ["#c = :c"]  # nobody took, renewed or released it since the listing
    names = {"#c": "counter"}
    values: dict[str, Any] = {":c": {"N": str(expected.counter)}}
    if expected.owner is None:
        clauses.append("attribute_not_exists(#o)")  # still free
    else:
        clauses.append("#o = :o")  # still the same holder
        values[":o"] = {"S": expected.owner}
    names["#o"] = "owner"
    return {
        "ConditionExpression": " AND ".join(clauses),
        "ExpressionAttributeNames": names,
        "ExpressionAttributeValues": values,
    }


LEASE_PREFIX = "lease/"


def lease_prefix(stream_arn: str) -> str:
    return f"{LEASE_PREFIX}{stream_arn}|"
