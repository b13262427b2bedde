"""User rules for integration tests (loaded by dotted path from georep.toml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resolvers import TOMBSTONE, Side, Tombstone


def explode_on_conflict(a: Side, b: Side) -> Mapping[str, Any]:
    """A rule with a bug: it raises on every conflict."""
    raise ValueError(f"cannot merge {a.data.get('pk')} (bug in the user's rule)")


def explode_differently(a: Side, b: Side) -> Mapping[str, Any]:
    """A first attempt at fixing explode_on_conflict that is still broken."""
    raise ValueError("still broken after the first fix")


def newest(a: Side, b: Side) -> Mapping[str, Any] | Tombstone:
    """The fix: the last writer's data (a lawful rule)."""
    winner = max(a, b, key=lambda side: side.meta.lww_key)
    return TOMBSTONE if winner.deleted else winner.data
