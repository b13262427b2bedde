"""TransactWriteItems on the embedded moto server behaves as DynamoDB's (issue 22): every
condition first, then all of the writes or none, and a cancelled transaction neither writes
nor streams anything, nor disturbs a stream iterator taken before it
(service/adapters/backends/_moto_transactions.py; moto 5.2's own put back a copy of each
table, docs/backends.md deviation 6)."""

from __future__ import annotations

from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from service.adapters.backends import EmbeddedBackend, create_replica_table

pytestmark = pytest.mark.integration

REGION = "eu-west-1"


def new_table(backend: EmbeddedBackend, name: str) -> str:
    return create_replica_table(
        backend.client("dynamodb", REGION),
        table_name=name,
        partition_key="pk",
        ttl_attribute="expires_at",
    )


def latest_iterator(backend: EmbeddedBackend, arn: str) -> str:
    streams = backend.client("dynamodbstreams", REGION)
    shard = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
    return streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="LATEST"
    )["ShardIterator"]


def records_after(backend: EmbeddedBackend, iterator: str) -> list[dict[str, Any]]:
    streams = backend.client("dynamodbstreams", REGION)
    return cast(list[dict[str, Any]], streams.get_records(ShardIterator=iterator)["Records"])


def images(records: list[dict[str, Any]]) -> list[tuple[str, str]]:
    return [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in records]


def test_a_cancelled_transaction_writes_nothing_streams_nothing_and_says_why_per_action(
    backend: EmbeddedBackend,
) -> None:
    arn = new_table(backend, "items")
    new_table(backend, "store")
    dynamodb = backend.client("dynamodb", REGION)
    dynamodb.put_item(TableName="store", Item={"pk": {"S": "k"}, "t": {"N": "7"}})
    iterator = latest_iterator(backend, arn)

    with pytest.raises(ClientError) as cancelled:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "items", "Item": {"pk": {"S": "k"}, "v": {"S": "a"}}}},
                {
                    "ConditionCheck": {
                        "TableName": "store",
                        "Key": {"pk": {"S": "k"}},
                        "ConditionExpression": "attribute_not_exists(pk)",
                        "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
                    }
                },
            ]
        )
    dynamodb.put_item(TableName="items", Item={"pk": {"S": "later"}})

    response = cast(dict[str, Any], cancelled.value.response)
    assert "TransactionCanceledException" == response["Error"]["Code"]
    reasons = response["CancellationReasons"]
    assert ["None", "ConditionalCheckFailed"] == [r["Code"] for r in reasons]
    assert {"pk": {"S": "k"}, "t": {"N": "7"}} == reasons[1]["Item"]
    assert "Item" not in dynamodb.get_item(TableName="items", Key={"pk": {"S": "k"}})
    # The iterator taken before reads on: the later write, and no record of the cancelled put.
    assert [("INSERT", "later")] == images(records_after(backend, iterator))


def test_a_transaction_across_two_tables_writes_both_and_each_stream_records_its_own(
    backend: EmbeddedBackend,
) -> None:
    items, store = new_table(backend, "items"), new_table(backend, "store")
    dynamodb = backend.client("dynamodb", REGION)
    dynamodb.put_item(TableName="items", Item={"pk": {"S": "k"}, "v": {"S": "a"}})
    cursors = {arn: latest_iterator(backend, arn) for arn in (items, store)}

    dynamodb.transact_write_items(
        TransactItems=[
            {
                "Delete": {
                    "TableName": "items",
                    "Key": {"pk": {"S": "k"}},
                    "ConditionExpression": "v = :a",
                    "ExpressionAttributeValues": {":a": {"S": "a"}},
                }
            },
            {
                "Put": {
                    "TableName": "store",
                    "Item": {"pk": {"S": "k"}, "t": {"N": "1"}},
                    "ConditionExpression": "attribute_not_exists(pk)",
                }
            },
        ]
    )

    assert "Item" not in dynamodb.get_item(TableName="items", Key={"pk": {"S": "k"}})
    stored = dynamodb.get_item(TableName="store", Key={"pk": {"S": "k"}})["Item"]
    assert {"pk": {"S": "k"}, "t": {"N": "1"}} == stored
    assert [("REMOVE", "k")] == images(records_after(backend, cursors[items]))
    assert [("INSERT", "k")] == images(records_after(backend, cursors[store]))


def test_an_action_rejected_while_writing_undoes_the_ones_before_it(
    backend: EmbeddedBackend,
) -> None:
    """An update moto refuses only when it applies it (setting a key attribute): the put
    before it in the transaction is undone, item and stream record."""
    arn = new_table(backend, "items")
    dynamodb = backend.client("dynamodb", REGION)
    dynamodb.put_item(TableName="items", Item={"pk": {"S": "old"}, "v": {"S": "kept"}})
    iterator = latest_iterator(backend, arn)

    with pytest.raises(ClientError) as refused:
        dynamodb.transact_write_items(
            TransactItems=[
                {"Put": {"TableName": "items", "Item": {"pk": {"S": "new"}}}},
                {
                    "Update": {
                        "TableName": "items",
                        "Key": {"pk": {"S": "old"}},
                        "UpdateExpression": "SET pk = :other",
                        "ExpressionAttributeValues": {":other": {"S": "x"}},
                    }
                },
            ]
        )
    dynamodb.put_item(TableName="items", Item={"pk": {"S": "later"}})

    assert "ValidationException" == refused.value.response["Error"]["Code"]
    assert "Item" not in dynamodb.get_item(TableName="items", Key={"pk": {"S": "new"}})
    old = dynamodb.get_item(TableName="items", Key={"pk": {"S": "old"}})["Item"]
    assert {"pk": {"S": "old"}, "v": {"S": "kept"}} == old
    assert [("INSERT", "later")] == images(records_after(backend, iterator))
