"""Apply decisions per second on one core: the no-conflict path and the conflict path.

Run: ``make bench`` (or ``.venv/bin/python bench/core.py``). Prints decisions/s and the ratio
to a baseline measured in the same run: the naive replicator's per-record work (parse the
record, copy the new image), so the ratio says what georep's decision costs on top of it.
Target: >= 50,000 decisions/s on one core, so the core is never the bottleneck (a DynamoDB
conditional write is ~1 ms). Each run is appended to bench/results/core-history.jsonl and
printed beside the previous one (``make bench-quick`` runs it first).
"""

from __future__ import annotations

import json
import os
import platform
import subprocess
import time
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import ulid

from resolvers import LastWriterWins
from service.adapters.memory import MemoryTable
from service.core import hlc
from service.core.adopt import translate
from service.core.apply import decide, merge
from service.core.records import parse_record
from service.core.stamp import stamp
from service.core.stored import Absent, Settings, read_item
from service.core.version import encode_item

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
SETTINGS = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
DATA = {
    "pk": {"S": "user#42"},
    "name": {"S": "Ada Lovelace"},
    "balance": {"N": "1234.50"},
    "tags": {"SS": ["a", "b", "c"]},
    "profile": {"M": {"city": {"S": "London"}, "age": {"N": "36"}}},
}


def _version(region: str, base: object, value: str, at: int) -> object:
    data = {**DATA, "name": {"S": value}}
    return stamp(
        base,
        data,
        region=region,
        now_hlc=hlc.pack(at),
        write_id=str(ulid.new()),  # type: ignore[arg-type]
        settings=SETTINGS,
    )


def rate(fn: Callable[[], object], *, seconds: float = 1.5) -> float:
    n, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(200):
            fn()
        n += 200
    return n / elapsed


def main() -> None:
    base = _version("eu-west-1", Absent(), "v0", 1_700_000_000_000)
    newer = _version(
        "eu-west-1",
        read_item(encode_item(base, horizon_ms=1), settings=SETTINGS),  # type: ignore[arg-type]
        "v1",
        1_700_000_000_005,
    )
    concurrent = _version(
        "us-east-1",
        read_item(encode_item(base, horizon_ms=1), settings=SETTINGS),  # type: ignore[arg-type]
        "v2",
        1_700_000_000_007,
    )
    stored = encode_item(base, horizon_ms=1)  # type: ignore[arg-type]
    stored_newer = encode_item(newer, horizon_ms=1)  # type: ignore[arg-type]
    current = read_item(stored, settings=SETTINGS)

    # A record as the source region's stream delivers it.
    table = MemoryTable("eu-west-1", ("pk",))
    table.put_raw(stored)
    table.put_raw(stored_newer)
    record = table.stream[-1]

    def naive() -> object:  # the baseline replicator: take the new image and write it
        return dict(record["dynamodb"]["NewImage"])

    def no_conflict() -> object:
        # What the consumer does per record when nothing conflicts: parse, classify (echo or
        # fresh), and build the item for the one conditional write (no read of the destination).
        change = parse_record(record)
        outcome = translate(change, region="eu-west-1", settings=SETTINGS)
        return encode_item(outcome.version, horizon_ms=1)  # type: ignore[union-attr]

    def decision_only() -> object:  # the pure decision over an already-parsed current item
        return decide(current, newer, settings=SETTINGS)  # type: ignore[arg-type]

    current_newer = read_item(stored_newer, settings=SETTINGS)

    def conflict_decision_only() -> object:  # decide + resolve + merge, inputs parsed
        return decide(current_newer, concurrent, settings=SETTINGS)  # type: ignore[arg-type]

    def conflict() -> object:
        # The condition failed and ALL_OLD returned the current item: classify it, decide,
        # resolve and merge, build the item for the write.
        d = decide(read_item(stored_newer, settings=SETTINGS), concurrent, settings=SETTINGS)  # type: ignore[arg-type]
        return encode_item(d.version, horizon_ms=1)  # type: ignore[union-attr]

    assert merge(newer, concurrent, settings=SETTINGS).meta.merged  # type: ignore[arg-type]
    baseline = rate(naive)
    rows = [
        ("no-conflict path", rate(no_conflict)),
        ("conflict path", rate(conflict)),
        ("decide(), no conflict", rate(decision_only)),
        ("decide(), conflict", rate(conflict_decision_only)),
    ]
    previous = _last_run(HISTORY)
    print(
        f"{'path':<22} {'per second':>12} {'vs target 50k':>14} {'naive/georep':>13} "
        f"{'previous run':>13} {'change':>7}"
    )
    print(f"{'naive copy':<22} {baseline:>12,.0f}")
    for name, value in rows:
        before = previous.get("rates", {}).get(name)
        beside = f"{before:>13,.0f} {value / before - 1:>+7.0%}" if before else f"{'-':>13}"
        print(
            f"{name:<22} {value:>12,.0f} {value / 50_000:>13.2f}x {baseline / value:>12.1f}x "
            f"{beside}"
        )
    print(
        "paths: parse the record, classify it (echo/forward/adopt), decide, build the item to "
        "write; decide(): the pure apply decision on parsed inputs"
    )
    if previous:
        print(f"previous run: {previous.get('commit')} at {previous.get('at')} ({HISTORY})")
    _append_run(HISTORY, {"naive copy": baseline, **dict(rows)})


# Every run's rates, one JSON line each (commit, time, rates), so that a run prints the previous
# one beside it and a slower core shows at once (issue 24: the conflict path fell from 27-29k to
# 16.6k/s and nothing noticed).
HISTORY = Path(__file__).resolve().parent / "results" / "core-history.jsonl"


def _last_run(path: Path) -> dict[str, Any]:
    if not path.exists():
        return {}
    lines = [line for line in path.read_text().splitlines() if line.strip()]
    return dict(json.loads(lines[-1])) if lines else {}


def _append_run(path: Path, rates: dict[str, float]) -> None:
    commit = subprocess.run(
        ["git", "describe", "--always", "--dirty"],
        capture_output=True,
        text=True,
        check=False,
        cwd=path.parent,
    ).stdout.strip()
    entry = {
        "commit": commit or None,
        "at": datetime.now(UTC).isoformat(timespec="seconds"),
        "machine": f"{platform.machine()} {os.cpu_count()} cpus",
        "rates": {name: round(value) for name, value in rates.items()},
    }
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as out:
        out.write(json.dumps(entry) + "\n")


if __name__ == "__main__":
    main()
