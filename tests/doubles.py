"""Test doubles for driving the real stream consumer against service/adapters/streams_memory.py: a
clock
the test moves, and a replicator that records what it was handed and fails what it is told to."""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.adapters.metrics import MemoryMetrics
from service.adapters.streams_memory import MemoryStreams
from service.engine.consumer import StreamConsumer
from service.engine.pipeline import RecordResult
from service.ports import CheckpointTable, StatusStore


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def key_of(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def sequence_of(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


@dataclass
class ScriptedReplicator:
    """Hands back one result per record, like service.engine.pipeline.Replicator: a record of a
    key in ``failing`` fails, and so do the later records of that key in the batch (the
    pipeline keeps per-key order by failing the rest of the key's lane). ``on_record`` sees
    every record."""

    failing: set[str] = field(default_factory=set)
    fail_all: str | None = None  # an error reason for every record: a destination is down
    handed: list[str] = field(default_factory=list)  # sequence numbers, in order
    applied: set[str] = field(default_factory=set)
    on_record: Callable[[Mapping[str, Any]], None] | None = None

    def process(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        results, blocked = [], set()
        for record in records:
            key, sequence = key_of(record), sequence_of(record)
            if self.on_record is not None:
                self.on_record(record)
            self.handed.append(sequence)
            if self.fail_all or key in self.failing or key in blocked:
                blocked.add(key)
                reason = self.fail_all or "AccessDeniedException: not authorized"
                results.append(RecordResult(sequence, "failed", reason))
            else:
                self.applied.add(sequence)
                results.append(RecordResult(sequence, "ok"))
        return results

    def submit(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        scope: object = None,
        on_settled: Callable[[int, RecordResult], None] = lambda index, result: None,
    ) -> list[RecordResult]:
        """The window interface, settled at once (every record before submit returns)."""
        results = self.process(records)
        for index, result in enumerate(results):
            on_settled(index, result)
        return results

    def forget(self, scope: object) -> None:
        pass


def consumer_on(
    streams: MemoryStreams,
    *,
    checkpoints: CheckpointTable,
    replicator: ScriptedReplicator,
    clock: Clock,
    metrics: MemoryMetrics | None = None,
    batch_size: int = 10,
    status_store: StatusStore | None = None,
) -> StreamConsumer:
    """The real polling loop over the in-memory stream, with a fixed jitter (half way)."""
    return StreamConsumer(
        region="r0",
        table_name=streams.table_name,
        dynamodb=streams,
        streams=streams,
        checkpoints=checkpoints,
        replicator=replicator,
        metrics=metrics if metrics is not None else MemoryMetrics(),
        batch_size=batch_size,
        clock=clock,
        wall=clock,
        jitter=lambda: 0.5,
        status_store=status_store,
    )
