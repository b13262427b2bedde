"""What the tombstone store costs per replicated change, before and after (issue 22).

    .venv/bin/python bench/store_cost.py --quick    # make bench-store: about 3 minutes
    .venv/bin/python bench/store_cost.py            # more changes and longer backlogs

Two configurations in one run, resolver lww, three regions on one moto server that counts
every request it serves (bench/counting_moto.py): ``before`` (tombstone_store off: a delete
leaves a tombstone item in the user's table) and ``after`` (tombstone_store on: the item is
deleted, its tombstone lives in each region's store).

1. Cost, counted at the server. In each configuration, ``--changes`` changes of one kind
   are made in the source region, then the three consumers (in this process) drain every
   stream; the requests the application's writes made and the requests replication made
   (the source's consumer, the two destinations' consumers) are billed by
   bench/store_billing.py's rules (`RULES`, printed with the table). Kinds: an update of an
   existing, replicated item (GeorepTable.put); an insert of a new key (GeorepTable.put); an
   SDK delete (GeorepTable.delete); a raw boto3 DeleteItem, which the source's consumer
   adopts. Streams and bookkeeping (checkpoints, leases) are counted apart: they are paid
   per batch, not per change.
2. Replication rate. ``georep run --region R`` for every region in child processes, the other
   regions behind bench/latency_proxy.py (0, then 40 ms one way); the consumers are paused
   (SIGSTOP), a backlog of ``--records`` changes written in the source through the SDK, and
   resumed; a change is replicated once every destination's stream has its record.
   changes/s = backlog / (last change replicated everywhere - resume). Workloads:
   insert-heavy (every change an insert of a new key) and delete-heavy (every change a delete
   of a live, replicated key; the inserts before it are not timed).

Results: bench/results/store-cost-<commit>.json (store-cost-quick-... with --quick) and a
printed table.
"""

from __future__ import annotations

import argparse
import signal
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

if __package__ in (None, ""):  # run as a script: the repository root, for bench.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from bench.counting_moto import CountingMoto, take
from bench.side_by_side import Process, Tap, run_record, save_run
from bench.side_by_side import georep_config as side_by_side_config
from bench.store_billing import RULES, Biller, Request, Roles, Tally
from bench.wan import child_env, git_commit, proxy_to
from service.adapters.metrics import MemoryMetrics
from service.engine.wiring import Consumer
from service.surfaces.local import REGIONS, LocalReplicaSet, drain, local_replica_set
from service.surfaces.sdk import GeorepTable

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "bench" / "results"
SOURCE, DESTINATIONS = REGIONS[0], REGIONS[1:]
CONFIGS = {"before": False, "after": True}  # label -> tombstone_store
KINDS = ("update", "insert", "sdk_delete", "raw_delete")
WORKLOADS = ("insert_heavy", "delete_heavy")


def item(key: str, n: int) -> dict[str, Any]:
    return {"pk": {"S": key}, "n": {"N": str(n)}, "v": {"S": "x" * 40}}


@dataclass
class Setup:
    """One configuration's replica set."""

    label: str
    replicas: LocalReplicaSet
    store: str | None

    @property
    def roles(self) -> Roles:
        return Roles(self.replicas.table_name, self.store)


def make_setup(backend: CountingMoto, tmp: Path, label: str) -> Setup:
    folder = tmp / label
    folder.mkdir()
    store = f"store-cost-{label}-{uuid.uuid4().hex[:8]}" if CONFIGS[label] else None
    lines = f'tombstone_store = true\ntombstone_table = "{store}"' if store else ""
    replicas = local_replica_set(backend, folder, prefix=f"cost-{label}", replication=lines)
    return Setup(label, replicas, store)


# -- 1. cost per change, counted at the server ----------------------------------------------------


