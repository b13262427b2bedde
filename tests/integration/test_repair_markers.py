"""Needs-repair markers in the checkpoint table, over HTTP: listed per replica table, and
cleared only if they were set before a clean repair pass began."""

from __future__ import annotations

import time

import pytest

from service.backends import EmbeddedBackend
from service.streams import DynamoCheckpoints, DynamoCheckpointTable

pytestmark = pytest.mark.integration

REGION = "eu-west-1"


def test_markers_are_listed_per_table_and_cleared_only_if_set_before_the_pass(
    backend: EmbeddedBackend,
) -> None:
    client = backend.client("dynamodb", REGION)
    table = DynamoCheckpointTable(client, table_name="georep-checkpoints", replica_table="orders")
    table.ensure_table()
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"
    other = "arn:aws:dynamodb:eu-west-1:123456789012:table/payments/stream/2026-11-30T00:00:00.000"
    DynamoCheckpoints(client, table_name="georep-checkpoints", stream_arn=arn).mark_needs_repair(
        "shard-1 trimmed"
    )
    DynamoCheckpoints(client, table_name="georep-checkpoints", stream_arn=other).mark_needs_repair(
        "not ours"
    )
    [marker] = table.repair_markers()
    assert (marker.stream_arn, marker.reason) == (arn, "shard-1 trimmed")

    assert 0 == table.clear_repair_markers(marked_before=marker.marked_at)  # set during the pass
    assert 1 == len(table.repair_markers())
    assert 1 == table.clear_repair_markers(marked_before=time.time() + 1)
    assert [] == table.repair_markers()
