"""Hybrid logical clock timestamps as plain integers.

A timestamp packs wall-clock milliseconds and a 16-bit logical counter into one integer
(``ms << 16 | logical``) so that it orders like the pair, fits a DynamoDB number exactly and
compares with ``<``. The functions are pure: the caller passes the wall clock in, and the
service keeps one :class:`Clock` per process (see ``service/clock.py``).

Laws (Kulkarni et al., "Logical Physical Clocks", 2014):

* ``tick(prev, now) > prev`` — a clock never goes backwards, whatever the wall clock does;
* ``observe(prev, remote, now) > max(prev, remote)`` — after seeing a remote timestamp, every
  later local timestamp orders after it, so causality is respected under clock skew;
* the physical part never exceeds ``max(now, largest timestamp seen)``: skew is absorbed by the
  logical counter, not by inventing time.
"""

from __future__ import annotations

LOGICAL_BITS = 16
LOGICAL_MASK = (1 << LOGICAL_BITS) - 1


def pack(ms: int, logical: int = 0) -> int:
    """Build a timestamp from wall milliseconds and a logical counter.

    >>> unpack(pack(1_700_000_000_000, 3))
    (1700000000000, 3)
    """
    if ms < 0 or not 0 <= logical <= LOGICAL_MASK:
        raise ValueError(f"HLC parts out of range: ms={ms}, logical={logical}")
    return (ms << LOGICAL_BITS) | logical


def unpack(ts: int) -> tuple[int, int]:
    """Split a timestamp into (wall milliseconds, logical counter)."""
    return ts >> LOGICAL_BITS, ts & LOGICAL_MASK


def wall_ms(ts: int) -> int:
    """The physical (wall-clock millisecond) part of a timestamp."""
    return ts >> LOGICAL_BITS


def tick(prev: int, now_ms: int) -> int:
    """The next local timestamp: the wall clock if it moved on, else ``prev`` plus one.

    NOTE: when the logical counter would overflow we borrow one millisecond from the future;
    that needs 65,536 events inside one millisecond on one clock, which DynamoDB's per-item
    write limit (1,000/s) rules out for any single item.
    """
    return max(prev + 1, now_ms << LOGICAL_BITS)


def observe(prev: int, remote: int, now_ms: int) -> int:
    """The next local timestamp after receiving ``remote``: orders after both."""
    return max(prev + 1, remote + 1, now_ms << LOGICAL_BITS)
