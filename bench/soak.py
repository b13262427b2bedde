"""One consumer replicating a long stream: is its memory flat? (issue 19, ``make bench-soak``)

    .venv/bin/python bench/soak.py [--records 1000000] [--json out.json]

Drives georep's own polling loop and window (service/engine/consumer.py's ``StreamConsumer``
with a real ``Replicator``: 64 writer threads per destination, default batch size, window and
checkpoint interval) over a stream that makes its records as they are read and three replica
tables that take every write and keep nothing (bench/memory.py's ``Discarding``), so that what
the process holds is what the consumer holds, not the backend's data: moto keeps every stream
record it ever made (~3.8 KB each, docs/backends.md) and serves ~300 requests/s, so a million
records through it would take hours and gigabytes that are moto's, not georep's.

Every record is a raw write of a new key (the heavier path: adopted, written to three tables),
with the images and sizes of the side-by-side bench's items. Resident set sampled every 0.25 s
from /proc/self/statm with the records settled by then. Printed and written: records, seconds,
records/s, peak RSS, RSS at 20 % and at the end, and the least-squares slope of RSS against
records after the first 20 % (MB per 100,000 records). Targets: peak < 150 MB, flat.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import threading
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from bench.memory import Discarding, rss_mb, slope_per_100k  # noqa: E402
from resolvers import LastWriterWins  # noqa: E402
from service.adapters.checkpoints import MemoryCheckpointTable  # noqa: E402
from service.adapters.deadletter import MemoryDeadLetters  # noqa: E402
from service.adapters.metrics import MemoryMetrics  # noqa: E402
from service.core.stored import Settings  # noqa: E402
from service.engine.consumer import StreamConsumer  # noqa: E402
from service.engine.pipeline import Replicator  # noqa: E402
from service.ports import ConsumerStatus  # noqa: E402

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
TABLE = "soak"
ARN = f"arn:aws:dynamodb:{REGIONS[0]}:123456789012:table/{TABLE}/stream/2026-12-01T00:00:00.000"
SHARD = "shardId-00000001700000000000-00000001"


class GeneratedStream:
    """A DynamoDB Streams client (and DescribeTable) over ``records`` raw INSERTs made when
    they are read: one open shard, iterators that are just positions."""

    def __init__(self, records: int) -> None:
        self.records = records
        self.base = time.time()

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        return {
            "Table": {
                "TableName": TableName,
                "TableStatus": "ACTIVE",
                "LatestStreamArn": ARN,
                "StreamSpecification": {
                    "StreamEnabled": True,
                    "StreamViewType": "NEW_AND_OLD_IMAGES",
                },
            }
        }

    def describe_stream(self, *, StreamArn: str, **_: Any) -> dict[str, Any]:
        return {
            "StreamDescription": {
                "StreamArn": StreamArn,
                "StreamStatus": "ENABLED",
                "StreamViewType": "NEW_AND_OLD_IMAGES",
                "Shards": [
                    {"ShardId": SHARD, "SequenceNumberRange": {"StartingSequenceNumber": "1"}}
                ],
            }
        }

    def get_shard_iterator(
        self, *, StreamArn: str, ShardId: str, ShardIteratorType: str, SequenceNumber: str = ""
    ) -> dict[str, Any]:
        position = 0
        if ShardIteratorType == "AFTER_SEQUENCE_NUMBER":
            position = int(SequenceNumber)
        elif ShardIteratorType == "AT_SEQUENCE_NUMBER":
            position = int(SequenceNumber) - 1
        return {"ShardIterator": str(position)}

    def get_records(self, *, ShardIterator: str, Limit: int = 1000) -> dict[str, Any]:
        start = int(ShardIterator)
        end = min(self.records, start + Limit)
        return {
            "Records": [self.record(i) for i in range(start, end)],
            "NextShardIterator": str(end),
        }

    def record(self, i: int) -> dict[str, Any]:
        key = {"pk": {"S": f"soak-{i:09d}"}}
        image = {**key, "n": {"N": str(i)}, "w": {"S": REGIONS[0]}, "v": {"S": "x" * 40}}
        return {
            "eventID": f"{i:032x}",
            "eventName": "INSERT",
            "eventSource": "aws:dynamodb",
            "awsRegion": REGIONS[0],
            "dynamodb": {
                "ApproximateCreationDateTime": datetime.fromtimestamp(self.base + i / 1000, UTC),
                "Keys": key,
                "NewImage": image,
                "SequenceNumber": f"{i + 1:021d}",
                "SizeBytes": 120,
                "StreamViewType": "NEW_AND_OLD_IMAGES",
            },
        }


class LatestStatus(MemoryCheckpointTable):
    """The memory checkpoint table, keeping only the latest status (the fake's list of every
    status would be the bench's growth, not the consumer's)."""

    def save_status(self, status: ConsumerStatus) -> None:
        self.statuses[:] = [status]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=1_000_000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()

    settings = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
    metrics = MemoryMetrics()
    tables = {r: Discarding() for r in REGIONS}
    replicator = Replicator(
        region=REGIONS[0],
        settings=settings,
        tables=tables,
        dead_letters=MemoryDeadLetters(),
        metrics=metrics,
    )
    stream = GeneratedStream(args.records)
    checkpoints = LatestStatus()
    consumer = StreamConsumer(
        region=REGIONS[0],
        table_name=TABLE,
        dynamodb=stream,
        streams=stream,
        checkpoints=checkpoints,
        replicator=replicator,
        metrics=metrics,
        checkpoint_every=1.0,
        status_store=checkpoints,
    )
    consumer.setup()
    samples: list[tuple[int, float]] = []
    stop = threading.Event()

    def settled() -> int:
        return int(tables[REGIONS[1]].writes)

    def sample() -> None:
        while not stop.wait(0.25):
            samples.append((settled(), rss_mb()))

    sampler = threading.Thread(target=sample, daemon=True)
    started = time.perf_counter()
    sampler.start()
    last_print = started
    while settled() < args.records:
        if not consumer.poll_once():
            time.sleep(0.001)
        if time.perf_counter() - last_print > 10:
            last_print = time.perf_counter()
            done = settled()
            print(
                f"  {done:,} records, {rss_mb():.1f} MB, "
                f"{done / (last_print - started):,.0f} records/s",
                flush=True,
            )
    consumer.poll_once()  # settle and checkpoint the last batch
    seconds = time.perf_counter() - started
    stop.set()
    sampler.join()
    samples.append((settled(), rss_mb()))
    replicator.close()
    at_20 = next((mb for n, mb in samples if n >= args.records * 0.2), samples[-1][1])
    result = {
        "run": {
            "started": datetime.now(UTC).isoformat(timespec="seconds"),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "nproc": os.cpu_count(),
            "what": "StreamConsumer + Replicator over a generated raw-write stream, discarding "
            "tables, 3 regions, default window and write concurrency",
        },
        "records": args.records,
        "seconds": round(seconds, 1),
        "records_per_s": round(args.records / seconds),
        "writes": {r: t.writes for r, t in tables.items()},
        "rss_peak_mb": round(max(mb for _, mb in samples), 1),
        "rss_at_20pct_mb": round(at_20, 1),
        "rss_end_mb": round(samples[-1][1], 1),
        "rss_slope_mb_per_100k_after_20pct": round(slope_per_100k(samples, args.records), 3),
        "samples": len(samples),
        "targets": {"rss_peak_mb": "< 150", "rss_slope_mb_per_100k_after_20pct": "~0 (flat)"},
    }
    print(
        f"soak: {args.records:,} records in {seconds:.0f} s ({result['records_per_s']:,}/s), "
        f"RSS peak {result['rss_peak_mb']} MB, at 20 % {result['rss_at_20pct_mb']} MB, end "
        f"{result['rss_end_mb']} MB, slope {result['rss_slope_mb_per_100k_after_20pct']} MB "
        "per 100k records after 20 %"
    )
    if args.json:
        args.json.write_text(
            json.dumps({**result, "trace": samples[:: max(1, len(samples) // 200)]}, indent=2)
            + "\n"
        )


if __name__ == "__main__":
    main()