def cost(backend: CountingMoto, setup: Setup, *, changes: int) -> dict[str, Any]:
    """Requests and units per change of each kind: the application's, and replication's at
    the source and per destination."""
    replicas = setup.replicas
    consumers = [
        Consumer(replicas.config, region=r, session=replicas.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()  # the bookkeeping tables, and the store when it is on
    client = replicas.client(SOURCE)
    sdk = GeorepTable(client, config=replicas.config, region=SOURCE)
    biller = Biller(setup.roles)
    keys = [f"{setup.label}-{i}" for i in range(changes)]
    raw_keys = [f"{setup.label}-raw-{i}" for i in range(changes)]
    out: dict[str, Any] = {}

    def settle() -> None:
        drain(consumers)
        biller.tally(Request.from_record(r) for r in take(backend.endpoint_url))

    def measure(kind: str, write: Callable[[int], object]) -> None:
        settle()  # nothing of the setup is billed to this kind
        for i in range(changes):
            write(i)
        app = biller.tally(Request.from_record(r) for r in take(backend.endpoint_url))
        drain(consumers)
        records = [Request.from_record(r) for r in take(backend.endpoint_url)]
        at_source = biller.tally(r for r in records if r.region == SOURCE)
        destinations = biller.tally(r for r in records if r.region != SOURCE)
        out[kind] = {
            "changes": changes,
            "application": app.per(changes),
            "replication_at_source": at_source.per(changes),
            "replication_per_destination": destinations.per(changes * len(DESTINATIONS)),
            "total": total(app, at_source, destinations, changes=changes),
        }
        print(
            f"  {setup.label} {kind}: {out[kind]['total']['wcu']} WCU, "
            f"{out[kind]['total']['rcu']} RCU, {out[kind]['total']['requests']} requests "
            "per change (all regions)",
            flush=True,
        )

    settle()
    measure("insert", lambda i: sdk.put(item(keys[i], i)))
    measure("update", lambda i: sdk.put(item(keys[i], changes + i)))
    measure("sdk_delete", lambda i: sdk.delete({"pk": {"S": keys[i]}}))
    for i, key in enumerate(raw_keys):
        sdk.put(item(key, 2 * changes + i))
    measure(
        "raw_delete",
        lambda i: client.delete_item(TableName=replicas.table_name, Key={"pk": {"S": raw_keys[i]}}),
    )
    out["checked"] = check_everywhere(setup, live=[], gone=keys + raw_keys)
    take(backend.endpoint_url)
    for consumer in consumers:
        consumer.close()
    out["largest_item_bytes"] = dict(biller.largest)
    return out


def total(app: Tally, *tallies: Tally, changes: int) -> dict[str, Any]:
    """Everything one change costs, over every region: units and requests."""
    every = [app, *tallies]
    wcu = sum(sum(t.wcu.values()) for t in every)
    rcu = sum(sum(t.rcu.values()) for t in every)
    requests = sum(t.write_requests + t.read_requests for t in every)
    writes = sum(t.write_requests for t in every)
    server = sum(t.server_seconds for t in every)
    return {
        "wcu": round(wcu / changes, 3),
        "rcu": round(rcu / changes, 3),
        "requests": round(requests / changes, 3),
        "write_requests": round(writes / changes, 3),
        "server_ms": round(1000 * server / changes, 2),
    }


def check_everywhere(setup: Setup, *, live: list[str], gone: list[str]) -> dict[str, Any]:
    """Every region's table as a reader sees it: ``gone`` keys absent (before: tombstone
    items, which a plain reader sees; counted), ``live`` keys present."""
    out: dict[str, Any] = {}
    for region in REGIONS:
        items = setup.replicas.scan(region)
        out[region] = {
            "live_missing": sum(1 for k in live if k not in items),
            "deleted_keys_visible_to_get_item": sum(1 for k in gone if k in items),
        }
    return out


# -- 2. replication rate --------------------------------------------------------------------------


class KeyTap(Tap):
    """One region's stream from its start (side_by_side's tap): the creation times of each
    key's records."""

    def __init__(self, replicas: LocalReplicaSet, region: str) -> None:
        super().__init__(replicas, region)
        self.seen: dict[str, list[float]] = {}

    def poll(self) -> int:
        read = 0
        while self.iterator is not None:
            page = self.streams.get_records(ShardIterator=self.iterator, Limit=1000)
            self.iterator = page.get("NextShardIterator")
            for record in page["Records"]:
                body = record["dynamodb"]
                at = body["ApproximateCreationDateTime"].timestamp()
                self.seen.setdefault(body["Keys"]["pk"]["S"], []).append(at)
            read += len(page["Records"])
            if not page["Records"]:
                break
        return read

    def first_after(self, key: str, since: float) -> float | None:
        return next((t for t in self.seen.get(key, []) if t >= since), None)


def georep_config(setup: Setup, path: Path, *, region: str, others_url: str) -> Path:
    """side_by_side's georep.toml for ``region``'s consumer (its own region direct, the others
    behind ``others_url``), with the store's lines when the configuration has it."""
    written = side_by_side_config(setup.replicas, path, region=region, others_url=others_url)
    if setup.store:
        store = f'tombstone_store = true\ntombstone_table = "{setup.store}"\n'
        written.write_text(written.read_text() + store)
    return written


class RateBench:
    """One configuration's consumers as `georep run` processes, the destinations' streams."""

    def __init__(
        self, setup: Setup, processes: list[Process], *, records: int, window: float
    ) -> None:
        self.setup, self.processes = setup, processes
        self.records, self.window = records, window
        replicas = setup.replicas
        self.sdk = GeorepTable(replicas.client(SOURCE), config=replicas.config, region=SOURCE)
        self.taps = [KeyTap(replicas, r) for r in DESTINATIONS]

    def poll(self) -> None:
        for p in self.processes:
            p.sample()
            p.check_alive()
        for tap in self.taps:
            tap.poll()

    def wait_everywhere(self, keys: list[str], *, since: float, deadline: float) -> list[float]:
        """When each key's record (at or after ``since``) was in every destination; stops at
        ``deadline`` with what is done."""
        while True:
            self.poll()
            done = [self.done_at(k, since) for k in keys]
            if all(t is not None for t in done) or time.monotonic() > deadline:
                return sorted(t for t in done if t is not None)
            time.sleep(0.2)

    def done_at(self, key: str, since: float) -> float | None:
        times = [tap.first_after(key, since) for tap in self.taps]
        return None if any(t is None for t in times) else max(t for t in times if t is not None)

    def warm_up(self) -> None:
        key = f"{self.setup.label}-warm"
        self.sdk.put(item(key, 0))
        if not self.wait_everywhere([key], since=0.0, deadline=time.monotonic() + 120):
            raise RuntimeError(f"{self.setup.label}: not replicating after 120 s")

    def backlog(self, write: Callable[[str], object], keys: list[str]) -> dict[str, Any]:
        """Consumers paused, ``write`` each key in the source, consumers resumed; timed."""
        for p in self.processes:
            p.signal(signal.SIGSTOP)
        started = time.perf_counter()
        try:
            with ThreadPoolExecutor(8) as pool:
                list(pool.map(write, keys))
        finally:
            written = time.perf_counter() - started
            time.sleep(0.05)  # the backlog's records are older than the resume, in moto's clock
            resumed = time.time()
            for p in self.processes:
                p.signal(signal.SIGCONT)
        done = self.wait_everywhere(keys, since=resumed, deadline=time.monotonic() + self.window)
        out: dict[str, Any] = {
            "changes": len(keys),
            "replicated": len(done),
            "backlog_write_s": round(written, 2),
            "stopped_by": "done" if len(done) == len(keys) else f"window of {self.window:g} s",
        }
        if done and len(done) == len(keys):
            out["changes_per_s"] = round(len(keys) / (done[-1] - resumed), 1)
            out["end_to_end_s"] = round(done[-1] - resumed, 2)
            if len(done) > 1 and done[-1] > done[0]:
                out["first_to_last_per_s"] = round((len(done) - 1) / (done[-1] - done[0]), 1)
        return out

    def run(self, workload: str, delay: float) -> dict[str, Any]:
        prefix = f"{self.setup.label}-{workload}-{delay:g}"
        keys = [f"{prefix}-{i}" for i in range(self.records)]
        if workload == "insert_heavy":
            return self.backlog(lambda k: self.sdk.put(item(k, 1)), keys)
        # delete-heavy: the keys live and replicated first (not timed)
        with ThreadPoolExecutor(8) as pool:
            list(pool.map(lambda k: self.sdk.put(item(k, 1)), keys))
        self.wait_everywhere(keys, since=0.0, deadline=time.monotonic() + self.window)
        time.sleep(0.5)  # echoes of the inserts read and dropped
        return self.backlog(lambda k: self.sdk.delete({"pk": {"S": k}}), keys)


def rates(
    backend: CountingMoto,
    tmp: Path,
    setup: Setup,
    *,
    delays: list[float],
    records: int,
    window: float,
) -> dict[str, Any]:
    """delay -> workload -> rate, with one set of consumer processes for every delay (the
    proxy's delay is changed between them, SIGHUP)."""
    folder = tmp / f"{setup.label}-run"
    folder.mkdir()
    delay_file = folder / "delay"
    delay_file.write_text(f"{delays[0]:g}")
    points: dict[str, Any] = {}
    with proxy_to(backend.endpoint_url, delays[0], "--delay-file", str(delay_file)) as px:
        env = child_env(setup.replicas)
        processes = []
        for region in REGIONS:
            config = georep_config(
                setup, folder / f"{region}.toml", region=region, others_url=px.url
            )
            argv = [sys.executable, "-m", "service.surfaces.cli", "-c", str(config), "run"]
            processes.append(
                Process([*argv, "--region", region], env=env, log=folder / f"{region}.log")
            )
        try:
            bench = RateBench(setup, processes, records=records, window=window)
            bench.warm_up()
            for delay in delays:
                delay_file.write_text(f"{delay:g}")
                px.process.send_signal(signal.SIGHUP)
                time.sleep(0.2)
                points[f"{delay:g}"] = {}
                for workload in WORKLOADS:
                    point = bench.run(workload, delay)
                    points[f"{delay:g}"][workload] = point
                    print(
                        f"  {setup.label} at {delay:g} ms, {workload}: "
                        f"{point.get('changes_per_s', 'n/a')} changes/s ({point['stopped_by']})",
                        flush=True,
                    )
        finally:
            for p in processes:
                p.stop()
        points["peak_rss_mb"] = round(max(p.peak_rss_kb for p in processes) / 1024, 1)
    return points


# -- the report -----------------------------------------------------------------------------------


def _ops(counter: dict[str, float]) -> str:
    return ", ".join(f"{v:g} {k}" for k, v in counter.items()) or "-"


def table(result: dict[str, Any]) -> str:
    """The printed summary: units and requests per change by kind, then the rates."""
    lines = [RULES, ""]
    lines.append(
        "per replicated change, 3 regions: total over every region (WCU, RCU, requests and the "
        "embedded server's time on them, streams and bookkeeping apart), then WCU/RCU of the "
        "application's own write, the source's consumer, and each destination's consumer"
    )
    lines.append(
        f"{'kind':<11}{'config':<8}{'WCU':>6}{'RCU':>6}{'req':>6}{'srv ms':>7}"
        f"{'app W/R':>10}{'src W/R':>10}{'dest W/R':>10}  each destination writes"
    )
    for kind in KINDS:
        for label in result["cost"]:
            point = result["cost"][label][kind]
            t = point["total"]
            cells = "".join(
                f"{point[p]['wcu']:g}/{point[p]['rcu']:g}".rjust(10)
                for p in ("application", "replication_at_source", "replication_per_destination")
            )
            dest = _ops(point["replication_per_destination"]["writes"])
            totals = f"{t['wcu']:>6g}{t['rcu']:>6g}{t['requests']:>6g}{t['server_ms']:>7.1f}"
            lines.append(f"{kind:<11}{label:<8}{totals}{cells}  {dest}")
    lines.append("")
    lines.append("replication rate, changes/s to every region (backlog / resume to last done):")
    delays = [f"{d:g}" for d in result["run"]["delays_ms"]]
    lines.append(f"{'workload':<14}{'config':<8}" + "".join(f"{d + ' ms':>10}" for d in delays))
    for workload in WORKLOADS:
        for label in result["rates"]:
            cells = "".join(
                f"{result['rates'][label][d][workload].get('changes_per_s', '-'):>10}"
                for d in delays
            )
            lines.append(f"{workload:<14}{label:<8}{cells}")
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer changes, smaller backlogs")
    parser.add_argument("--changes", type=int, default=50, help="changes per kind (cost)")
    parser.add_argument("--records", type=int, default=400, help="backlog per workload (rate)")
    parser.add_argument("--delays", default="0,40")
    parser.add_argument("--window", type=float, default=90.0, help="max seconds per backlog")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    if args.quick:
        args.changes, args.records = 20, 150
    delays = [float(d) for d in args.delays.split(",")]
    started = datetime.now(UTC)
    commit = git_commit()
    result: dict[str, Any] = {
        "run": {
            **run_record(started, commit),
            "backend": "moto server, serialised, counting (bench/counting_moto.py)",
            "regions": list(REGIONS),
            "source": SOURCE,
            "resolver": "lww",
            "configs": {k: {"tombstone_store": v} for k, v in CONFIGS.items()},
            "changes_per_kind": args.changes,
            "records_per_backlog": args.records,
            "delays_ms": delays,
            "billing": RULES,
        },
        "cost": {},
        "rates": {},
    }
    print(f"store cost: {', '.join(CONFIGS)}; {len(REGIONS)} regions; {args.delays} ms")
    with CountingMoto() as backend, tempfile.TemporaryDirectory() as folder:
        tmp = Path(folder)
        setups = {label: make_setup(backend, tmp, label) for label in CONFIGS}
        for label, setup in setups.items():
            result["cost"][label] = cost(backend, setup, changes=args.changes)
        take(backend.endpoint_url)
        for label, setup in setups.items():
            result["rates"][label] = rates(
                backend, tmp, setup, delays=delays, records=args.records, window=args.window
            )
            take(backend.endpoint_url)  # the counts of the rate runs are not kept
    kind = "store-cost-quick" if args.quick else "store-cost"
    out = save_run(result, kind=kind, started=started, out=args.out)
    print(table(result))
    print(f"written to {out} in {result['run']['seconds']} s")


if __name__ == "__main__":
    main()
