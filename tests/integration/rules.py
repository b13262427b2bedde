"""User rules for integration tests (loaded by dotted path from georep.toml)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resolvers import Side


def explode_on_conflict(a: Side, b: Side) -> Mapping[str, Any]:
    """A rule with a bug: it raises on every conflict."""
    raise ValueError(f"cannot merge {a.data.get('pk')} (bug in the user's rule)")
