"""georep beside the backend's ceiling and the naive replicator, on the same workloads, in one
run (issue 19).

    .venv/bin/python bench/side_by_side.py --quick    # make bench-quick: uniform + conflict
    .venv/bin/python bench/side_by_side.py            # make bench: all four workloads

Three regions on one moto server (the embedded backend); at each one-way delay (0 and 40 ms,
bench/latency_proxy.py in its own process in front of the other regions' endpoint), five
systems with default settings:

1. ceiling: conditional PutItems into the destination tables from ``--ceiling-threads``
   threads (georep's default ``write_concurrency``), writes/s;
2. naive-put and naive-batch: bench/naive.py, one process per region (per-record PutItem, or
   BatchWriteItem of each page's new images), blind;
3. georep-stamped and georep-raw: ``georep run --region R`` in every region, the application
   writing through GeorepTable or with plain boto3 PutItem/DeleteItem.

For each replicator and delay, one table set and one replicator process per region, started
once; then for each workload (its own keys):

- throughput: the replicators paused (SIGSTOP), a backlog written, resumed (SIGCONT); records/s
  = backlog records / (last - first stream record written by a replicator in any region), once
  no stream has had a new record for ``--quiet`` seconds;
- lag: an open-loop load of ``--live-rate`` writes/s for ``--live-seconds`` (bursts: all of
  a second's writes at once); lag of a write = its first record in a destination's stream
  minus its record in its own region's (moto's clock), p50/p99;
- divergent keys after quiescence: every region Scanned (plain boto3, consistent), keys whose
  application attributes differ (bench/side_summary.py, ``user_view``).

Peak RSS is each replicator process's VmHWM. Workloads: uniform keys (one writer region),
hot keys (Zipf s=1.1 over 50 keys, one writer region), bursts (uniform keys, bursty load, no
backlog), conflict (20 keys, writers in every region, 10 % deletes). Results go to
``bench/results/side-by-side-<commit>.json`` with a ``summary`` and targets; a table is printed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root, for bench.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from botocore.config import Config

from bench.side_summary import (
    SYSTEMS,
    divergent_keys,
    judge,
    percentile,
    summarise,
)
from bench.wan import child_env, git_commit, proxy_to
from service.adapters.backends import MotoServer, start_backend
from service.surfaces.local import REGIONS, LocalReplicaSet, local_replica_set
from service.surfaces.sdk import GeorepTable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SOURCE = REGIONS[0]


# -- workloads ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Op:
    n: int  # unique per run: every final value traces to one write
    region: str
    key: str
    delete: bool = False


@dataclass(frozen=True)
class Workload:
    name: str
    writers: tuple[str, ...]
    backlog: bool
    bursty: bool
    keys: int  # key space; 0: a fresh key each write
    zipf: float = 0.0
    deletes: float = 0.0

    def ops(self, count: int, *, start: int, rng: random.Random, prefix: str) -> list[Op]:
        weights = None
        if self.zipf and self.keys:
            weights = [1 / (i + 1) ** self.zipf for i in range(self.keys)]
        out = []
        for i in range(count):
            n = start + i
            if not self.keys:
                index = n
            elif weights:
                index = rng.choices(range(self.keys), weights)[0]
            else:
                index = rng.randrange(self.keys)
            region = self.writers[i % len(self.writers)]
            out.append(Op(n, region, f"{prefix}-{index}", delete=rng.random() < self.deletes))
        return out


WORKLOADS = {
    "uniform": Workload("uniform", (SOURCE,), backlog=True, bursty=False, keys=0),
    "hot": Workload("hot", (SOURCE,), backlog=True, bursty=False, keys=50, zipf=1.1),
    "bursts": Workload("bursts", (SOURCE,), backlog=False, bursty=True, keys=0),
    "conflict": Workload("conflict", REGIONS, backlog=True, bursty=False, keys=20, deletes=0.1),
}


def item(op: Op) -> dict[str, Any]:
    return {
        "pk": {"S": op.key},
        "n": {"N": str(op.n)},
        "w": {"S": op.region},
        "v": {"S": "x" * 40},
    }


class Writers:
    """The application in every region: stamped (GeorepTable) or raw boto3 writes."""

    def __init__(self, replicas: LocalReplicaSet, *, stamped: bool) -> None:
        self.replicas, self.stamped = replicas, stamped
        config = Config(max_pool_connections=16)
        session = replicas.session()
        url = replicas.backend.endpoint_url
        self.clients = {
            r: session.client("dynamodb", region_name=r, endpoint_url=url, config=config)
            for r in REGIONS
        }
        self.tables = {
            r: GeorepTable(self.clients[r], config=replicas.config, region=r) for r in REGIONS
        }

    def write(self, op: Op) -> None:
        key = {"pk": {"S": op.key}}
        if self.stamped:
            table = self.tables[op.region]
            table.delete(key) if op.delete else table.put(item(op))
        elif op.delete:
            self.clients[op.region].delete_item(TableName=self.replicas.table_name, Key=key)
        else:
            self.clients[op.region].put_item(TableName=self.replicas.table_name, Item=item(op))

    def backlog(self, ops: list[Op]) -> None:
        """``ops`` as fast as the backend takes them; raw writes in BatchWriteItems (the same
        records as single writes, in order), no key twice in one batch."""
        if self.stamped:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(self.write, ops))
            return
        for region in {op.region for op in ops}:
            chunk: list[dict[str, Any]] = []
            seen: set[str] = set()
            for op in (o for o in ops if o.region == region):
                if op.key in seen or len(chunk) == 25:
                    self._batch(region, chunk)
                    chunk, seen = [], set()
                seen.add(op.key)
                key = {"pk": {"S": op.key}}
                chunk.append(
                    {"DeleteRequest": {"Key": key}}
                    if op.delete
                    else {"PutRequest": {"Item": item(op)}}
                )
            self._batch(region, chunk)

    def _batch(self, region: str, chunk: list[dict[str, Any]]) -> None:
        if chunk:
            self.clients[region].batch_write_item(RequestItems={self.replicas.table_name: chunk})


# -- watching every region's stream ---------------------------------------------------------------


class Tap:
    """One region's table stream read from its start: when each write ``n`` first appeared,
    and every record's creation time."""

    def __init__(self, replicas: LocalReplicaSet, region: str) -> None:
        session = replicas.session()
        url = replicas.backend.endpoint_url
        dynamodb = session.client("dynamodb", region_name=region, endpoint_url=url)
        # NOTE: region_name matters: moto ignores the region in a stream ARN (docs/backends.md).
        self.streams = session.client("dynamodbstreams", region_name=region, endpoint_url=url)
        arn = dynamodb.describe_table(TableName=replicas.table_name)["Table"]["LatestStreamArn"]
        shard = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"][0]
        self.iterator: str | None = self.streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.first_seen: dict[int, float] = {}
        self.created: list[float] = []

    def poll(self) -> int:
        read = 0
        while self.iterator is not None:
            page = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = page.get("NextShardIterator")
            for record in page["Records"]:
                body = record["dynamodb"]
                at = body["ApproximateCreationDateTime"].timestamp()
                self.created.append(at)
                image = body.get("NewImage") or body.get("OldImage") or {}
                n = image.get("n", {}).get("N")
                if n is not None and record["eventName"] != "REMOVE":
                    self.first_seen.setdefault(int(n), at)
            read += len(page["Records"])
            if not page["Records"]:
                break
        return read


