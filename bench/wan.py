"""Replication throughput and lag across inter-region latency, on the embedded backend.

    .venv/bin/python bench/wan.py                      # full run, about 5-10 minutes
    .venv/bin/python bench/wan.py --quick              # a smoke run, about 2 minutes
    .venv/bin/python bench/wan.py --delays 0,40 --records 1000 --wc64 no

Three regions on one moto server; region A's consumer is ``georep run --region A`` as a child
process with default settings, configured by a georep.toml in which the two destination regions'
``endpoint_url`` is a latency proxy (bench/latency_proxy.py, its own process) in front of the
same moto server, and A's own region is moto directly. moto takes the region from the SigV4
credential scope, not the Host header, so relaying through another port changes nothing else.
For stamped writes (GeorepTable) and raw boto3 writes:

1. Throughput at each one-way delay: a backlog written in A while its consumer is stopped,
   then the consumer started; records/s = (records completed - 1) / (last completion - first
   completion), a record being complete once applied in both destinations. Start-up is left
   out; the run stops when the backlog is done or ``--window`` seconds after the first apply.
2. Lag at 40 ms: the consumer running, a steady load at half the rate measured at 40 ms for
   ``--lag-seconds``; the lag of each apply is its destination stream record's creation time
   minus the source stream record's (both moto's clock, millisecond precision), p50/p99.
3. Peak RSS of the consumer process (VmHWM in /proc/PID/status), the highest of all runs.

Everything is observed from outside the consumer (its process, the tables' streams, the proxy's
connection count), so the bench works for any consumer that ``georep run`` starts. Results go
to ``bench/results/wan-<UTC timestamp>.json`` and ``bench/results/latest.json``, with a
``summary`` and the issue's targets, pass or fail; a table is printed at the end.
"""

from __future__ import annotations

import argparse
import http.client
import json
import math
import os
import platform
import signal
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from service.adapters.backends import MotoServer, start_backend
from service.surfaces.local import REGIONS, LocalReplicaSet, local_replica_set
from service.surfaces.sdk import GeorepTable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
KINDS = ("stamped", "raw")
SOURCE, DESTINATIONS = REGIONS[0], REGIONS[1:]
TARGETS = {
    "wan_40ms_vs_loopback": 0.8,
    "wan_40ms_vs_loopback_moonshot": 0.95,
    "raw_vs_stamped_loopback": 0.9,
    "lag_p99_s_40ms": 0.5,
    "rss_peak_mb": 150.0,
}
# "Loopback rate not lower than today's": compared with the committed baseline, within this
# tolerance (the machine is shared; two runs of the same code differ by this much).
LOOPBACK_TOLERANCE = 0.9
BASELINE = RESULTS / "baseline-e995e9f.json"


def child_env(replicas: LocalReplicaSet) -> dict[str, str]:
    """The environment of the consumer: this tree's `service` first on the path, and the
    replica set's credentials (any key signs on moto)."""
    env = dict(os.environ)
    env["AWS_ACCESS_KEY_ID"] = replicas.credentials["aws_access_key_id"]
    env["AWS_SECRET_ACCESS_KEY"] = replicas.credentials["aws_secret_access_key"]
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT), *filter(None, [env.get("PYTHONPATH")])])
    env.pop("MOTO_ACCOUNT_ID", None)
    return env


# -- the latency proxy, as its own process -------------------------------------------------------


@dataclass
class Proxy:
    process: subprocess.Popen[str]
    port: int
    delay_ms: float

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def stop(self) -> int:
        """Stop it; the number of connections it relayed."""
        self.process.send_signal(signal.SIGTERM)
        out, _ = self.process.communicate(timeout=10)
        for line in out.splitlines():
            if "connections relayed" in line:
                return int(line.split(":")[1].split()[0])
        return -1


