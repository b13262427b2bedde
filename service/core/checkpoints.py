"""Shard checkpoints, decided: whether a save may replace what is stored.

One pure rule, used by the in-memory checkpoint store and mirrored, clause for clause, by the
DynamoDB store's ConditionExpression (service/adapters/checkpoints.py), as service/core/leases.py
does for leases. tests/integration/test_checkpoints.py shows the two refuse the same saves.

Laws:

* **Monotonic.** A shard's stored position only goes forward: a save is accepted iff nothing is
  stored yet, or it names a later sequence number than the stored one, or it finishes a shard
  that is not finished. A finished shard stays finished (its position is past every record).
  So a consumer that lost its lease, or a peer discovering a shard another already read, can
  never move a checkpoint back (docs/design.md, "Checkpoints and leases").
* **Creating is a save of an empty state**: accepted only when nothing is stored (discovery).
* Sequence numbers are decimal strings of 21 to 40 digits: they are compared as integers, never
  as strings (``"9" < "10"``). DynamoDB compares strings byte by byte, so the store keeps
  :func:`position_key` beside the sequence number: a string whose order is the integers' order.

>>> may_save(ShardState(sequence="10"), ShardState(sequence="9"))
False
>>> may_save(ShardState(sequence="9"), ShardState(sequence="10"))
True
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass
class ShardState:
    """One shard's checkpoint as stored (service.ports re-exports it for the stores)."""

    sequence: str | None = None  # last sequence number fully applied
    finished: bool = False
    # Wall-clock seconds at which the shard did not exist yet (a listing without it, or the
    # stream's creation): rule 4's bound on how old its first records can be
    # (service/engine/streams.py).
    created_after: float | None = None


def position(sequence: str) -> int:
    """A sequence number as the integer it spells."""
    return int(sequence)


def position_key(sequence: str) -> str:
    """A string that sorts as the sequence numbers do as integers: the digit count (three
    digits) then the digits without leading zeros. ``"9"`` -> ``"001:9"``, ``"10"`` ->
    ``"002:10"``."""
    digits = str(position(sequence))
    return f"{len(digits):03d}:{digits}"


def may_save(stored: ShardState | None, new: ShardState) -> bool:
    """Whether saving ``new`` over ``stored`` (None: no item) keeps the checkpoint monotonic."""
    if stored is None:
        return True  # the first save of this shard (discovery, or a first commit)
    if stored.finished:
        return False  # a finished shard stays finished
    if new.finished:
        return True  # finishing: past every record
    if new.sequence is None:
        return False  # an empty state over an existing one: discovery by a peer, or a rewind
    if stored.sequence is None:
        return True  # the first position of a shard discovered before
    return position(new.sequence) > position(stored.sequence)  # strictly forward