# -- replicator processes -------------------------------------------------------------------------


class Process:
    """A replicator in a child process; its peak RSS read while it runs."""

    def __init__(self, argv: list[str], *, env: dict[str, str], log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            argv, stdout=self._log, stderr=subprocess.STDOUT, env=env, cwd=ROOT
        )
        self.peak_rss_kb = 0

    def sample(self) -> None:
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(f"a replicator exited ({self.process.returncode}):\n{self.tail()}")

    def signal(self, sig: int) -> None:
        if self.process.poll() is None:
            self.process.send_signal(sig)

    def tail(self, size: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def stop(self) -> None:
        self.sample()
        self.signal(signal.SIGCONT)
        self.signal(signal.SIGTERM)
        try:
            self.process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        self._log.close()


def georep_config(replicas: LocalReplicaSet, path: Path, *, region: str, others_url: str) -> Path:
    """A georep.toml for ``region``'s consumer: its own region direct, the others behind
    ``others_url``. Default settings but the bookkeeping tables' names."""
    blocks = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = '
        f'"{replicas.backend.endpoint_url if r == region else others_url}"\n\n'
        for r in REGIONS
    )
    name = replicas.table_name
    path.write_text(
        f'[table]\nname = "{name}"\npartition_key = "pk"\n\n{blocks}'
        f'[replication]\ncheckpoint_table = "{name}-checkpoints"\n'
        f'dead_letter_table = "{name}-dead-letters"\n'
        f'conflict_table = "{name}-conflicts"\n'
    )
    return path