@contextmanager
def proxy_to(endpoint_url: str, delay_ms: float, *options: str) -> Iterator[Proxy]:
    target = endpoint_url.removeprefix("http://")
    process = subprocess.Popen(
        [
            *(sys.executable, str(ROOT / "bench" / "latency_proxy.py")),
            *("--target", target, "--delay-ms", str(delay_ms), *options),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert process.stdout is not None
    line = process.stdout.readline()  # "latency proxy on 127.0.0.1:PORT -> ..."
    if not line:
        process.kill()
        raise RuntimeError("the latency proxy did not start")
    proxy = Proxy(process, int(line.split()[3].rsplit(":", 1)[1]), delay_ms)
    try:
        yield proxy
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()


# -- the consumer, as `georep run` ----------------------------------------------------------------


def consumer_config(
    replicas: LocalReplicaSet, path: Path, *, destinations_url: str, replication: str = ""
) -> Path:
    """A georep.toml like the replica set's, but the destinations are behind ``destinations_url``.
    Default settings apart from the bookkeeping tables' names and ``replication`` lines."""
    blocks = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = '
        f'"{replicas.backend.endpoint_url if r == SOURCE else destinations_url}"\n\n'
        for r in REGIONS
    )
    name = replicas.table_name
    path.write_text(
        f'[table]\nname = "{name}"\npartition_key = "pk"\n\n{blocks}'
        f'[replication]\ncheckpoint_table = "{name}-checkpoints"\n'
        f'dead_letter_table = "{name}-dead-letters"\n{replication}\n'
    )
    return path


class ConsumerProcess:
    """``georep run --region SOURCE`` in a child process; its peak RSS read while it runs."""

    def __init__(self, replicas: LocalReplicaSet, config: Path, log: Path) -> None:
        self.log_path = log
        self._log = log.open("wb")
        self.process = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "service.surfaces.cli",
                "-c",
                str(config),
                "run",
                "--region",
                SOURCE,
            ],
            stdout=self._log,
            stderr=subprocess.STDOUT,
            env=child_env(replicas),
            cwd=ROOT,
        )
        self.started = time.time()
        self.peak_rss_kb = 0

    def sample(self) -> None:
        """Read VmHWM (the peak resident set so far) while the process lives."""
        try:
            status = Path(f"/proc/{self.process.pid}/status").read_text()
        except OSError:
            return
        for line in status.splitlines():
            if line.startswith("VmHWM:"):
                self.peak_rss_kb = max(self.peak_rss_kb, int(line.split()[1]))

    def check_alive(self) -> None:
        if self.process.poll() is not None:
            raise RuntimeError(
                f"the consumer exited with status {self.process.returncode}:\n{self.tail()}"
            )

    def tail(self, size: int = 3000) -> str:
        self._log.flush()
        return self.log_path.read_bytes()[-size:].decode(errors="replace")

    def stop(self) -> None:
        self.sample()
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)  # finishes its batch and checkpoints
            try:
                self.process.wait(timeout=60)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()
        self._log.close()


# -- watching the tables' streams -----------------------------------------------------------------


