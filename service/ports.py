"""The narrow ports through which the service does I/O.

The in-memory model (service/adapters/memory.py) and the DynamoDB adapter implement the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from service.core.apply import Precondition
from service.core.checkpoints import ShardState as ShardState  # re-exported for the stores
from service.core.leases import Lease
from service.core.places import Step as Step  # re-exported for the adapters


@dataclass(frozen=True)
class WriteResult:
    """``ok``: the write happened. Otherwise the precondition failed and ``current`` is the
    item as it is now (DynamoDB's ReturnValuesOnConditionCheckFailure=ALL_OLD)."""

    ok: bool
    current: Mapping[str, Any] | None


@dataclass(frozen=True)
class CommitResult:
    """``ok``: every step happened. Otherwise none did, and ``failed`` names the places whose
    condition failed (``"table"``, ``"store"``), each with its item as it is now (``table``,
    ``store``: DynamoDB's ALL_OLD; ``None`` where absent or where the condition held)."""

    ok: bool
    failed: frozenset[str] = frozenset()
    table: Mapping[str, Any] | None = None
    store: Mapping[str, Any] | None = None


class Table(Protocol):
    """One region's replica table."""

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None: ...

    def write(
        self,
        key: Mapping[str, Any],
        item: Mapping[str, Any] | None,
        precondition: Precondition,
    ) -> WriteResult: ...

    def annotate(
        self,
        key: Mapping[str, Any],
        meta: Mapping[str, Any],
        precondition: Precondition,
    ) -> WriteResult:
        """Set only the item's ``_georep`` attribute to ``meta`` (UpdateItem), leaving its
        data as it is, if ``precondition`` holds."""
        ...

    def get_stored(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        """The tombstone store's item for ``key`` of this table (issue 22), read consistently."""
        ...

    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> Sequence[Mapping[str, Any] | None]:
        """`get` of each of ``keys`` (distinct), in their order, in as few requests as the
        backend allows (DynamoDB: BatchGetItem, 100 keys each)."""
        ...

    def get_stored_many(
        self, keys: Sequence[Mapping[str, Any]]
    ) -> Sequence[Mapping[str, Any] | None]:
        """`get_stored` of each of ``keys`` (distinct), in their order, as `get_many`."""
        ...

    def commit(
        self, key: Mapping[str, Any], *, table: Step | None, store: Step | None
    ) -> CommitResult:
        """The user table's step and the store's step for ``key``, all or nothing (one
        TransactWriteItems when both are given)."""
        ...


class DeadLetterSink(Protocol):
    def put(
        self,
        *,
        region: str,
        record: Mapping[str, Any],
        reason: str,
        error: str,
        destinations: Mapping[str, str],
        table: str | None = None,
    ) -> None:
        """Keep ``record`` with why it could not be applied. ``destinations``: what happened
        at each destination it was sent to (``"applied (written)"``, ``"rejected (...)"``),
        empty when it was refused before any (malformed, too large). ``table``: the
        configured table whose stream the record came from (None: not known)."""
        ...


Labels = Mapping[str, str]


class Metrics(Protocol):
    """Where counters and observations go (Prometheus, CloudWatch EMF, memory)."""

    def incr(self, name: str, labels: Labels, value: float = 1) -> None: ...

    def observe(self, name: str, labels: Labels, value: float) -> None: ...


class CheckpointStore(Protocol):
    """One stream's checkpoints. ``save`` writes ``state`` iff it keeps the shard's checkpoint
    monotonic (service.core.checkpoints.may_save: nothing stored, a later sequence number, or
    finishing an unfinished shard) and says whether it did; other errors raise."""

    def load(self) -> dict[str, ShardState]: ...

    def save(self, shard_id: str, state: ShardState) -> bool: ...

    def mark_needs_repair(self, reason: str) -> None: ...


class CheckpointTable(Protocol):
    """A replica table's checkpoints: one store per stream, and which stream is followed."""

    def for_stream(self, stream_arn: str) -> CheckpointStore: ...

    def followed_stream(self) -> str | None: ...

    def follow(self, stream_arn: str) -> None: ...


@dataclass(frozen=True)
class ConsumerStatus:
    """One consumer's heartbeat. Times are epoch seconds."""

    started_at: float
    polled_at: float | None  # the latest poll (None: saved before the first)
    applied: int  # records settled since the start (applied, or nothing to apply: echoes)
    dead_lettered: int  # records dead-lettered since the start
    lag_seconds: float | None  # the largest write-to-applied lag since the previous save
    last_error: str | None = None
    last_error_at: float | None = None
    stopped: bool = False  # the consumer said it was stopping (a crash says nothing)


class StatusStore(Protocol):
    """Where a region's consumer status is kept (service/adapters/checkpoints.py: the
    checkpoint table)."""

    def save_status(self, status: ConsumerStatus) -> None: ...

    def consumer_status(self) -> ConsumerStatus | None: ...


class LeaseTable(Protocol):
    """Where one region's leases live. ``put`` writes ``new`` iff the stored lease is still
    ``expected`` (service.core.leases.condition_holds: same owner and counter, or no item when
    ``expected.counter`` is 0) and says whether it did; other errors raise."""

    def list(self, *, stream_arn: str) -> list[Lease]: ...

    def put(self, new: Lease, *, stream_arn: str, expected: Lease) -> bool: ...
