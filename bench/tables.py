"""What serving N tables from one ``georep run`` costs (a consumer per table, in threads).

    .venv/bin/python bench/tables.py [--tables 1,2,4,8] [--items 150] [--idle 10]

For each N: an isolated view of one moto server, two regions, N tables (``[[tables]]``) and
``--items`` stamped items written per table in the first region before any consumer runs; then
``georep run --region eu-west-1`` (a child process, as deployed) drains that backlog into the
second region, timed from its start until every item of every table is there (plain Scans);
then it idles, and its CPU time, threads and RSS are read from /proc over ``--idle`` seconds.
Per table, what the design adds is a polling loop (its idle backoff, 50 to 250 ms) and its
threads; the backlog shows whether the tables' consumers share the process fairly (moto serves
one request at a time: its throughput, not georep's, bounds the total). Results:
bench/results/tables-<commit>.json. Not part of the test suite.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3

from service.adapters.backends import MotoServer, create_replica_table
from service.config import load_config
from service.core.version import TTL_ATTR
from service.surfaces.sdk import GeorepTable

REGIONS = ("eu-west-1", "us-east-1")
ROOT = Path(__file__).resolve().parents[1]
TICK = os.sysconf("SC_CLK_TCK")


def _proc(pid: int) -> tuple[float, int, int]:
    """CPU seconds (user + system), threads, RSS bytes of a process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / TICK
    threads = int(fields[17])
    rss = int(fields[21]) * os.sysconf("SC_PAGE_SIZE")
    return cpu, threads, rss


def one(
    server: MotoServer, *, tables: int, items: int, idle: float, folder: Path
) -> dict[str, Any]:
    view = server.isolated().start()
    try:
        credentials = view.credentials_for(REGIONS[0])
        run = uuid.uuid4().hex[:6]
        names = [f"t{n}-{run}" for n in range(tables)]
        blocks = "".join(
            f'[[regions]]\nname = "{r}"\nendpoint_url = "{view.endpoint_url}"\n\n' for r in REGIONS
        )
        text = "".join(f'[[tables]]\nname = "{name}"\npartition_key = "pk"\n\n' for name in names)
        path = folder / f"georep-{tables}.toml"
        path.write_text(
            f'{text}{blocks}[replication]\ncheckpoint_table = "{run}-ck"\n'
            f'dead_letter_table = "{run}-dl"\nconflict_table = "{run}-cf"\n'
        )
        config = load_config(path)
        session = boto3.Session(**credentials)  # one account for every region, as georep sees it
        clients = {
            r: session.client("dynamodb", region_name=r, endpoint_url=view.endpoint_url)
            for r in REGIONS
        }
        for name in names:
            for region in REGIONS:
                create_replica_table(
                    clients[region], table_name=name, partition_key="pk", ttl_attribute=TTL_ATTR
                )
            sdk = GeorepTable(clients[REGIONS[0]], config=config, region=REGIONS[0], table=name)
            for n in range(items):
                sdk.put({"pk": {"S": f"k{n}"}, "v": {"S": str(n)}})
        env = {
            **os.environ,
            "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
            "PYTHONPATH": str(ROOT),
        }
        started = time.monotonic()
        process = subprocess.Popen(
            [
                *(sys.executable, "-m", "service.surfaces.cli"),
                "run",
                "--region",
                REGIONS[0],
                "-c",
                str(path),
            ],
            env=env,
            stdout=subprocess.DEVNULL,
            stderr=(folder / f"run-{tables}.log").open("wb"),
        )
        try:
            counts: dict[str, int] = {}
            while True:
                counts = {
                    name: clients[REGIONS[1]].scan(TableName=name, Select="COUNT")["Count"]
                    for name in names
                }
                if all(c >= items for c in counts.values()):
                    break
                if time.monotonic() - started > 600:
                    raise TimeoutError(f"{tables} tables: not drained in 600 s: {counts}")
                time.sleep(0.2)
            drained = time.monotonic() - started
            time.sleep(2.0)  # the last checkpoints, then idle
            cpu0, _, _ = _proc(process.pid)
            time.sleep(idle)
            cpu1, threads, rss = _proc(process.pid)
        finally:
            process.terminate()
            process.wait(timeout=60)
        return {
            "tables": tables,
            "items": items * tables,
            "drain_seconds": round(drained, 2),
            "records_per_second": round(items * tables / drained, 1),
            "idle_cpu_percent": round(100 * (cpu1 - cpu0) / idle, 2),
            "threads": threads,
            "rss_mb": round(rss / 2**20, 1),
        }
    finally:
        view.stop()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", default="1,2,4,8")
    parser.add_argument("--items", type=int, default=150)
    parser.add_argument("--idle", type=float, default=10.0)
    args = parser.parse_args()
    folder = Path(os.environ.get("TMPDIR", "/tmp")) / f"georep-bench-tables-{os.getpid()}"
    folder.mkdir(parents=True, exist_ok=True)
    results = []
    with MotoServer() as server:
        for count in (int(n) for n in args.tables.split(",")):
            result = one(server, tables=count, items=args.items, idle=args.idle, folder=folder)
            print(json.dumps(result), flush=True)
            results.append(result)
    commit = subprocess.run(
        ["git", "rev-parse", "--short", "HEAD"], capture_output=True, text=True, cwd=ROOT
    ).stdout.strip()
    out = ROOT / "bench" / "results" / f"tables-{commit or 'unknown'}.json"
    out.write_text(json.dumps({"command": " ".join(sys.argv), "results": results}, indent=2) + "\n")
    print(f"written: {out}")


if __name__ == "__main__":
    main()
