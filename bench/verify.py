"""``georep verify`` throughput on an embedded backend: N items, identical in three regions.

    .venv/bin/python bench/verify.py [--items 100000] [--segments 4]
    .venv/bin/python bench/verify.py --backend endpoint --endpoint-url URL  # your server

Loads N stamped items, the same bytes in every region (BatchWriteItem; the load is timed on
its own and not counted), then runs ``georep verify --json`` as a user would, in a separate
process, and prints the pass's own items/s and elapsed time (what the command reports) and the
process's wall time (Python start-up and imports included). Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import ulid

from service.adapters.backends import start_backend
from service.core import hlc
from service.core.stamp import stamp
from service.core.stored import Absent
from service.core.version import encode_item
from service.surfaces.commands._common import add_backend_options
from service.surfaces.local import REGIONS, local_replica_set

ROOT = Path(__file__).resolve().parents[1]
BATCH = 25  # BatchWriteItem's limit


def items(count: int, *, settings: Any, horizon_ms: int) -> list[dict[str, Any]]:
    """``count`` stamped versions, as the SDK would write them in the first region."""
    now = hlc.pack(int(time.time() * 1000))
    out = []
    for n in range(count):
        version = stamp(
            Absent(),
            {"pk": {"S": f"item-{n:07d}"}, "v": {"S": "x" * 40}, "n": {"N": str(n)}},
            region=REGIONS[0],
            now_hlc=now + n,
            write_id=str(ulid.new()),
            settings=settings,
        )
        assert version is not None
        out.append(encode_item(version, horizon_ms=horizon_ms))
    return out


def load(client: Any, table: str, batch: list[dict[str, Any]]) -> None:
    request = {table: [{"PutRequest": {"Item": item}} for item in batch]}
    while request:
        request = client.batch_write_item(RequestItems=request).get("UnprocessedItems") or {}


def main() -> None:
    parser = argparse.ArgumentParser()
    add_backend_options(parser)
    parser.add_argument("--items", type=int, default=100_000)
    parser.add_argument("--segments", type=int, default=4)
    args = parser.parse_args()
    with (
        start_backend(args.backend, endpoint_url=args.endpoint_url) as backend,
        tempfile.TemporaryDirectory() as tmp,
    ):
        replicas = local_replica_set(backend, Path(tmp), prefix="bench-verify")
        config = replicas.config
        versions = items(args.items, settings=config.settings(), horizon_ms=config.horizon_ms)
        batches = [versions[i : i + BATCH] for i in range(0, len(versions), BATCH)]
        started = time.perf_counter()
        with ThreadPoolExecutor(6) as pool:
            for region in REGIONS:
                client = replicas.client(region)
                list(pool.map(lambda b, c=client: load(c, replicas.table_name, b), batches))
        loaded = time.perf_counter() - started

        command = [sys.executable, "-m", "service.surfaces.cli", "verify", "--json"]
        started = time.perf_counter()
        done = subprocess.run(
            [*command, "--segments", str(args.segments), "-c", str(replicas.config_path)],
            env={
                **os.environ,
                "AWS_ACCESS_KEY_ID": replicas.credentials["aws_access_key_id"],
                "AWS_SECRET_ACCESS_KEY": replicas.credentials["aws_secret_access_key"],
                "PYTHONPATH": str(ROOT),
            },
            cwd=ROOT,
            capture_output=True,
            text=True,
        )
        wall = time.perf_counter() - started
        if done.returncode != 0:
            sys.exit(f"verify exited {done.returncode}: {done.stderr or done.stdout}")
        summary = json.loads(done.stdout)["summary"]

        print(f"backend: {backend.name}, {len(REGIONS)} regions, {args.segments} segments")
        print(f"load: {args.items:,} items x {len(REGIONS)} regions in {loaded:.1f} s")
        print(
            f"georep verify: {summary['items compared']:,} items compared "
            f"({summary['identical']:,} identical) in {summary['elapsed seconds']:.1f} s = "
            f"{summary['items/s']:,} items/s ({summary['items/s'] * len(REGIONS):,} region-items/s)"
        )
        print(f"wall time of the process, start-up included: {wall:.1f} s")


if __name__ == "__main__":
    main()
