"""``georep demo`` (``make demo``): a real replication session on the embedded backend, and
the verdict.

Starts the embedded moto server (or uses a server you run: ``--backend endpoint``), creates
the table in N regions (3 by default), runs one consumer per region while writers in every
region hammer the same few keys (stamped writes through georep, plain boto3 puts,
deletes), stops the writers, drains the streams and compares the regions byte for byte.
"""

from __future__ import annotations

import argparse
import random
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from service.adapters.backends import start_backend
from service.adapters.metrics import MemoryMetrics
from service.core.stored import Stamped, read_item
from service.core.version import META_ATTR
from service.engine.wiring import Consumer
from service.surfaces.commands.demo import DEMO_REGIONS, configure
from service.surfaces.local import drain, local_replica_set
from service.surfaces.sdk import GeorepTable


def _writer(
    client: Any,
    sdk: GeorepTable,
    table: str,
    region: str,
    seed: int,
    writes: int,
    counts: dict[str, int],
    deadline: float,
) -> None:
    rng = random.Random(seed)
    for n in range(writes):
        if time.monotonic() > deadline:
            return
        key = {"pk": {"S": f"user#{rng.randrange(6)}"}}
        roll = rng.random()
        if roll < 0.2:
            client.put_item(TableName=table, Item={**key, "name": {"S": f"raw-{region}-{n}"}})
            counts["raw"] += 1
        elif roll < 0.3:
            sdk.delete(key)
            counts["deletes"] += 1
        else:
            sdk.put({**key, "name": {"S": f"{region}-{n}"}, "visits": {"N": str(n)}})
            counts["stamped"] += 1


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="georep demo")
    configure(parser)
    return run(parser.parse_args(argv))


def run(args: argparse.Namespace) -> int:
    """The session; 0 only if every region converged."""
    started = time.perf_counter()
    regions = DEMO_REGIONS[: args.regions]
    with (
        start_backend(args.backend, endpoint_url=args.endpoint_url) as backend,
        tempfile.TemporaryDirectory() as tmp,
    ):
        print(
            f"georep demo: {backend.name} on {backend.endpoint_url}, regions {', '.join(regions)}"
        )
        replicas = local_replica_set(
            backend, Path(tmp), prefix="demo", regions=regions, table='resolver = "lww"'
        )
        config, table, session = replicas.config, replicas.table_name, replicas.session()
        clients = {r: replicas.client(r) for r in regions}
        metrics = MemoryMetrics()
        consumers = [Consumer(config, region=r, session=session, metrics=metrics) for r in regions]
        for c in consumers:
            c.setup()
        stop = threading.Event()
        pollers = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
        counts = {"stamped": 0, "raw": 0, "deletes": 0}
        writers = [
            threading.Thread(
                target=_writer,
                args=(
                    clients[r],
                    GeorepTable(clients[r], config=config, region=r),
                    table,
                    r,
                    i,
                    args.writes,
                    counts,
                    time.monotonic() + args.duration,
                ),
            )
            for i, r in enumerate(regions)
        ]
        for t in pollers + writers:
            t.start()
        for t in writers:
            t.join()
        print(
            f"writers done: {counts['stamped']} stamped, {counts['raw']} raw, "
            f"{counts['deletes']} deletes"
        )
        stop.set()
        for t in pollers:
            t.join()
        drain(consumers)
        for c in consumers:
            c.close()

        snapshots = {r: replicas.scan(r) for r in regions}
        identical = all(snapshots[r] == snapshots[regions[0]] for r in regions)
        settings = config.settings()
        print(f"\n{'key':<9} {'value':<22} {'deleted':<8} {'writer':<26} identical")
        for key, item in sorted(snapshots[regions[0]].items()):
            stored = read_item(item, settings=settings)
            assert isinstance(stored, Stamped)
            meta = stored.version.meta
            same = all(snapshots[r].get(key) == item for r in regions)
            print(
                f"{key:<9} {item.get('name', {}).get('S', '-'):<22} {meta.deleted!s:<8} "
                f"{meta.actor:<26} {'yes' if same else 'NO'}"
            )
        lags = metrics.histogram("replication_lag_seconds")
        p50, p99 = lags.quantile(0.5) * 1000, lags.quantile(0.99) * 1000
        applied, conflicts = metrics.total("applied"), metrics.total("conflicts")
        adopted, echoes = metrics.total("raw_writes_adopted"), metrics.total("dropped_echo")
        print(
            f"\nreplicated {applied:.0f} writes, resolved {conflicts:.0f} conflicts, "
            f"adopted {adopted:.0f} raw writes, dropped {echoes:.0f} echoes; "
            f"lag p50 {p50:.0f} ms, p99 {p99:.0f} ms"
        )
        meta_ok = all(META_ATTR in i for i in snapshots[regions[0]].values())
        verdict = identical and meta_ok
        print(
            f"VERDICT: {'CONVERGED' if verdict else 'DIVERGED'}: "
            f"{len(snapshots[regions[0]])} items, "
            f"byte-identical in {len(regions)} regions ({time.perf_counter() - started:.1f}s)"
        )
        return 0 if verdict else 1


if __name__ == "__main__":
    sys.exit(main())