class StreamTap:
    """Reads one region's table stream from its start; keeps, for every bench write (its ``n``
    attribute), the creation time of the first record that carries it."""

    def __init__(self, replicas: LocalReplicaSet, region: str) -> None:
        session = replicas.session()
        url = replicas.backend.endpoint_url
        dynamodb = session.client("dynamodb", region_name=region, endpoint_url=url)
        # NOTE: region_name matters: moto ignores the region in a stream ARN (docs/backends.md).
        self.streams = session.client("dynamodbstreams", region_name=region, endpoint_url=url)
        arn = dynamodb.describe_table(TableName=replicas.table_name)["Table"]["LatestStreamArn"]
        shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        self.iterator: str | None = self.streams.get_shard_iterator(
            StreamArn=arn, ShardId=shards[0]["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        self.first_seen: dict[int, float] = {}
        self.records = 0

    def poll(self) -> None:
        while self.iterator is not None:
            page = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = page.get("NextShardIterator")
            for record in page["Records"]:
                self.records += 1
                body = record["dynamodb"]
                n = body.get("NewImage", {}).get("n", {}).get("N")
                if n is not None:
                    at = body["ApproximateCreationDateTime"].timestamp()
                    self.first_seen.setdefault(int(n), at)
            if not page["Records"]:
                return


def completions(taps: list[StreamTap], wanted: range) -> list[float]:
    """The times at which each wanted write was applied in every destination, sorted."""
    done = []
    for n in wanted:
        times = [tap.first_seen.get(n) for tap in taps]
        if all(t is not None for t in times):
            done.append(max(t for t in times if t is not None))
    return sorted(done)


# -- writing --------------------------------------------------------------------------------------


def item(n: int, prefix: str) -> dict[str, Any]:
    return {"pk": {"S": f"{prefix}{n}"}, "n": {"N": str(n)}, "v": {"S": "x" * 40}}


def writer(replicas: LocalReplicaSet, kind: str) -> Callable[[int, str], None]:
    """One write of the given kind in the source region: ``write(n, prefix)``."""
    client = replicas.client(SOURCE)
    table = GeorepTable(client, config=replicas.config, region=SOURCE)

    def write(n: int, prefix: str) -> None:
        if kind == "stamped":
            table.put(item(n, prefix))
        else:
            client.put_item(TableName=replicas.table_name, Item=item(n, prefix))

    return write


def write_backlog(replicas: LocalReplicaSet, kind: str, records: int) -> float:
    """``records`` writes in the source region (its consumer stopped); seconds taken."""
    started = time.perf_counter()
    if kind == "raw":
        # BatchWriteItem makes the same INSERT records as PutItem, ~10x faster to set up.
        client = replicas.client(SOURCE)
        for start in range(0, records, 25):
            batch = [
                {"PutRequest": {"Item": item(n, "k")}}
                for n in range(start, min(records, start + 25))
            ]
            client.batch_write_item(RequestItems={replicas.table_name: batch})
    else:
        write = writer(replicas, kind)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda n: write(n, "k"), range(records)))
    return time.perf_counter() - started


# -- one measurement ------------------------------------------------------------------------------


@dataclass
class Run:
    """What one consumer run observed."""

    records: int
    completed: int = 0
    first_apply: float | None = None
    last_apply: float | None = None
    records_per_s: float | None = None
    seconds_to_done_incl_startup: float | None = None
    peak_rss_mb: float = 0.0
    proxy_connections: int = -1
    completed_incl_after_window: int | None = None
    lag: dict[str, float] = field(default_factory=dict)
    backlog_write_s: float | None = None
    load_rate: float | None = None
    load_writes: int | None = None
    stopped_by: str = "done"

    def as_json(self) -> dict[str, Any]:
        out = {k: v for k, v in self.__dict__.items() if v is not None and v != {}}
        for key in ("first_apply", "last_apply"):
            out.pop(key, None)
        # The consumer goes on until it is stopped, after the window too.
        replicated = self.completed_incl_after_window or self.completed
        if self.proxy_connections > 0 and replicated:
            # Each replicated record is one write in each of the 2 destinations.
            out["proxy_connections_per_record_and_destination"] = round(
                self.proxy_connections / (2 * replicated), 2
            )
        return {k: round(v, 4) if isinstance(v, float) else v for k, v in out.items()}


def fresh_replicas(backend: MotoServer, tmp: Path, label: str) -> LocalReplicaSet:
    folder = tmp / label
    folder.mkdir()
    return local_replica_set(backend, folder, prefix=f"wan-{label}")


