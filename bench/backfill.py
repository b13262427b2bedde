"""Backfill throughput on an embedded backend: three regions, one machine, no consumers.

    .venv/bin/python bench/backfill.py [--items 100000] [--segments 4] [--workers 16]
    .venv/bin/python bench/backfill.py --backend endpoint --endpoint-url URL  # your server

A table of ``--items`` raw items (never stamped, as before onboarding: 5 attributes, about
100 bytes) is populated in the first region with BatchWriteItem, then ``georep backfill
--from <first region> --json`` runs as a user runs it: every item is stamped in place and
delivered to the two other regions. Printed: the items per second the command reports
(scanned / its own elapsed time) and the wall time of the whole command, process start
included. Each item costs one UpdateItem in the source and one conditional PutItem per
destination, plus its share of the Scan, so the ceiling is the backend's request rate / 3.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

from service.adapters.backends import start_backend
from service.surfaces.commands._common import add_backend_options
from service.surfaces.local import REGIONS, local_replica_set


def item(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"item-{i:08d}"},
        "name": {"S": f"customer {i}"},
        "balance": {"N": str(i % 9973)},
        "active": {"BOOL": i % 3 == 0},
        "tags": {"SS": ["a", f"t{i % 17}"]},
    }


def populate(client: Any, table: str, count: int, *, threads: int = 8) -> None:
    def chunk(start: int) -> None:
        requests = {
            table: [{"PutRequest": {"Item": item(i)}} for i in range(start, min(start + 25, count))]
        }
        while requests:
            requests = client.batch_write_item(RequestItems=requests).get("UnprocessedItems")

    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(chunk, range(0, count, 25)))


def main() -> None:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=4)
    parser.add_argument("--workers", type=int, default=16)
    args = parser.parse_args()
    with (
        start_backend(args.backend, endpoint_url=args.endpoint_url) as backend,
        tempfile.TemporaryDirectory() as tmp,
    ):
        replicas = local_replica_set(backend, Path(tmp), prefix="bench")
        source = REGIONS[0]
        started = time.monotonic()
        populate(replicas.client(source), replicas.table_name, args.items)
        print(f"populated {args.items:,} raw items in {time.monotonic() - started:.1f} s")
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": replicas.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": replicas.credentials["aws_secret_access_key"],
        }
        command = [
            sys.executable,
            "-m",
            "service.surfaces.cli",
            "backfill",
            "--from",
            source,
            "-c",
            str(replicas.config_path),
            "--segments",
            str(args.segments),
            "--workers",
            str(args.workers),
            "--json",
        ]
        started, before = time.monotonic(), resource.getrusage(resource.RUSAGE_CHILDREN)
        done = subprocess.run(command, env=env, capture_output=True, text=True, check=False)
        wall = time.monotonic() - started
        after = resource.getrusage(resource.RUSAGE_CHILDREN)
        cpu = (after.ru_utime + after.ru_stime) - (before.ru_utime + before.ru_stime)
        if done.returncode != 0:
            sys.exit(f"backfill exited {done.returncode}: {done.stderr.strip()[-2000:]}")
        summary = json.loads(done.stdout)["summary"]
        load = ", ".join(f"{x:.1f}" for x in os.getloadavg())
        print(
            f"$ georep backfill --from {source} --segments {args.segments} --workers "
            f"{args.workers}  ({backend.name}, load average {load})"
        )
        print(
            f"backfill: {summary['scanned']:,} items ({summary['stamped']:,} stamped, "
            f"{summary['delivered']:,} delivered to {len(REGIONS) - 1} regions) in "
            f"{summary['elapsed']}: {summary['items/s']:,} items/s; wall time {wall:.1f} s "
            f"(the command's own CPU: {cpu:.1f} s, the rest is the backend's)"
        )


if __name__ == "__main__":
    main()