def start_replicators(
    system: str, replicas: LocalReplicaSet, folder: Path, *, others_url: str
) -> list[Process]:
    env = child_env(replicas)
    processes = []
    for region in REGIONS:
        if system.startswith("georep"):
            config = georep_config(
                replicas, folder / f"{region}.toml", region=region, others_url=others_url
            )
            argv = [sys.executable, "-m", "service.surfaces.cli", "-c", str(config), "run"]
            argv += ["--region", region]
        else:
            argv = [sys.executable, str(ROOT / "bench" / "naive.py")]
            argv += ["--endpoint-url", replicas.backend.endpoint_url]
            argv += ["--destinations-url", others_url, "--table", replicas.table_name]
            argv += ["--region", region, "--regions", ",".join(REGIONS)]
            argv += ["--mode", system.removeprefix("naive-")]
        processes.append(Process(argv, env=env, log=folder / f"{region}.log"))
    return processes


# -- one replicator at one delay, every workload ---------------------------------------------------


@dataclass
class Settings:
    records: int
    live_rate: float
    live_seconds: float
    quiet: float
    window: float
    seed: int


class Bench:
    def __init__(
        self,
        system: str,
        replicas: LocalReplicaSet,
        processes: list[Process],
        settings: Settings,
    ) -> None:
        self.system, self.replicas, self.processes = system, replicas, processes
        self.settings = settings
        self.writers = Writers(replicas, stamped=system == "georep-stamped")
        self.taps = {r: Tap(replicas, r) for r in REGIONS}
        self.next_n = 1
        self.rng = random.Random(settings.seed)
        self.delay = 0.0  # the proxy's one-way delay now: keys are per workload and delay

    def poll(self) -> int:
        for p in self.processes:
            p.sample()
            p.check_alive()
        return sum(tap.poll() for tap in self.taps.values())

    def wait_quiet(self, *, deadline: float) -> str:
        """Until no stream had a new record for ``quiet`` seconds; "quiet" or "window"."""
        last_new = time.monotonic()
        while time.monotonic() - last_new < self.settings.quiet:
            time.sleep(0.25)
            if self.poll():
                last_new = time.monotonic()
            if time.monotonic() > deadline:
                return "window"
        return "quiet"

    def warm_up(self) -> None:
        """One write in every region, seen in every other: the replicators are running."""
        ops = self._ops(Workload("warm", REGIONS, backlog=False, bursty=False, keys=0), 3)
        for op in ops:
            self.writers.write(op)
        deadline = time.monotonic() + 120
        while not all(op.n in tap.first_seen for op in ops for tap in self.taps.values()):
            if time.monotonic() > deadline:
                raise RuntimeError(f"{self.system}: not replicating after 120 s")
            time.sleep(0.3)
            self.poll()
        self.wait_quiet(deadline=time.monotonic() + 30)

    def _ops(self, workload: Workload, count: int) -> list[Op]:
        prefix = f"{workload.name}{self.delay:g}"
        ops = workload.ops(count, start=self.next_n, rng=self.rng, prefix=prefix)
        self.next_n += count
        return ops

    def run(self, workload: Workload) -> dict[str, Any]:
        point: dict[str, Any] = {}
        if workload.backlog:
            point.update(self.throughput(workload))
        point.update(self.live(workload))
        point["divergent_keys"], point["divergent_sample"] = self.divergence(workload)
        return point

    def throughput(self, workload: Workload) -> dict[str, Any]:
        ops = self._ops(workload, self.settings.records)
        for p in self.processes:
            p.signal(signal.SIGSTOP)
        started = time.perf_counter()
        try:
            self.writers.backlog(ops)
        finally:
            written = time.perf_counter() - started
            time.sleep(0.05)  # the backlog's records are older than the resume, in moto's clock
            resumed = time.time()
            for p in self.processes:
                p.signal(signal.SIGCONT)
        stopped_by = self.wait_quiet(deadline=time.monotonic() + self.settings.window)
        work = sorted(t for tap in self.taps.values() for t in tap.created if t >= resumed)
        out: dict[str, Any] = {
            "records": len(ops),
            "backlog_write_s": round(written, 2),
            "replicator_records": len(work),
            "stopped_by": stopped_by,
        }
        if len(work) > 1 and stopped_by == "quiet":
            out["records_per_s"] = round(len(ops) / (work[-1] - work[0]), 2)
            out["drain_s"] = round(work[-1] - work[0], 2)
            out["first_apply_after_resume_s"] = round(work[0] - resumed, 2)
        print(
            f"    {workload.name}: {len(ops)} records, "
            f"{out.get('records_per_s', 'n/a')} records/s ({stopped_by})",
            flush=True,
        )
        return out

    def live(self, workload: Workload) -> dict[str, Any]:
        s = self.settings
        total = max(1, round(s.live_rate * s.live_seconds))
        ops = self._ops(workload, total)
        started = time.perf_counter()
        with ThreadPoolExecutor(8) as pool:
            futures = []
            for i, op in enumerate(ops):
                # bursts: the writes of each second all at its start; else evenly spread
                due = (i // s.live_rate) if workload.bursty else i / s.live_rate
                wait = started + due - time.perf_counter()
                if wait > 0:
                    time.sleep(wait)
                futures.append(pool.submit(self.writers.write, op))
            for future in futures:
                future.result()  # a failed write fails the bench
        stopped_by = self.wait_quiet(deadline=time.monotonic() + s.window)
        lags = []
        for op in ops:
            if op.delete or op.n not in self.taps[op.region].first_seen:
                continue
            origin = self.taps[op.region].first_seen[op.n]
            for region, tap in self.taps.items():
                if region != op.region and op.n in tap.first_seen:
                    lags.append(tap.first_seen[op.n] - origin)
        p50, p99 = percentile(lags, 0.5), percentile(lags, 0.99)
        print(
            f"    {workload.name} live: {total} writes at {s.live_rate:g}/s, "
            f"lag p50 {p50 if p50 is None else round(p50 * 1000)} ms, "
            f"p99 {p99 if p99 is None else round(p99 * 1000)} ms",
            flush=True,
        )
        return {
            "live_writes": total,
            "live_stopped_by": stopped_by,
            "lag": {
                "applies": len(lags),
                "p50_s": None if p50 is None else round(p50, 4),
                "p99_s": None if p99 is None else round(p99, 4),
                "max_s": round(max(lags), 4) if lags else None,
            },
        }

    def divergence(self, workload: Workload) -> tuple[int, list[str]]:
        prefix = f"{workload.name}{self.delay:g}-"
        tables = {
            r: {k: v for k, v in self.replicas.scan(r).items() if k.startswith(prefix)}
            for r in REGIONS
        }
        keys = divergent_keys(tables)
        return len(keys), keys[:5]


def ceiling(url: str, replicas: LocalReplicaSet, *, threads: int, seconds: float) -> float:
    """Conditional PutItems from ``threads`` threads over the destination regions at ``url``."""
    session = replicas.session()
    config = Config(max_pool_connections=threads)
    clients = [
        session.client("dynamodb", region_name=r, endpoint_url=url, config=config)
        for r in REGIONS[1:]
    ]
    stop = time.monotonic() + seconds
    counts = [0] * threads

    def work(i: int) -> None:
        n = 0
        client = clients[i % len(clients)]
        while time.monotonic() < stop:
            client.put_item(
                TableName=replicas.table_name,
                Item={"pk": {"S": f"ceiling-{i}-{n}"}, "v": {"S": "x" * 40}},
                ConditionExpression="attribute_not_exists(pk)",
            )
            n += 1
        counts[i] = n

    started = time.monotonic()
    with ThreadPoolExecutor(threads) as pool:
        list(pool.map(work, range(threads)))
    return sum(counts) / (time.monotonic() - started)


@contextmanager
def profiling(process: Process, folder: Path | None, *, label: str) -> Iterator[None]:
    """``py-spy record`` of ``process`` (the source region's replicator) while the workloads
    run, every thread, idle ones too (at 40 ms most of a writer's time is waiting): collapsed
    stacks in ``folder/<label>.txt``. Nothing without ``folder``."""
    if folder is None:
        yield
        return
    folder.mkdir(parents=True, exist_ok=True)
    out = folder / f"{label}.txt"
    spy = subprocess.Popen(
        [
            *(str(Path(sys.executable).parent / "py-spy"), "record", "--nonblocking"),
            *("--idle", "--threads", "--format", "raw", "--rate", "100"),
            *("--pid", str(process.process.pid), "-o", str(out)),
        ],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        try:
            spy.wait(timeout=30)
        except subprocess.TimeoutExpired:
            spy.kill()
        print(f"    profile of {label}'s {SOURCE} replicator: {out}", flush=True)


@contextmanager
def replica_set(backend: MotoServer, tmp: Path, label: str) -> Iterator[LocalReplicaSet]:
    folder = tmp / label
    folder.mkdir()
    yield local_replica_set(backend, folder, prefix=f"sbs-{label}")


def measure(
    backend: MotoServer,
    tmp: Path,
    *,
    system: str,
    delays: list[float],
    workloads: list[str],
    settings: Settings,
    profile: Path | None = None,
) -> tuple[dict[str, Any], dict[str, Any]]:
    """Every workload's point at every delay (delay -> workload -> point), and what the
    replicator processes did over all of them. One replica set and one replicator process per
    region for all delays: the proxy's delay is changed between them (SIGHUP), so each
    replicator starts once."""
    label = system
    delay_file = tmp / f"{label}.delay"
    delay_file.write_text(f"{delays[0]:g}")
    with (
        replica_set(backend, tmp, label) as replicas,
        proxy_to(backend.endpoint_url, delays[0], "--delay-file", str(delay_file)) as px,
    ):
        processes = start_replicators(system, replicas, tmp / label, others_url=px.url)
        started = time.monotonic()
        points: dict[str, Any] = {}
        try:
            bench = Bench(system, replicas, processes, settings)
            bench.warm_up()
            ready = time.monotonic() - started
            for delay in delays:
                delay_file.write_text(f"{delay:g}")
                px.process.send_signal(signal.SIGHUP)
                time.sleep(0.2)
                bench.delay = delay
                print(f"  {system} at {delay:g} ms", flush=True)
                with profiling(processes[0], profile, label=f"{label}-{delay:g}"):
                    points[f"{delay:g}"] = {name: bench.run(WORKLOADS[name]) for name in workloads}
                rss = max(p.peak_rss_kb for p in processes) / 1024
                for point in points[f"{delay:g}"].values():
                    point["peak_rss_mb"] = round(rss, 1)  # a high-water mark: so far
        finally:
            for p in processes:
                p.stop()
        processes_seen = {
            "ready_s": round(ready, 1),
            "peak_rss_mb_per_region": {
                r: round(p.peak_rss_kb / 1024, 1) for r, p in zip(REGIONS, processes, strict=True)
            },
            "proxy_connections": px.stop(),
        }
    return points, processes_seen


def run_record(started: datetime, commit: str) -> dict[str, Any]:
    """What every benchmark's results say about the run itself: when, which commit, the
    command line, the machine and its load when the run started."""
    return {
        "started": started.isoformat(timespec="seconds"),
        "commit": commit,
        "command": " ".join([Path(sys.executable).name, *sys.argv]),
        "machine": machine(),
        "loadavg_at_start": os.getloadavg(),
    }


def save_run(result: dict[str, Any], *, kind: str, started: datetime, out: Path | None) -> Path:
    """Close ``result``'s run record (load at the end, seconds taken) and write it to ``out``,
    else ``bench/results/<kind>-<commit>.json``; returns where."""
    result["run"]["loadavg_at_end"] = os.getloadavg()
    result["run"]["seconds"] = round((datetime.now(UTC) - started).total_seconds())
    RESULTS.mkdir(parents=True, exist_ok=True)
    path = out or RESULTS / f"{kind}-{result['run']['commit']}.json"
    path.write_text(json.dumps(result, indent=2) + "\n")
    return path


def machine() -> dict[str, Any]:
    model = "unknown"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {
        "nproc": os.cpu_count(),
        "cpu": model,
        "python": platform.python_version(),
        "arch": platform.machine(),
        "shared": "other jobs ran on the machine at the same time",
    }


def table(result: dict[str, Any]) -> str:
    lines = []
    delays = [f"{d:g}" for d in result["run"]["delays_ms"]]
    header = f"{'system':<16}{'workload':<10}" + "".join(
        f"{d + ' ms rec/s':>14}{'p99 lag':>9}{'diverg.':>8}" for d in delays
    )
    lines.append(header)
    for d in delays:
        c = result["ceiling"].get(d, {})
        lines.append(f"ceiling at {d} ms: {c.get('writes_per_s', float('nan')):,.0f} writes/s")
    for system in SYSTEMS:
        by_delay = result["points"].get(system, {})
        for workload in result["run"]["workloads"]:
            cells = ""
            for d in delays:
                point = by_delay.get(d, {}).get(workload, {})
                rate = point.get("records_per_s")
                p99 = point.get("lag", {}).get("p99_s")
                cells += f"{rate if rate is not None else '-':>14}"
                cells += f"{round(p99 * 1000) if p99 is not None else '-':>7}ms"
                cells += f"{point.get('divergent_keys', '-'):>8}"
            lines.append(f"{system:<16}{workload:<10}{cells}")
    lines.append("summary:")
    for key, value in result["summary"].items():
        lines.append(f"  {key}: {value}")
    lines.append("targets:")
    for name, t in result["targets"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"  {verdict:>4}  {name}: {t['value']} (target {t['target']})")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="uniform + conflict, small backlogs")
    parser.add_argument("--records", type=int, default=600, help="backlog per workload")
    parser.add_argument("--delays", default="0,40")
    parser.add_argument("--systems", default=",".join(SYSTEMS))
    parser.add_argument("--workloads", default=",".join(WORKLOADS))
    parser.add_argument("--live-rate", type=float, default=20.0, help="writes/s, all regions")
    parser.add_argument("--live-seconds", type=float, default=10.0)
    parser.add_argument("--quiet", type=float, default=1.5, help="seconds without a new record")
    parser.add_argument("--window", type=float, default=90.0, help="max seconds to quiescence")
    parser.add_argument("--ceiling-threads", type=int, default=64)
    parser.add_argument("--ceiling-seconds", type=float, default=5.0)
    parser.add_argument("--seed", type=int, default=19)
    parser.add_argument("--out", type=Path, default=None)
    parser.add_argument(
        "--profile",
        type=Path,
        default=None,
        help="a folder: py-spy records the source region's replicator at each point (pip "
        "install py-spy)",
    )
    args = parser.parse_args()
    if args.quick:
        args.records, args.live_seconds, args.ceiling_seconds, args.quiet = 100, 2.0, 1.0, 0.6
        if args.workloads == ",".join(WORKLOADS):
            args.workloads = "uniform,conflict"
    delays = [float(d) for d in args.delays.split(",")]
    systems = [s for s in args.systems.split(",") if s]
    workloads = [w for w in args.workloads.split(",") if w]
    settings = Settings(
        args.records, args.live_rate, args.live_seconds, args.quiet, args.window, args.seed
    )
    started = datetime.now(UTC)
    commit = git_commit()
    result: dict[str, Any] = {
        "run": {
            **run_record(started, commit),
            "backend": "moto server, serialised (service.adapters.backends.MotoServer)",
            "delays_ms": delays,
            "systems": systems,
            "workloads": workloads,
            "settings": settings.__dict__,
            "ceiling_threads": args.ceiling_threads,
        },
        "regions": list(REGIONS),
        "ceiling": {},
        "points": {},
        "processes": {},
    }
    print(f"side by side: {', '.join(systems)}; {', '.join(workloads)}; {args.delays} ms")
    with start_backend("auto") as backend, tempfile.TemporaryDirectory() as folder:
        assert isinstance(backend, MotoServer)
        tmp = Path(folder)
        for delay in delays:
            with (
                replica_set(backend, tmp, f"ceiling-{delay:g}") as replicas,
                proxy_to(backend.endpoint_url, delay) as px,
            ):
                rate = ceiling(
                    px.url, replicas, threads=args.ceiling_threads, seconds=args.ceiling_seconds
                )
            result["ceiling"][f"{delay:g}"] = {"writes_per_s": round(rate, 1)}
            print(f"  ceiling at {delay:g} ms: {rate:,.0f} conditional writes/s", flush=True)
        for system in systems:
            points, seen = measure(
                backend, tmp, system=system, delays=delays, workloads=workloads,
                settings=settings, profile=args.profile,
            )  # fmt: skip
            result["points"][system] = points
            result["processes"][system] = seen
    result["summary"] = summarise(result)
    result["targets"] = judge(result["summary"])
    kind = "side-by-side-quick" if args.quick else "side-by-side"
    out = save_run(result, kind=kind, started=started, out=args.out)
    print(table(result))
    print(f"written to {out} in {result['run']['seconds']} s")


if __name__ == "__main__":
    main()
