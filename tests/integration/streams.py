"""Reading a whole stream in tests (the service's own reader is service/engine/streams.py)."""

from __future__ import annotations

import time
from typing import Any, cast


def read_stream(
    streams: Any, arn: str, *, expected: int, timeout: float = 10.0
) -> list[dict[str, Any]]:
    """Every record of every shard from TRIM_HORIZON, once ``expected`` have arrived.

    Keeps polling until ``expected`` records are in (or the deadline passes), then polls once
    more so that a record beyond the expected ones is seen and fails the caller's assertion.
    """
    shards = streams.describe_stream(StreamArn=arn)["StreamDescription"].get("Shards", [])
    iterators: dict[str, str | None] = {
        shard["ShardId"]: streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        for shard in shards
    }
    records: list[dict[str, Any]] = []
    deadline = time.monotonic() + timeout
    settled = False
    while True:
        for shard_id, iterator in iterators.items():
            if iterator is not None:
                page = streams.get_records(ShardIterator=iterator)
                records.extend(cast(list[dict[str, Any]], page.get("Records", [])))
                iterators[shard_id] = page.get("NextShardIterator")
        if len(records) >= expected:
            if settled:
                return records
            settled = True
        elif time.monotonic() > deadline:
            return records
        else:
            time.sleep(0.01)