def throughput(
    backend: MotoServer,
    tmp: Path,
    *,
    kind: str,
    delay_ms: float,
    records: int,
    window: float,
    replication: str = "",
    label: str = "",
) -> Run:
    label = label or f"{kind}-{delay_ms:g}"
    replicas = fresh_replicas(backend, tmp, label)
    run = Run(records=records)
    run.backlog_write_s = write_backlog(replicas, kind, records)
    taps = [StreamTap(replicas, region) for region in DESTINATIONS]
    with proxy_to(backend.endpoint_url, delay_ms) as proxy:
        config = consumer_config(
            replicas, tmp / label / "consumer.toml", destinations_url=proxy.url,
            replication=replication,
        )  # fmt: skip
        consumer = ConsumerProcess(replicas, config, tmp / label / "consumer.log")
        wanted = range(records)
        try:
            deadline = time.time() + 120  # for the first apply: start-up, and a batch
            while True:
                time.sleep(0.5)
                consumer.sample()
                consumer.check_alive()
                for tap in taps:
                    tap.poll()
                done = completions(taps, wanted)
                if done and run.first_apply is None:
                    run.first_apply = done[0]
                    deadline = done[0] + window
                if len(done) == records:
                    break
                if time.time() > deadline:
                    if run.first_apply is None:
                        raise RuntimeError(f"nothing replicated in 120 s:\n{consumer.tail()}")
                    run.stopped_by = f"window of {window:g} s"
                    break
                _progress(label, len(done), records)
        finally:
            consumer.stop()
        run.proxy_connections = proxy.stop()
    for tap in taps:
        tap.poll()
    done = completions(taps, wanted)
    run.completed_incl_after_window = len(done)
    if run.stopped_by != "done":
        done = [t for t in done if t <= done[0] + window]
    run.completed, run.first_apply, run.last_apply = len(done), done[0], done[-1]
    if len(done) > 1 and done[-1] > done[0]:
        run.records_per_s = (len(done) - 1) / (done[-1] - done[0])
    if run.stopped_by == "done":
        run.seconds_to_done_incl_startup = done[-1] - consumer.started
    run.peak_rss_mb = consumer.peak_rss_kb / 1024
    _progress(label, run.completed, records, end=True, rate=run.records_per_s)
    return run


def lag(
    backend: MotoServer, tmp: Path, *, kind: str, delay_ms: float, rate: float, seconds: float
) -> Run:
    """A steady load of ``rate`` writes/s for ``seconds``, the consumer running: lag per apply."""
    label = f"lag-{kind}-{delay_ms:g}"
    replicas = fresh_replicas(backend, tmp, label)
    source = StreamTap(replicas, SOURCE)
    taps = [StreamTap(replicas, region) for region in DESTINATIONS]
    write = writer(replicas, kind)
    total = max(1, round(rate * seconds))
    run = Run(records=total, load_rate=rate)
    with proxy_to(backend.endpoint_url, delay_ms) as proxy:
        config = consumer_config(
            replicas, tmp / label / "consumer.toml", destinations_url=proxy.url
        )
        consumer = ConsumerProcess(replicas, config, tmp / label / "consumer.log")
        try:
            # Warm up: one write, applied everywhere, means the consumer is running.
            write(10**9, "warm")
            deadline = time.time() + 120
            while not completions(taps, range(10**9, 10**9 + 1)):
                if time.time() > deadline:
                    raise RuntimeError(f"the consumer did not start:\n{consumer.tail()}")
                consumer.check_alive()
                time.sleep(0.2)
                for tap in taps:
                    tap.poll()
            # The load: each write at its scheduled time, from a few threads, so a slow write
            # does not delay the next ones (an open-loop load, as clients would make).
            stop = threading.Event()

            def sample() -> None:
                while not stop.wait(0.5):
                    consumer.sample()

            sampler = threading.Thread(target=sample, daemon=True)
            sampler.start()
            started = time.perf_counter()
            with ThreadPoolExecutor(4) as pool:
                futures = []
                for n in range(total):
                    wait = started + n / rate - time.perf_counter()
                    if wait > 0:
                        time.sleep(wait)
                    futures.append(pool.submit(write, n, "lag"))
                for future in futures:
                    future.result()  # a failed write fails the bench
            run.load_writes = total
            deadline = time.time() + 60
            while len(completions(taps, range(total))) < total and time.time() < deadline:
                time.sleep(0.5)
                for tap in taps:
                    tap.poll()
            stop.set()
            sampler.join()
        finally:
            consumer.stop()
        run.proxy_connections = proxy.stop()
    source.poll()
    for tap in taps:
        tap.poll()
    lags = [
        tap.first_seen[n] - source.first_seen[n]
        for tap in taps
        for n in range(total)
        if n in tap.first_seen and n in source.first_seen
    ]
    run.completed = len(completions(taps, range(total)))
    run.peak_rss_mb = consumer.peak_rss_kb / 1024
    run.lag = {
        "applies": len(lags),
        "p50_s": percentile(lags, 0.50),
        "p99_s": percentile(lags, 0.99),
        "max_s": max(lags),
    }
    print(
        f"  {label}: {rate:.1f} writes/s for {seconds:g} s, {len(lags)} applies: "
        f"lag p50 {run.lag['p50_s'] * 1000:.0f} ms, p99 {run.lag['p99_s'] * 1000:.0f} ms",
        flush=True,
    )
    return run


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, math.ceil(q * len(ordered)) - 1)]


