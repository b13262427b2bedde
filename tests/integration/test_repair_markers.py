"""Needs-repair markers in the checkpoint table, over HTTP: listed per replica table, and
cleared only if they were set before a clean repair pass began."""

from __future__ import annotations

import time

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.checkpoints import DynamoCheckpoints, DynamoCheckpointTable
from service.ports import ConsumerStatus

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


def test_the_consumer_status_round_trips_and_never_looks_like_a_checkpoint_or_a_marker(
    backend: EmbeddedBackend,
) -> None:
    """What the consumer saves is what ``georep status`` reads, field for field (optional
    fields absent too), and it is neither a shard checkpoint nor a repair marker."""
    client = backend.client("dynamodb", REGION)
    table = DynamoCheckpointTable(client, table_name="georep-checkpoints", replica_table="orders")
    table.ensure_table()
    assert None is table.consumer_status()
    full = ConsumerStatus(
        started_at=1_700_000_000.25,
        polled_at=1_700_000_100.5,
        applied=12,
        dead_lettered=1,
        lag_seconds=0.125,
        last_error="shard s-1: ThrottlingException: slow down",
        last_error_at=1_700_000_050.0,
        stopped=True,
    )
    for status in (full, ConsumerStatus(1.0, None, 0, 0, None)):
        table.save_status(status)
        assert status == table.consumer_status()
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"
    assert {} == table.for_stream(arn).load()
    assert [] == table.repair_markers()
