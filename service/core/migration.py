"""Moving tombstone items written before the tombstone store into it (issue 22). Pure.

Before the store a delete left a tombstone item in the user's table (the keys, ``_georep``
with ``d = true``, ``_georep_ttl``, and under merge rules the data it deletes). With the store
a deleted key is absent from the table and its tombstone lives in the store
(docs/design.md, "the tombstone store"). `plan_move` decides, for one key read from both
places (`read_key`), what moving it takes:

==================================  ==========================================================
table / store as read               plan
==================================  ==========================================================
live, raw or no item                `Leave`: nothing to move (a write landed since the scan)
a residency marker                  `Leave`: markers stay until the store keeps them
tombstone / none or an older one    `Move`: the store gets the table's tombstone
tombstone / the same or a successor `Move` (``already``): only the table item goes
tombstone / a concurrent one        `Move`: the store gets what the resolver makes of both
==================================  ==========================================================

A move is the row "item / any -> tombstone" of `commit_for`: the table's Delete conditioned
on exactly the ``_georep`` read, and the store's Put conditioned on the store item as read, in
one transaction. The store records the deleted image as a replicated deletion
(``local=False``), so the REMOVE record the move makes is an echo: never forwarded, never
adopted as an application's delete (`service.core.adopt.translate`). The tombstone already
reached every region from the record of the write that made it. A failed condition means a
write landed: read both places again and plan again; a live item is never deleted.

>>> from resolvers.lww import LastWriterWins
>>> from service.core.places import read_key
>>> settings = Settings(regions=("eu",), key_attributes=("pk",), resolver=LastWriterWins())
>>> plan_move(read_key(None, None, settings=settings), table="t", region="eu", settings=settings)
Leave(reason='absent')
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from service.core.apply import Skip, Write
from service.core.places import KeyState, Step, commit_for
from service.core.residency import decide_for
from service.core.stored import Absent, Raw, Settings, Stamped, Stored
from service.core.version import Version


@dataclass(frozen=True)
class Leave:
    """Nothing to move for this key, and why."""

    reason: Literal["absent", "live", "raw", "marker"]


@dataclass(frozen=True)
class Move:
    """Write ``version`` to the store and delete the table's tombstone item, in one commit
    (``table`` and ``store`` are its two steps). ``already``: the store held that tombstone, or
    one that succeeds it, before the move; only the table item goes."""

    version: Version
    table: Step
    store: Step
    already: bool


Plan = Leave | Move


def is_tombstone_item(stored: Stored) -> bool:
    """Whether a table item is a tombstone written before the store (a residency marker is
    not: it stands for a live item held elsewhere, never collected)."""
    return (
        isinstance(stored, Stamped)
        and stored.version.meta.deleted
        and not stored.version.meta.withheld
    )


def plan_move(state: KeyState, *, table: str, region: str, settings: Settings) -> Plan:
    """What moving the key's tombstone item to the store takes (the module docstring).
    ``table`` is the georep table's configured name (it keys the store's items); ``region``
    the region both places are in."""
    match state.table:
        case Absent():
            return Leave("absent")
        case Raw():
            return Leave("raw")
        case Stamped(version=tomb) if tomb.meta.withheld:
            # NOTE: the store's TTL would collect a marker, which must never be collected;
            # markers stay in the table until the store keeps them (docs/design.md, open 3).
            return Leave("marker")
        case Stamped(version=tomb) if not tomb.meta.deleted:
            return Leave("live")
        case Stamped(version=tomb):
            pass
    kept = state.tombstone
    keep, already = tomb, False
    if kept is not None:
        assert state.store_attr is not None
        # The same rule a replicated version meets: the store's tombstone is the current
        # version, the table's arrives (one copy of the rule: `decide`).
        current = Stamped(version=kept, meta_attr=state.store_attr)
        decision = decide_for(current, tomb, destination=region, settings=settings)
        match decision:
            case Skip():
                keep, already = kept, True
            case Write(version=written):
                keep = written
            case _:
                raise AssertionError(f"a tombstone met a tombstone and decided {decision}")
    steps = commit_for(state, keep, local=False, table=table, settings=settings)
    table_step, store_step = steps
    assert table_step is not None and store_step is not None  # "item / any -> tombstone"
    return Move(version=keep, table=table_step, store=store_step, already=already)


__all__ = ["Leave", "Move", "Plan", "is_tombstone_item", "plan_move"]
