"""Replaying dead letters (``georep dlq replay``), after the cause was fixed.

A letter's record goes back through its region's :class:`service.engine.pipeline.Replicator`, the
one path every record takes, built with a :class:`CapturingSink` so that a record that fails again
is not dead-lettered a second time: the original letter is updated with the new reason instead.

* applied (every destination applied or skipped it): the letter is removed;
* dead-lettered again (a permanent error: the rule still raises, the item is still too large):
  the letter stays, with the new reason, error and per-destination outcomes, one more replay;
* failed (a transient error: throttling, a destination unreachable): the letter stays, with the
  error as its reason, to be replayed later.

NOTE: replaying is at-least-once like the rest of georep: the apply decision is idempotent, so
a record applied and then replayed again (a crash between the write and the removal, or two
replays at once) changes nothing the second time. Letters are replayed oldest first, one at a
time, so that two letters of one key arrive in the order they were read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from service.adapters.deadletter import DeadLetter
from service.engine.pipeline import RecordResult

Outcome = Literal["applied", "dead-lettered", "failed", "gone"]


class BatchReplicator(Protocol):
    """Replicates a batch and waits for it (service.engine.pipeline.Replicator)."""

    def process(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]: ...


class DeadLetterStore(Protocol):
    """The dead letters of a region (DynamoDeadLetters; MemoryDeadLetters in tests)."""

    def letters(self) -> list[DeadLetter]: ...

    def letter(self, entry_id: str) -> DeadLetter | None: ...

    def update(
        self, entry_id: str, *, reason: str, error: str, destinations: Mapping[str, str]
    ) -> bool: ...

    def remove(self, entry_id: str) -> bool: ...


@dataclass
class CapturingSink:
    """A dead-letter sink that keeps what it is given instead of storing it."""

    caught: list[dict[str, Any]] = field(default_factory=list)

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
        self.caught.append({"reason": reason, "error": error, "destinations": dict(destinations)})


@dataclass(frozen=True)
class Replayed:
    """What became of one letter. ``gone``: it was removed meanwhile (a concurrent replay)."""

    id: str
    outcome: Outcome
    reason: str
    destinations: Mapping[str, str]

    @property
    def still_failing(self) -> bool:
        return self.outcome in ("dead-lettered", "failed")


def replay(
    letter: DeadLetter,
    *,
    replicator: BatchReplicator,
    sink: CapturingSink,
    store: DeadLetterStore,
) -> Replayed:
    """Send ``letter``'s record again; remove the letter if it applied, else update it.
    ``sink`` must be the dead-letter sink ``replicator`` was built with."""
    sink.caught.clear()
    [result] = replicator.process([letter.record])
    outcomes = {name: str(delivery) for name, delivery in result.deliveries.items()}
    if result.status == "ok":
        store.remove(letter.id)
        return Replayed(letter.id, "applied", "", outcomes)
    if result.status == "dead-lettered" and sink.caught:
        caught = sink.caught[-1]
        reason, error, outcomes = caught["reason"], caught["error"], caught["destinations"]
    else:  # a transient failure: kept, to be replayed again later
        failed = [d.error for d in result.deliveries.values() if d.handled == "failed"]
        reason, error = f"not applied yet: {result.reason}", failed[0] if failed else "failed"
    if not store.update(letter.id, reason=reason, error=error, destinations=outcomes):
        return Replayed(letter.id, "gone", reason, outcomes)
    return Replayed(letter.id, result.status, reason, outcomes)


def key_of(letter: DeadLetter) -> str:
    """The item key of a letter's record, for people (``-`` when the record has none)."""
    body = letter.record.get("dynamodb")
    keys = body.get("Keys") if isinstance(body, Mapping) else None
    if not isinstance(keys, Mapping) or not keys:
        return "-"
    parts = []
    for name, value in sorted(keys.items()):
        inner = next(iter(value.values()), None) if isinstance(value, Mapping) else value
        parts.append(f"{name}={inner!r}" if isinstance(inner, bytes) else f"{name}={inner}")
    return " ".join(parts)