def _progress(
    label: str, done: int, total: int, *, end: bool = False, rate: float | None = None
) -> None:
    if not end and not sys.stdout.isatty():
        return  # a log gets the result lines only
    if end:
        rate_text = f"{rate:,.1f} records/s" if rate else "no rate"
        print(f"\r  {label}: {done}/{total} replicated, {rate_text}        ", flush=True)
    else:
        print(f"\r  {label}: {done}/{total}", end="", flush=True)


# -- keep-alive ----------------------------------------------------------------------------------


def keep_alive(endpoint_url: str) -> dict[str, Any]:
    """Whether the backend keeps an HTTP/1.1 connection open after answering."""
    host, port = endpoint_url.removeprefix("http://").rsplit(":", 1)
    conn = http.client.HTTPConnection(host, int(port), timeout=10)
    conn.request(
        "POST",
        "/",
        body=b"{}",
        headers={
            "X-Amz-Target": "DynamoDB_20120810.ListTables",
            "Content-Type": "application/x-amz-json-1.0",
            "Authorization": "AWS4-HMAC-SHA256 Credential=testing/20250101/eu-west-1/dynamodb/"
            "aws4_request, SignedHeaders=host, Signature=0",
        },
    )
    response = conn.getresponse()
    response.read()
    header = response.getheader("Connection")
    conn.close()
    return {
        "http_version": f"HTTP/{response.version / 10:.1f}",
        "connection_header": header,
        "closes_after_each_response": (header or "").lower() == "close",
    }


# -- the report -----------------------------------------------------------------------------------


def summarise(result: dict[str, Any]) -> dict[str, Any]:
    tp = result["throughput"]

    def rate(kind: str, delay: str) -> float | None:
        point = tp.get(kind, {}).get(delay)
        return point.get("records_per_s") if point else None

    summary: dict[str, Any] = {}
    for kind in KINDS:
        for delay in tp.get(kind, {}):
            summary[f"{kind}_records_per_s_{delay}ms"] = rate(kind, delay)
        loop = rate(kind, "0")
        for delay in tp.get(kind, {}):
            value = rate(kind, delay)
            if delay != "0" and loop and value is not None:
                summary[f"wan_{delay}ms_vs_loopback_{kind}"] = round(value / loop, 3)
    ratios = [summary.get(f"wan_40ms_vs_loopback_{kind}") for kind in KINDS]
    if all(r is not None for r in ratios):
        summary["wan_40ms_vs_loopback"] = min(r for r in ratios if r is not None)
    stamped0, raw0 = rate("stamped", "0"), rate("raw", "0")
    if stamped0 and raw0:
        summary["raw_vs_stamped_loopback"] = round(raw0 / stamped0, 3)
    lags = result.get("lag_40ms", {})
    for kind, run in lags.items():
        summary[f"lag_p50_s_40ms_{kind}"] = run["lag"]["p50_s"]
        summary[f"lag_p99_s_40ms_{kind}"] = run["lag"]["p99_s"]
    if lags:
        summary["lag_p50_s_40ms"] = max(run["lag"]["p50_s"] for run in lags.values())
        summary["lag_p99_s_40ms"] = max(run["lag"]["p99_s"] for run in lags.values())
    runs = [run for kind in tp.values() for run in kind.values()]
    runs += list(lags.values()) + list(result.get("write_concurrency_64_40ms", {}).values())
    summary["rss_peak_mb"] = round(max(run["peak_rss_mb"] for run in runs), 1)
    for kind, run in result.get("write_concurrency_64_40ms", {}).items():
        loop = rate(kind, "0")
        if loop and run.get("records_per_s"):
            summary[f"wc64_wan_40ms_vs_loopback_{kind}"] = round(run["records_per_s"] / loop, 3)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}


