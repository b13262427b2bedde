"""The in-memory DynamoDB Streams (service/adapters/streams_memory.py) against the emulator, on
the same writes, where the emulator can do the same thing: a new stream's one open shard, the
records in write order through every iterator type and page size, NextShardIterator on an open
shard, DescribeTable's stream fields before and after the stream is disabled.

What the emulator cannot do (split, trim, expire, re-enable; backends.md, moto 8-10) the fake
does as AWS documents it; those parts are pinned by tests/unit/test_consumer.py and the stream
machine, not here."""

from __future__ import annotations

import time
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend, create_replica_table
from service.adapters.streams_memory import MemoryStreams

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
TABLE = "replica"
KEYS = ["k0", "k1", "k0", "k2", "k1"]


def _read(streams: Any, arn: str, shard: str, *, limit: int, **start: str) -> list[Any]:
    """Pages of (event name, key) from one iterator until an empty page; every page of an open
    shard carries a NextShardIterator."""
    iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard, **start)["ShardIterator"]
    pages = []
    while True:
        page = streams.get_records(ShardIterator=iterator, Limit=limit)
        assert "NextShardIterator" in page
        records = [(r["eventName"], r["dynamodb"]["Keys"]["pk"]["S"]) for r in page["Records"]]
        if not records:
            return pages
        pages.append(records)
        iterator = page["NextShardIterator"]


def _view(dynamodb: Any, streams: Any) -> dict[str, Any]:
    table = dynamodb.describe_table(TableName=TABLE)["Table"]
    arn = table["LatestStreamArn"]
    (shard,) = streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
    shard_id, numbers = shard["ShardId"], shard["SequenceNumberRange"]
    iterator = streams.get_shard_iterator(
        StreamArn=arn, ShardId=shard_id, ShardIteratorType="TRIM_HORIZON"
    )["ShardIterator"]
    sequences = [
        r["dynamodb"]["SequenceNumber"]
        for r in streams.get_records(ShardIterator=iterator, Limit=100)["Records"]
    ]
    second = {"SequenceNumber": sequences[1]}
    return {
        "stream enabled": table["StreamSpecification"]["StreamEnabled"],
        "shard has a parent": "ParentShardId" in shard,
        "shard is open": "EndingSequenceNumber" not in numbers,
        "sequence numbers are increasing digits": (
            all(s.isdigit() and len(s) >= 21 for s in sequences)
            and [int(s) for s in sequences] == sorted({int(s) for s in sequences})
        ),
        "by twos": _read(streams, arn, shard_id, limit=2, ShardIteratorType="TRIM_HORIZON"),
        "after the second": _read(
            streams, arn, shard_id, limit=10, ShardIteratorType="AFTER_SEQUENCE_NUMBER", **second
        ),
        "at the second": _read(
            streams, arn, shard_id, limit=10, ShardIteratorType="AT_SEQUENCE_NUMBER", **second
        ),
        "latest": _read(streams, arn, shard_id, limit=10, ShardIteratorType="LATEST"),
    }


def test_the_memory_stream_reads_like_the_emulator_on_the_same_writes(
    backend: EmbeddedBackend,
) -> None:
    dynamodb = backend.client("dynamodb", REGION)
    streams = backend.client("dynamodbstreams", REGION)
    create_replica_table(dynamodb, table_name=TABLE, partition_key="pk", ttl_attribute="ttl")
    fake = MemoryStreams(clock=time.time, table_name=TABLE, region=REGION)
    for n, key in enumerate(KEYS):
        # A distinct value each time: AWS streams nothing for a put that changes nothing.
        dynamodb.put_item(TableName=TABLE, Item={"pk": {"S": key}, "n": {"N": str(n)}})
        fake.write(key)

    expected = _view(dynamodb, streams)
    assert [[("INSERT", "k0"), ("INSERT", "k1")]] == expected["by twos"][:1]
    assert expected == _view(fake, fake)

    arn = dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
    dynamodb.update_table(TableName=TABLE, StreamSpecification={"StreamEnabled": False})
    fake.disable()
    for table in (dynamodb.describe_table(TableName=TABLE), fake.describe_table(TableName=TABLE)):
        assert not table["Table"].get("StreamSpecification", {}).get("StreamEnabled", False)
        assert "LatestStreamArn" in table["Table"]  # the old stream's ARN stays
    assert arn == dynamodb.describe_table(TableName=TABLE)["Table"]["LatestStreamArn"]
