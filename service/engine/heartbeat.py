"""What a running consumer says about itself, for ``georep status`` (another process).

The consumer keeps a :class:`StatusTracker` (plain values; times are arguments) and saves its
:class:`ConsumerStatus` through a :class:`StatusStore` (the checkpoint table of its region: one
small item per replica table) at most every ``every`` seconds, and once more when it stops. A
status is a heartbeat, not a log: the latest poll, counts since the process started, the largest
write-to-applied lag seen since the previous save, and the last error with its time. The last
error outlives a restart (the tracker resumes from the saved status), so a consumer that halted
and was started again still shows why it halted until a newer error replaces it.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING

from service.ports import ConsumerStatus

if TYPE_CHECKING:
    from service.engine.pipeline import RecordResult

# The Replicator's observation of write-to-applied lag (service/engine/pipeline.py).
LAG = "replication_lag_seconds"
SAVE_EVERY_SECONDS = 5.0
ERROR_CHARS = 1_000


class StatusTracker:
    """Counts what the consumer did and decides when to save. A :class:`Metrics` too: given
    to the Replicator (alongside the real metrics), it sees the lag the Replicator measures,
    so the lag has one definition. Thread-safe (the Replicator's lanes observe in parallel)."""

    def __init__(self, *, started_at: float, every: float = SAVE_EVERY_SECONDS) -> None:
        self.started_at, self.every = started_at, every
        self._lock = threading.Lock()
        self._applied = self._dead_lettered = 0
        self._lag: float | None = None
        self._error: tuple[str, float] | None = None
        self._polled_at: float | None = None
        self._saved_at: float | None = None

    def resume(self, previous: ConsumerStatus | None) -> None:
        """Carry the last error of the process before this one (a restart)."""
        if previous is not None and previous.last_error is not None and self._error is None:
            self._error = (previous.last_error, previous.last_error_at or 0.0)

    # -- Metrics ------------------------------------------------------------------------------

    def incr(self, name: str, labels: Mapping[str, str], value: float = 1) -> None:
        """Counters are the real metrics' business."""

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        if name == LAG:
            with self._lock:
                self._lag = value if self._lag is None else max(self._lag, value)

    # -- what the consumer tells it -----------------------------------------------------------

    def polled(self, at: float) -> None:
        self._polled_at = at

    def settled(self, results: Sequence[RecordResult]) -> None:
        with self._lock:
            self._applied += sum(r.status == "ok" for r in results)
            self._dead_lettered += sum(r.status == "dead-lettered" for r in results)

    def error(self, at: float, text: str) -> None:
        with self._lock:
            self._error = (" ".join(text.split())[:ERROR_CHARS], at)

    # -- saving -------------------------------------------------------------------------------

    def due(self, now: float) -> bool:
        return self._saved_at is None or now - self._saved_at >= self.every

    def snapshot(self, now: float, *, stopped: bool = False) -> ConsumerStatus:
        """The status to save now; the lag window starts again."""
        with self._lock:
            error, lag = self._error, self._lag
            self._lag, self._saved_at = None, now
            return ConsumerStatus(
                started_at=self.started_at,
                polled_at=self._polled_at,
                applied=self._applied,
                dead_lettered=self._dead_lettered,
                lag_seconds=lag,
                last_error=error[0] if error else None,
                last_error_at=error[1] if error else None,
                stopped=stopped,
            )
