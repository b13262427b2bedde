"""The stream reader's cost per shard when a table has hundreds of shards (issue 19).

    .venv/bin/python bench/shards.py [--shards 1,100,500,1000] [--turns 30] [--records 20000]

georep's polling loop (service/engine/consumer.py's ``StreamConsumer``, with its StreamReader,
checkpoint tracker and a lease keeper over in-memory leases, as ``georep run`` has) over the
in-memory DynamoDB Streams of service/adapters/streams_memory.py, whose stream is split into N
open shards; the replicator settles every record at once, so what is timed is the reader's own
work, not the backend's or the writes'. CPU time (``time.process_time``) of:

1. idle turns: shards read and found empty, per turn and per shard read (a turn starts at
   most ``window_records / batch_size`` reads, 20 by default: a read in flight counts as a
   whole batch in the window, so with hundreds of shards each turn reads the 20 read least
   recently);
2. a drain: ``--records`` records spread over the shards, read and settled, per record.

A real table's cost adds one GetRecords round trip per shard per poll (the reader keeps one
read in flight per shard on a pool of 64 threads); this measures what georep adds to it, plus
the in-memory stream's own work (about 45 % of the samples at 1,000 shards, py-spy): an upper
bound. bench/results/shards-1000.json has a run before and after a turn stopped checking every
flow's lease for every batch collected.
"""

from __future__ import annotations

import argparse
import json
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from service.adapters.checkpoints import MemoryCheckpointTable
from service.adapters.leases import MemoryLeaseTable
from service.adapters.metrics import MemoryMetrics
from service.adapters.streams_memory import MemoryStreams
from service.engine.consumer import StreamConsumer
from service.engine.leases import LeaseKeeper
from service.engine.pipeline import RecordResult


class Settling:
    """A replicator that settles every record as soon as it is handed over."""

    def __init__(self) -> None:
        self.records = 0

    def submit(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        scope: object,
        on_settled: Callable[[int, RecordResult], None],
    ) -> object:
        for index, record in enumerate(records):
            self.records += 1
            on_settled(index, RecordResult(record["dynamodb"]["SequenceNumber"], "ok"))
        return None

    def forget(self, scope: object) -> None:
        pass


class Clock:
    """Real time, but idle backoffs never make the loop sleep (each turn reads every shard)."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.time() + self.offset


def measure(shards: int, *, turns: int, records: int) -> dict[str, Any]:
    clock = Clock()
    streams = MemoryStreams(clock=clock, page_size=100)
    (first,) = streams.open_shards()
    if shards > 1:
        streams.split(first, children=shards)
    replicator = Settling()
    checkpoints = MemoryCheckpointTable()
    leases = MemoryLeaseTable()
    consumer = StreamConsumer(
        region="r0",
        table_name=streams.table_name,
        dynamodb=streams,
        streams=streams,
        checkpoints=checkpoints,
        replicator=replicator,
        metrics=MemoryMetrics(),
        clock=clock,
        wall=clock,
        checkpoint_every=1.0,
        leases=lambda arn: LeaseKeeper(leases, stream_arn=arn, owner="bench", clock=clock),
    )
    consumer.setup()
    for _ in range(5):  # finish the closed parent, take the leases, open every child
        consumer.poll_once()
        clock.offset += 1.0
    calls_before = streams.calls["get_records"]
    started = time.process_time()
    for _ in range(turns):
        consumer.poll_once()
        clock.offset += 1.0  # past every idle backoff: each turn reads every shard
    idle = time.process_time() - started
    reads = streams.calls["get_records"] - calls_before
    for i in range(records):
        streams.write(f"k{i}")
    started = time.process_time()
    while replicator.records < records:
        consumer.poll_once()
        clock.offset += 0.01
    drain = time.process_time() - started
    return {
        "shards": shards,
        "open_shards": len(streams.open_shards()),
        "leases_held": len(consumer.leases.held()) if consumer.leases else None,
        "idle_turn_ms": round(idle / turns * 1000, 3),
        "idle_us_per_shard_read": round(idle / max(reads, 1) * 1e6, 1),
        "idle_reads_per_turn": round(reads / turns, 1),
        "drain_us_per_record": round(drain / records * 1e6, 1),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--shards", default="1,100,500,1000")
    parser.add_argument("--turns", type=int, default=30)
    parser.add_argument("--records", type=int, default=20000)
    parser.add_argument("--json", type=Path, default=None)
    args = parser.parse_args()
    rows = []
    for n in (int(s) for s in args.shards.split(",")):
        row = measure(n, turns=args.turns, records=args.records)
        rows.append(row)
        print(
            f"{n:>5} shards: idle turn {row['idle_turn_ms']} ms "
            f"({row['idle_us_per_shard_read']} us per shard read, "
            f"{row['idle_reads_per_turn']} reads a turn); "
            f"drain {row['drain_us_per_record']} us per record",
            flush=True,
        )
    if args.json:
        args.json.write_text(json.dumps({"rows": rows}, indent=2) + "\n")


if __name__ == "__main__":
    main()
