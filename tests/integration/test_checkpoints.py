"""The DynamoDB checkpoint store over HTTP (the embedded moto server): its ConditionExpression
refuses exactly the saves service.core.checkpoints.may_save refuses (the in-memory store applies
that function), and sequence numbers of different lengths compare as integers."""

from __future__ import annotations

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.checkpoints import DynamoCheckpoints, MemoryCheckpoints
from service.core.checkpoints import ShardState

pytestmark = pytest.mark.integration

REGION = "eu-west-1"
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"

# Every transition of one shard's checkpoint the rule distinguishes, in an order that goes
# through each: creates, forward, backward, equal, shorter numbers, finishing, after finishing.
SAVES = [
    ShardState(created_after=5.0),  # discovery: creates
    ShardState(created_after=6.0),  # a peer's discovery: refused
    ShardState(sequence="99", created_after=5.0),  # a first position
    ShardState(sequence="100", created_after=5.0),  # longer is later
    ShardState(sequence="99", created_after=5.0),  # backwards
    ShardState(sequence="100", created_after=5.0),  # not forward
    ShardState(sequence="1000000000000000000000000000000000000001"),  # 40 digits
    ShardState(sequence="999999999999999999999"),  # 21 digits, lexicographically larger
    ShardState(created_after=7.0),  # a reset
    ShardState(sequence="12", finished=True),  # finishing, with a lower number
    ShardState(sequence="2000000000000000000000000000000000000000"),  # past a finished shard
    ShardState(finished=True),  # finished again
    ShardState(created_after=8.0),
]


def test_the_dynamodb_store_refuses_every_save_the_rule_refuses(backend: EmbeddedBackend) -> None:
    """Differential: the same saves, accepted or refused alike, and the same state stored after
    each; another shard's saves are its own."""
    dynamo = DynamoCheckpoints(
        backend.client("dynamodb", REGION), table_name="georep-checkpoints", stream_arn=ARN
    )
    dynamo.ensure_table()
    memory = MemoryCheckpoints()
    answers = []
    for state in SAVES:
        expected = memory.save("s", state)
        answers.append(expected)
        assert expected == dynamo.save("s", state), state
        assert memory.load() == dynamo.load(), state
    accepted = [True, False, True, True, False, False, True, False, False, True, False, False]
    assert [*accepted, False] == answers
    assert dynamo.save("other", ShardState(sequence="1"))
    assert ShardState(sequence="1") == dynamo.load()["other"]
