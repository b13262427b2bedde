"""Replication throughput and lag on an embedded backend, three regions, one machine.

    .venv/bin/python bench/replication.py [--records 2000]
    .venv/bin/python bench/replication.py --backend endpoint --endpoint-url URL  # your server

1. Ceiling: the same machine's rate of single conditional PutItems at the consumer's write
   concurrency, into a destination table, measured in this run.
2. Throughput: records written in one region while its consumer is stopped, then replicated
   to the two other regions: destination writes per second, and the ratio to the ceiling
   (target >= 0.8).
3. Lag: a steady load at half the measured record rate for a while, consumer running; the
   lag of each applied version is the apply time minus the write's HLC wall time (same
   machine clock), reported as p50/p99 (target p99 < 1 s).
"""

from __future__ import annotations

import argparse
import tempfile
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from service.adapters.backends import start_backend
from service.adapters.metrics import MemoryMetrics
from service.engine.wiring import Consumer
from service.surfaces.commands._common import add_backend_options
from service.surfaces.local import REGIONS, local_replica_set
from service.surfaces.sdk import GeorepTable


def ceiling(clients: list[Any], table: str, *, threads: int, seconds: float) -> float:
    """Conditional PutItems from ``threads`` threads spread over the destination regions: the
    same shape of load georep puts on them."""
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def work(i: int) -> None:
        n = 0
        client = clients[i % len(clients)]
        while time.monotonic() < stop:
            client.put_item(
                TableName=table,
                Item={"pk": {"S": f"ceiling-{i}-{n}"}, "v": {"S": "x" * 40}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            n += 1
        counts[i] = n

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return sum(counts) / seconds


def main() -> None:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    parser.add_argument("--records", type=int, default=2000)
    parser.add_argument("--lag-seconds", type=float, default=10.0)
    args = parser.parse_args()
    with (
        start_backend(args.backend, endpoint_url=args.endpoint_url) as backend,
        tempfile.TemporaryDirectory() as tmp,
    ):
        replicas = local_replica_set(
            backend,
            Path(tmp),
            prefix="bench",
            replication="batch_size = 1000\nwrite_concurrency = 8",
        )
        config, name, session = replicas.config, replicas.table_name, replicas.session()
        clients = {r: replicas.client(r) for r in REGIONS}
        source = REGIONS[0]

        ceiling_rate = ceiling([clients[r] for r in REGIONS[1:]], name, threads=8, seconds=5.0)

        # Throughput: preload the source's stream, then replicate it all.
        sdk = GeorepTable(clients[source], config=config, region=source)
        with ThreadPoolExecutor(8) as pool:
            list(
                pool.map(
                    lambda i: sdk.put({"pk": {"S": f"k{i}"}, "v": {"S": "x" * 40}}),
                    range(args.records),
                )
            )
        metrics = MemoryMetrics()
        consumer = Consumer(config, region=source, session=session, metrics=metrics)
        consumer.setup()
        started = time.perf_counter()
        replicated = 0
        while replicated < args.records:
            replicated += consumer.poll_once()
        elapsed = time.perf_counter() - started
        writes_rate = 2 * args.records / elapsed
        record_rate = args.records / elapsed

        # Lag at half the record rate.
        metrics.histograms.clear()
        stop = threading.Event()
        runner = threading.Thread(target=consumer.run, kwargs={"stop": stop})
        runner.start()
        rate = record_rate / 2
        n, t0 = 0, time.perf_counter()
        while (now := time.perf_counter() - t0) < args.lag_seconds:
            due = int(now * rate)
            while n < due:
                sdk.put({"pk": {"S": f"lag{n % 500}"}, "v": {"S": str(n)}})
                n += 1
            time.sleep(0.002)
        time.sleep(2.0)
        stop.set()
        runner.join()
        consumer.close()
        lags = metrics.histogram("replication_lag_seconds")

        print(f"backend: {backend.name}, 3 regions, write concurrency 8")
        print(f"ceiling (conditional PutItem, 8 threads): {ceiling_rate:,.0f} writes/s")
        print(
            f"georep replication: {record_rate:,.0f} records/s = {writes_rate:,.0f} destination "
            f"writes/s ({args.records} records, {elapsed:.2f}s)"
        )
        print(f"ratio georep writes / ceiling: {writes_rate / ceiling_rate:.2f}x (target >= 0.8x)")
        print(
            f"lag at {rate:,.0f} records/s for {args.lag_seconds:.0f}s ({n} writes, {lags.count} "
            f"applies): p50 {lags.quantile(0.5) * 1000:.0f} ms, "
            f"p99 {lags.quantile(0.99) * 1000:.0f} ms, max {lags.max * 1000:.0f} ms "
            "(target p99 < 1000 ms)"
        )


if __name__ == "__main__":
    main()
