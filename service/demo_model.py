"""The in-memory variant of the demo (``python -m service.demo_model``): no backend at all.

Writers in every region put, update and delete the same few keys, some
through georep's stamping and some as plain raw writes; deliveries are shuffled, duplicated
and a consumer crashes; then the streams drain and the regions are compared byte for byte.
"""

from __future__ import annotations

import random
import sys
import time
from collections.abc import Callable

import ulid

from resolvers import LastWriterWins
from service.checkpoint import CheckpointTracker
from service.core import hlc
from service.core.apply import (
    Adopt,
    Forward,
    Restore,
    Settings,
    Skip,
    Stamped,
    Write,
    decide,
    precondition_for,
    read_item,
    stamp,
    translate,
)
from service.core.records import parse_record
from service.core.version import Version, encode_item
from service.memory import MemoryTable

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
HORIZON_MS = 7 * 24 * 3600 * 1000


def _clock(now: list[int], skew: int) -> Callable[[], int]:
    return lambda: now[0] + skew


def main(seed: int = 7, writes: int = 600) -> int:
    rng = random.Random(seed)
    now = [1_700_000_000_000]
    skew = {"eu-west-1": 0, "us-east-1": 40, "ap-southeast-2": -25}
    tables = {r: MemoryTable(r, ("pk",), now_ms=_clock(now, skew[r])) for r in REGIONS}
    settings = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
    clocks = dict.fromkeys(REGIONS, 0)
    trackers = {r: CheckpointTracker() for r in REGIONS}
    inflight: list[tuple[str, str, int, Version]] = []
    counts = {"stamped": 0, "raw": 0, "deletes": 0, "conflicts": 0, "echoes": 0, "crashes": 0}
    started = time.perf_counter()

    def apply(dst: str, version: Version) -> None:
        key = {"pk": version.data["pk"]}
        while True:
            current = read_item(tables[dst].get(key), settings=settings)
            decision = decide(current, version, settings=settings)
            if isinstance(decision, Skip):
                return
            assert isinstance(decision, Write)
            counts["conflicts"] += decision.conflict is not None
            item = encode_item(decision.version, horizon_ms=HORIZON_MS)
            if tables[dst].write(key, item, decision.precondition).ok:
                return

    def poll(region: str) -> None:
        tracker = trackers[region]
        for record in tables[region].records_after(tracker.read_position, limit=10):
            outcome = translate(parse_record(record), region=region, settings=settings)
            targets: list[str] = []
            if isinstance(outcome, Forward):
                targets = [r for r in REGIONS if r != region]
            elif isinstance(outcome, Adopt):
                targets = list(REGIONS)
            elif isinstance(outcome, Restore):
                targets = [region]
            else:
                counts["echoes"] += outcome.reason == "echo"
            position = tracker.read_position
            tracker.read(position, tasks=len(targets))
            assert isinstance(outcome, Forward | Adopt | Restore) or not targets
            for dst in targets:
                inflight.append((region, dst, position, outcome.version))  # type: ignore[union-attr]

    for n in range(writes):
        now[0] += rng.choice([0, 1, 5, 20])
        region, key = rng.choice(REGIONS), {"pk": {"S": f"user#{rng.randrange(4)}"}}
        table = tables[region]
        kind = rng.random()
        if kind < 0.12:
            counts["deletes"] += 1
            current = read_item(table.get(key), settings=settings)
            clocks[region] = hlc.tick(clocks[region], now[0] + skew[region])
            v = stamp(
                current,
                None,
                region=region,
                now_hlc=clocks[region],
                write_id=str(ulid.new()),
                settings=settings,
            )
            if v is not None:
                table.write(key, encode_item(v, horizon_ms=HORIZON_MS), precondition_for(current))
        elif kind < 0.3:
            counts["raw"] += 1
            table.put_raw({**key, "value": {"S": f"raw-{n}"}})
        else:
            counts["stamped"] += 1
            current = read_item(table.get(key), settings=settings)
            clocks[region] = hlc.tick(clocks[region], now[0] + skew[region])
            v = stamp(
                current,
                {**key, "value": {"S": f"w-{n}"}},
                region=region,
                now_hlc=clocks[region],
                write_id=str(ulid.new()),
                settings=settings,
            )
            assert v is not None
            table.write(key, encode_item(v, horizon_ms=HORIZON_MS), precondition_for(current))
        poll(rng.choice(REGIONS))
        rng.shuffle(inflight)
        for _ in range(rng.randrange(len(inflight) + 1)):
            src, dst, position, version = inflight.pop()
            apply(dst, version)
            trackers[src].done(position)
        if rng.random() < 0.01:  # a consumer crashes; it restarts from its last checkpoint
            victim = rng.choice(REGIONS)
            inflight[:] = [t for t in inflight if t[0] != victim]
            trackers[victim] = CheckpointTracker(start=trackers[victim].safe_position())
            counts["crashes"] += 1
    while True:  # writers stopped: drain every stream
        for r in REGIONS:
            poll(r)
        if not inflight:
            break
        while inflight:
            src, dst, position, version = inflight.pop()
            apply(dst, version)
            trackers[src].done(position)
    elapsed = time.perf_counter() - started

    keys = sorted({k for t in tables.values() for k in t.items})
    identical = all(len({repr(tables[r].items.get(k)) for r in REGIONS}) == 1 for k in keys)
    print(
        f"georep demo: {len(REGIONS)} regions, {writes} writes "
        f"({counts['stamped']} stamped, {counts['raw']} raw, {counts['deletes']} deletes), "
        f"{counts['crashes']} consumer crashes, {elapsed:.2f}s"
    )
    print(f"{'key':<10} {'value':<12} {'deleted':<8} writer")
    for k in keys:
        stored = read_item(tables[REGIONS[0]].items.get(k), settings=settings)
        assert isinstance(stored, Stamped)
        meta = stored.version.meta
        value = stored.version.data.get("value", {}).get("S", "-")
        print(f"{stored.version.data['pk']['S']:<10} {value:<12} {meta.deleted!s:<8} {meta.actor}")
    print(f"conflicts resolved: {counts['conflicts']}, echoes dropped: {counts['echoes']}")
    verdict = "CONVERGED: every region holds byte-identical items" if identical else "DIVERGED"
    print(verdict)
    return 0 if identical else 1


if __name__ == "__main__":
    sys.exit(main())
