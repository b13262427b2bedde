"""Which stream position is safe to checkpoint.

A record may be checkpointed only after every destination applied it and every record before
it (at-least-once: a crash replays from the checkpoint, and the decision is idempotent, so a
replay changes nothing). Pure bookkeeping, shared by the standalone consumer and the model.
"""

from __future__ import annotations

from dataclasses import dataclass, field


@dataclass
class CheckpointTracker:
    """Tracks outstanding work per record position (positions increase in read order)."""

    start: int = 0
    _read: int = field(default=0, init=False)
    _outstanding: dict[int, int] = field(default_factory=dict, init=False)

    def __post_init__(self) -> None:
        self._read = self.start

    def read(self, position: int, *, tasks: int) -> None:
        """Record ``position`` was read and needs ``tasks`` destination writes."""
        if tasks:
            self._outstanding[position] = tasks
        self._read = position + 1

    def done(self, position: int) -> None:
        """One destination finished applying the record at ``position``."""
        left = self._outstanding[position] - 1
        if left:
            self._outstanding[position] = left
        else:
            del self._outstanding[position]

    @property
    def read_position(self) -> int:
        return self._read

    def safe_position(self) -> int:
        """Everything before this position has been applied everywhere."""
        return min(self._outstanding, default=self._read)