def judge(summary: dict[str, Any]) -> dict[str, Any]:
    """The issue's targets, each with the value measured and pass/fail (None: not measured)."""

    def check(name: str, value: float | None, target: float, *, at_most: bool = False) -> None:
        ok = None if value is None else (value <= target if at_most else value >= target)
        targets[name] = {"target": f"{'<=' if at_most else '>='} {target}", "value": value}
        targets[name]["pass"] = ok

    targets: dict[str, Any] = {}
    for kind in KINDS:
        value = summary.get(f"wan_40ms_vs_loopback_{kind}")
        check(f"wan_40ms_vs_loopback_{kind}", value, TARGETS["wan_40ms_vs_loopback"])
        check(
            f"wan_40ms_vs_loopback_{kind}_moonshot",
            value,
            TARGETS["wan_40ms_vs_loopback_moonshot"],
        )
    check(
        "raw_vs_stamped_loopback",
        summary.get("raw_vs_stamped_loopback"),
        TARGETS["raw_vs_stamped_loopback"],
    )
    check("lag_p99_s_40ms", summary.get("lag_p99_s_40ms"), TARGETS["lag_p99_s_40ms"], at_most=True)
    check("rss_peak_mb", summary.get("rss_peak_mb"), TARGETS["rss_peak_mb"], at_most=True)
    if BASELINE.exists():
        base = json.loads(BASELINE.read_text())["summary"]
        for kind in KINDS:
            now, then = (
                summary.get(f"{kind}_records_per_s_0ms"),
                base.get(f"{kind}_records_per_s_0ms"),
            )
            if now and then:
                check(
                    f"loopback_{kind}_vs_baseline",
                    round(now / then, 3),
                    LOOPBACK_TOLERANCE,
                )
    return targets


def table(result: dict[str, Any]) -> str:
    s = result["summary"]
    delays = result["run"]["delays_ms"]
    lines = [f"{'one-way delay':>16}" + "".join(f"{d:>10g} ms" for d in delays)]
    for kind in KINDS:
        cells = "".join(
            f"{s.get(f'{kind}_records_per_s_{d:g}ms') or float('nan'):>13,.1f}" for d in delays
        )
        lines.append(f"{kind + ' records/s':>16}{cells}")
        nan = float("nan")
        ratios = "".join(
            f"{s.get(f'wan_{d:g}ms_vs_loopback_{kind}') or (1.0 if d == 0 else nan):>12.2f}x"
            for d in delays
        )
        lines.append(f"{kind + ' vs 0 ms':>16}{ratios}")
    for kind in KINDS:
        if f"lag_p99_s_40ms_{kind}" in s:
            lines.append(
                f"lag at half the 40 ms rate, {kind}: p50 "
                f"{s[f'lag_p50_s_40ms_{kind}'] * 1000:.0f} ms, p99 "
                f"{s[f'lag_p99_s_40ms_{kind}'] * 1000:.0f} ms"
            )
    for kind in KINDS:
        if f"wc64_wan_40ms_vs_loopback_{kind}" in s:
            run = result["write_concurrency_64_40ms"][kind]
            lines.append(
                f"write_concurrency = 64 at 40 ms, {kind}: {run['records_per_s']:,.1f} records/s "
                f"({s[f'wc64_wan_40ms_vs_loopback_{kind}']:.2f}x loopback)"
            )
    lines.append(f"consumer peak RSS: {s['rss_peak_mb']:.0f} MB")
    lines.append("targets:")
    for name, t in result["targets"].items():
        verdict = {True: "pass", False: "FAIL", None: "n/a"}[t["pass"]]
        lines.append(f"  {verdict:>4}  {name}: {t['value']} (target {t['target']})")
    return "\n".join(lines)


