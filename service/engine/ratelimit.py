"""Write-capacity rate limiting: a token bucket with an injected clock, and the cost of a write.

The bucket never sleeps: :meth:`TokenBucket.reserve` says how long the caller must wait, so it
is a pure function of the clock and the reservations made (the tests drive it with a fake
clock), and the caller decides how to wait.
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from service.core.values import size_of

WCU_BYTES = 1024


def write_units(item: Mapping[str, Any]) -> int:
    """DynamoDB's write capacity units for writing ``item``: one per started KB, at least one.

    >>> write_units({"pk": {"S": "a"}}), write_units({"pk": {"S": "a" * 1024}})
    (1, 2)
    """
    return max(1, math.ceil(size_of(item) / WCU_BYTES))


class TokenBucket:
    """At most ``rate`` units per second on average, in bursts of at most ``burst`` units.

    Laws (checked in tests/unit/test_ratelimit.py): whatever the reservations, by the time the
    caller has waited what :meth:`reserve` returned, the units granted since the start are at
    most ``burst + rate * elapsed``; a caller that stays under the rate never waits. A
    reservation larger than the burst is allowed (an item of 300 KB costs 300 units): it waits
    for the debt, and so does the next one.

    >>> now = [0.0]
    >>> bucket = TokenBucket(10, clock=lambda: now[0])
    >>> bucket.reserve(10), bucket.reserve(5)
    (0.0, 0.5)
    """

    def __init__(
        self,
        rate: float,
        *,
        burst: float | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        if rate <= 0:
            raise ValueError(f"rate must be positive, not {rate}")
        self.rate = float(rate)
        # NOTE: one second's worth by default: DynamoDB itself bursts on up to 300 s of unused
        # capacity, so a one-second burst stays well within what a table absorbs.
        self.burst = float(burst) if burst is not None else max(self.rate, 1.0)
        self.clock = clock
        self.tokens = self.burst
        self.updated = clock()
        self.lock = threading.Lock()

    def reserve(self, cost: float) -> float:
        """Take ``cost`` units now; return the seconds to wait before using them (0 if none)."""
        with self.lock:
            now = self.clock()
            elapsed = max(0.0, now - self.updated)
            self.tokens = min(self.burst, self.tokens + elapsed * self.rate) - cost
            self.updated = now
            return max(0.0, -self.tokens / self.rate)
