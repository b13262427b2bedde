"""Memory of the long-running engines: backfill and dead-letter replay, 10k to 1M items.

    .venv/bin/python bench/memory.py [--sizes 10000,100000,1000000] [--json out.json]

What grows with the table is the table's business (DynamoDB holds it), not georep's: each run
drives the real engine (service/engine/backfill.py's ``Backfill`` with a real ``Replicator``;
service/engine/replay.py's ``replay`` with one) over a source that makes items as they are
scanned and destination tables that count writes and keep nothing, so that what the process
holds is what the engine holds. Each size runs in a fresh process; its resident set is sampled
every 50 ms from /proc/self/statm. Printed per engine and size: items, seconds, peak RSS, and
the slope of RSS against items processed after the first 20 % (MB per 100,000 items), with
the same figures in the JSON. Flat means the slope stays near 0 and the peak does not grow
with the size (issue 16, finding 4: before, every lag sample was kept: about 16 MB more per
million items for two destinations).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from resolvers import LastWriterWins  # noqa: E402
from service.adapters.deadletter import DeadLetter  # noqa: E402
from service.adapters.metrics import MemoryMetrics  # noqa: E402
from service.core.apply import Precondition  # noqa: E402
from service.core.stored import Settings  # noqa: E402
from service.engine.backfill import Backfill, Metered, SegmentProgress  # noqa: E402
from service.engine.pipeline import InlineExecutor, Replicator  # noqa: E402
from service.engine.replay import CapturingSink, replay  # noqa: E402
from service.ports import WriteResult  # noqa: E402

PAGE = 1_000
SEGMENTS = 4
REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
PAGE_BYTES = os.sysconf("SC_PAGE_SIZE")


class Discarding:
    """A replica table that accepts every write and keeps nothing (the Table port)."""

    def __init__(self) -> None:
        self.writes = 0

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return None

    def write(
        self, key: Mapping[str, Any], item: Mapping[str, Any] | None, precondition: Precondition
    ) -> WriteResult:
        self.writes += 1
        return WriteResult(ok=True, current=None)

    def annotate(
        self, key: Mapping[str, Any], meta: Mapping[str, Any], precondition: Precondition
    ) -> WriteResult:
        self.writes += 1
        return WriteResult(ok=True, current=None)


def raw_item(i: int) -> dict[str, Any]:
    return {
        "pk": {"S": f"item-{i:08d}"},
        "name": {"S": f"customer {i}"},
        "balance": {"N": str(i % 9973)},
        "tags": {"SS": ["a", f"t{i % 17}"]},
    }


class Progress:
    def save(self, segment: int, total: int, progress: SegmentProgress) -> None:
        pass

    def finish(self, *, scanned: int, at: datetime) -> None:
        pass


class Sampler:
    """RSS every 50 ms, with how many items were done at that moment."""

    def __init__(self, done: Any) -> None:
        self.done, self.samples = done, list[tuple[int, float]]()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(0.05):
            self.samples.append((self.done(), rss_mb()))

    def __enter__(self) -> Sampler:
        self._thread.start()
        return self

    def __exit__(self, *_: object) -> None:
        self._stop.set()
        self._thread.join()
        self.samples.append((self.done(), rss_mb()))


def rss_mb() -> float:
    with open("/proc/self/statm") as statm:
        return int(statm.read().split()[1]) * PAGE_BYTES / 2**20


def slope_per_100k(samples: list[tuple[int, float]], total: int) -> float:
    """Least-squares slope of RSS (MB) against items done, after the first 20 %."""
    points = [(n, mb) for n, mb in samples if n >= total * 0.2]
    if len(points) < 2:
        return 0.0
    mean_n = sum(n for n, _ in points) / len(points)
    mean_mb = sum(mb for _, mb in points) / len(points)
    var = sum((n - mean_n) ** 2 for n, _ in points)
    if var == 0:
        return 0.0
    cov = sum((n - mean_n) * (mb - mean_mb) for n, mb in points)
    return cov / var * 100_000


def settings() -> Settings:
    return Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())


def replicator(tables: Mapping[str, Discarding], sink: CapturingSink) -> Replicator:
    return Replicator(
        region=REGIONS[0],
        settings=settings(),
        tables=dict(tables),
        dead_letters=sink,
        metrics=MemoryMetrics(),
        executor=InlineExecutor(),
    )


def run_backfill(items: int) -> dict[str, Any]:
    per_segment = items // SEGMENTS

    def scan(**request: Any) -> Mapping[str, Any]:
        segment = request["Segment"]
        start = int(request.get("ExclusiveStartKey", {}).get("n", {}).get("N", "0"))
        end = min(start + PAGE, per_segment)
        page: dict[str, Any] = {
            "Items": [raw_item(segment * per_segment + i) for i in range(start, end)]
        }
        if end < per_segment:
            page["LastEvaluatedKey"] = {"n": {"N": str(end)}}
        return page

    destinations = {r: Discarding() for r in REGIONS[1:]}
    source = Discarding()
    job = Backfill(
        settings=settings(),
        source=REGIONS[0],
        destinations=REGIONS[1:],
        scan=scan,
        table_name="bench",
        source_table=Metered(source, bucket=None),
        replicator=replicator(destinations, CapturingSink()),
        progress=Progress(),
        segments=SEGMENTS,
        page_size=PAGE,
        workers=4,
        stamp_at=1 << 16,
        stop=threading.Event(),
    )
    started = time.perf_counter()
    with Sampler(lambda: source.writes) as sampler:
        result = job.run({})
    assert result.complete and per_segment * SEGMENTS == result.tally.scanned, result
    return measured("backfill", per_segment * SEGMENTS, started, sampler)


class GeneratedLetters:
    """A dead-letter store that makes its letters as they are read and forgets them."""

    def __init__(self, count: int) -> None:
        self.count, self.removed, self.updated = count, 0, 0

    def __iter__(self) -> Iterator[DeadLetter]:
        for i in range(self.count):
            record = {
                "eventID": f"e{i}",
                "eventName": "INSERT",
                "eventSource": "aws:dynamodb",
                "awsRegion": REGIONS[0],
                "dynamodb": {
                    "Keys": {"pk": {"S": f"item-{i:08d}"}},
                    "NewImage": raw_item(i),
                    "SequenceNumber": str(10**20 + i),
                    "ApproximateCreationDateTime": 1_700_000_000,
                },
            }
            yield DeadLetter(
                id=f"{i:026d}",
                region=REGIONS[0],
                reason="destination unreachable",
                error="EndpointConnectionError",
                at=1_700_000_000,
                record=record,
                destinations={},
            )

    def letter(self, entry_id: str) -> DeadLetter | None:
        return None

    def update(
        self, entry_id: str, *, reason: str, error: str, destinations: Mapping[str, str]
    ) -> bool:
        self.updated += 1
        return True

    def remove(self, entry_id: str) -> bool:
        self.removed += 1
        return True


def run_replay(items: int) -> dict[str, Any]:
    store = GeneratedLetters(items)
    sink = CapturingSink()
    tables = {r: Discarding() for r in REGIONS}
    engine = replicator(tables, sink)
    started = time.perf_counter()
    with Sampler(lambda: store.removed + store.updated) as sampler:
        for letter in store:
            replay(letter, replicator=engine, sink=sink, store=store)
    engine.close()
    assert items == store.removed, (store.removed, store.updated)
    return measured("replay", items, started, sampler)


def measured(engine: str, items: int, started: float, sampler: Sampler) -> dict[str, Any]:
    return {
        "engine": engine,
        "items": items,
        "seconds": round(time.perf_counter() - started, 2),
        "peak_rss_mb": round(max(mb for _, mb in sampler.samples), 1),
        "final_rss_mb": round(sampler.samples[-1][1], 1),
        "slope_mb_per_100k": round(slope_per_100k(sampler.samples, items), 3),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--sizes", default="10000,100000,1000000")
    parser.add_argument("--engines", default="backfill,replay")
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    parser.add_argument("--one", nargs=2, metavar=("ENGINE", "ITEMS"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        engine, items = args.one[0], int(args.one[1])
        run = {"backfill": run_backfill, "replay": run_replay}[engine]
        print(json.dumps(run(items)))
        return
    results = []
    print(f"{'engine':<9} {'items':>9} {'seconds':>8} {'peak MB':>8} {'MB/100k after 20%':>18}")
    for engine in args.engines.split(","):
        for size in (int(s) for s in args.sizes.split(",")):
            out = subprocess.run(
                [sys.executable, __file__, "--one", engine, str(size)],
                check=True,
                capture_output=True,
                text=True,
            ).stdout
            row = json.loads(out.strip().splitlines()[-1])
            results.append(row)
            print(
                f"{row['engine']:<9} {row['items']:>9,} {row['seconds']:>8.1f} "
                f"{row['peak_rss_mb']:>8.1f} {row['slope_mb_per_100k']:>18.3f}",
                flush=True,
            )
    summary = {
        engine: {
            "peak_rss_mb": {
                str(r["items"]): r["peak_rss_mb"] for r in results if r["engine"] == engine
            },
            "slope_mb_per_100k_largest": next(
                r["slope_mb_per_100k"] for r in reversed(results) if r["engine"] == engine
            ),
        }
        for engine in args.engines.split(",")
    }
    if args.json:
        args.json.write_text(json.dumps({"summary": summary, "runs": results}, indent=2) + "\n")


if __name__ == "__main__":
    main()