def git_commit() -> str:
    try:
        head = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"], cwd=ROOT, capture_output=True, text=True
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--", "service", "resolvers"],
            cwd=ROOT,
            capture_output=True,
            text=True,
        ).stdout.strip()
    except OSError:
        return "unknown"
    return head + ("+dirty" if dirty else "")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--records", type=int, default=2000, help="backlog at 0 ms (default 2000)")
    parser.add_argument(
        "--delays", default="0,40,100", help="one-way delays in ms (0 and 40 needed)"
    )
    parser.add_argument("--window", type=float, default=25.0, help="max seconds per rate point")
    parser.add_argument("--lag-seconds", type=float, default=20.0)
    parser.add_argument("--wc64", choices=["yes", "no"], default="yes",
                        help="also write_concurrency = 64 at 40 ms")  # fmt: skip
    parser.add_argument("--kinds", default=",".join(KINDS))
    parser.add_argument("--quick", action="store_true", help="small backlogs, short windows")
    parser.add_argument("--out", type=Path, default=None, help="result file (default: timestamped)")
    args = parser.parse_args()
    if args.quick:
        args.records, args.window, args.lag_seconds, args.wc64 = 300, 8.0, 6.0, "no"
    delays = [float(d) for d in args.delays.split(",")]
    kinds = [k for k in args.kinds.split(",") if k]
    started = datetime.now(UTC)
    result: dict[str, Any] = {
        "run": {
            "started": started.isoformat(timespec="seconds"),
            "commit": git_commit(),
            "command": " ".join([Path(sys.executable).name, *sys.argv]),
            "machine": f"{platform.machine()}, {os.cpu_count()} cores, shared with other agents",
            "loadavg_at_start": os.getloadavg(),
            "backend": "moto server, serialised (service.adapters.backends.MotoServer)",
            "regions": list(REGIONS),
            "consumer": f"georep run --region {SOURCE}, default [replication] settings",
            "delays_ms": delays,
            "records": args.records,
            "window_s": args.window,
            "lag_seconds": args.lag_seconds,
        },
        "throughput": {},
    }
    print(f"wan bench: {', '.join(kinds)} writes, delays {args.delays} ms one way", flush=True)
    with start_backend("auto") as backend, tempfile.TemporaryDirectory() as folder:
        assert isinstance(backend, MotoServer)
        tmp = Path(folder)
        result["keep_alive"] = keep_alive(backend.endpoint_url)
        for kind in kinds:
            points: dict[str, Any] = {}
            previous: float | None = None
            for delay in delays:
                # A backlog the window can drain, sized from the rate at the previous delay.
                records = args.records
                if previous is not None:
                    records = min(records, max(100, math.ceil(1.3 * previous * args.window)))
                run = throughput(
                    backend, tmp, kind=kind, delay_ms=delay, records=records, window=args.window
                )
                points[f"{delay:g}"] = run.as_json()
                previous = run.records_per_s
            result["throughput"][kind] = points
        if 40.0 in delays:
            result["lag_40ms"] = {}
            for kind in kinds:
                rate40 = result["throughput"][kind]["40"].get("records_per_s") or 1.0
                run = lag(
                    backend, tmp, kind=kind, delay_ms=40, rate=rate40 / 2, seconds=args.lag_seconds
                )
                result["lag_40ms"][kind] = run.as_json()
            if args.wc64 == "yes":
                result["write_concurrency_64_40ms"] = {}
                for kind in kinds:
                    rate40 = result["throughput"][kind]["40"].get("records_per_s") or 10.0
                    run = throughput(
                        backend,
                        tmp,
                        kind=kind,
                        delay_ms=40,
                        records=min(args.records, math.ceil(8 * rate40 * args.window)),
                        window=args.window,
                        replication="write_concurrency = 64",
                        label=f"{kind}-40-wc64",
                    )
                    result["write_concurrency_64_40ms"][kind] = run.as_json()
    result["run"]["loadavg_at_end"] = os.getloadavg()
    result["run"]["seconds"] = round((datetime.now(UTC) - started).total_seconds())
    result["summary"] = summarise(result)
    result["targets"] = judge(result["summary"])
    RESULTS.mkdir(parents=True, exist_ok=True)
    out = args.out or RESULTS / f"wan-{started.strftime('%Y%m%dT%H%M%SZ')}.json"
    text = json.dumps(result, indent=2) + "\n"
    out.write_text(text)
    (RESULTS / "latest.json").write_text(text)
    print(table(result))
    print(f"written to {out} (and bench/results/latest.json)")


if __name__ == "__main__":
    main()
