"""What shard leases cost at N shards: one listing, and one tick of a worker holding them all.

    .venv/bin/python bench/leases.py [--shards 1000] [--runs 5] [--concurrency 1,8,32]
    .venv/bin/python bench/leases.py --backend endpoint --endpoint-url URL  # your server

Fills the checkpoint table as a consumer of an N-shard stream would (N checkpoints, N leases,
a status item), then times ``DynamoLeaseTable.list`` (a consistent Scan filtered by the lease
prefix) and a ``LeaseKeeper.tick`` that renews N leases at each ``renew_concurrency`` of
``--concurrency`` (1: one after another; the consumer uses 8), against ``renew_every`` (a third
of the default ``lease_seconds``, 10 s), and prints the bytes the Scan reads,
which is what DynamoDB bills it by (a consistent read unit per 4 KB scanned, filter or no
filter). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import time
from pathlib import Path
from typing import Any

import boto3
from botocore.config import Config

from service.adapters.backends import start_backend
from service.adapters.checkpoints import DynamoCheckpoints
from service.adapters.leases import DynamoLeaseTable, lease_prefix
from service.core.leases import absent, taken
from service.engine.leases import LeaseKeeper
from service.ports import ShardState
from service.surfaces.commands._common import add_backend_options

REGION = "eu-west-1"
TABLE = "georep-checkpoints"
ARN = "arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-11-30T00:00:00.000"


def item_bytes(item: dict[str, Any]) -> int:
    """DynamoDB's item size: attribute names plus values (strings as UTF-8, numbers ~ digits)."""
    size = 0
    for name, value in item.items():
        size += len(name.encode())
        (kind, raw), *_ = value.items()
        size += 1 if kind == "BOOL" else len(str(raw).encode())
    return size


def main() -> None:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    parser.add_argument("--shards", type=int, default=1000)
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--concurrency", default="1,8,32", help="renew_concurrency values")
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    concurrencies = [int(c) for c in args.concurrency.split(",")]
    with start_backend(args.backend, endpoint_url=args.endpoint_url) as backend:
        # A pool as large as the most renewals in flight (the consumer's is larger still).
        client = _client(backend, max(concurrencies) + 8)
        table = DynamoLeaseTable(client, table_name=TABLE)
        table.ensure_table()
        checkpoints = DynamoCheckpoints(client, table_name=TABLE, stream_arn=ARN)
        shards = [f"shardId-{1_700_000_000_000 + i:020d}-{i:08x}" for i in range(args.shards)]
        for shard in shards:
            checkpoints.save(
                shard, ShardState(sequence="4" * 21, finished=False, created_after=1.7e9)
            )
            table.put(
                taken(absent(shard), by="host:4242:" + "0" * 26),
                stream_arn=ARN,
                expected=absent(shard),
            )

        listings = []
        for _ in range(args.runs):
            start = time.perf_counter()
            leases = table.list(stream_arn=ARN)
            listings.append(time.perf_counter() - start)
        assert len(leases) == args.shards

        scanned = 0
        for page in client.get_paginator("scan").paginate(TableName=TABLE, ConsistentRead=True):
            scanned += sum(item_bytes(item) for item in page["Items"])
        lease_items = [
            i
            for i in client.scan(TableName=TABLE)["Items"]
            if i["shard"]["S"].startswith(lease_prefix(ARN))
        ]
        per_lease = statistics.mean(item_bytes(i) for i in lease_items) if lease_items else 0

        for lease in table.list(stream_arn=ARN):  # hand them all to "bench"
            table.put(taken(lease, by="bench"), stream_arn=ARN, expected=lease)
        ticks: dict[int, float] = {}
        for concurrency in concurrencies:
            keeper = LeaseKeeper(
                table,
                stream_arn=ARN,
                owner="bench",
                lease_seconds=1e9,
                renew_concurrency=concurrency,
            )
            start = time.perf_counter()
            held = keeper.tick(shards)  # one listing + N conditional renewals
            ticks[concurrency] = time.perf_counter() - start
            assert len(held) == args.shards

    print(f"backend: {backend.name}, {args.shards} shards, table items {2 * args.shards}")
    print(f"list: median {statistics.median(listings) * 1000:.0f} ms over {args.runs} runs")
    print(
        f"scan reads {scanned / 1024:.0f} KB per listing = "
        f"{math.ceil(scanned / 4096)} consistent RCU (lease item ~{per_lease:.0f} B)"
    )
    renew_every = 10.0 / 3
    for concurrency, seconds in ticks.items():
        print(
            f"tick renewing {args.shards} leases, {concurrency} in flight: {seconds:.2f} s "
            f"({args.shards / seconds:.0f} renewals/s, {seconds / renew_every:.0%} of "
            f"renew_every at the default lease_seconds)"
        )
    if args.json:
        args.json.write_text(
            json.dumps(
                {
                    "backend": backend.name,
                    "shards": args.shards,
                    "list_median_s": round(statistics.median(listings), 3),
                    "scan_kb": round(scanned / 1024),
                    "tick_seconds_by_renew_concurrency": {
                        str(c): round(t, 2) for c, t in ticks.items()
                    },
                    "renew_every_s_default": round(renew_every, 2),
                },
                indent=2,
            )
            + "\n"
        )


def _client(backend: Any, pool: int) -> Any:
    """A DynamoDB client of the backend with ``pool`` connections."""
    return boto3.Session(**backend.credentials_for(REGION)).client(
        "dynamodb",
        region_name=REGION,
        endpoint_url=backend.endpoint_url,
        config=Config(max_pool_connections=pool),
    )


if __name__ == "__main__":
    main()
