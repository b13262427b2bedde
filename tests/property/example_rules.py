"""Example user rules for the law and convergence tests: one lawful, two deliberately not."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

from resolvers import TOMBSTONE, Side, Tombstone, field_rules, maximum, pn_counter, union


def union_tags(a: Side, b: Side) -> Mapping[str, Any] | Tombstone:
    """Set union of ``tags``; other attributes from the last writer. (Whether the item is
    deleted follows the last writer; a tombstone's tags are those it deleted.)"""
    winner = max(a, b, key=lambda s: s.meta.lww_key)
    tags = set(a.data.get("tags", set())) | set(b.data.get("tags", set()))
    data = dict(winner.data)
    data.pop("tags", None)
    if tags:
        data["tags"] = tags
    return data


def local_wins(a: Side, b: Side) -> Mapping[str, Any] | Tombstone:
    """Unlawful: always keeps the first argument, so merge order decides (not commutative)."""
    return TOMBSTONE if a.deleted else a.data


def stamped_now(a: Side, b: Side) -> Mapping[str, Any] | Tombstone:
    """Unlawful: writes the wall clock into the item, so regions compute different bytes."""
    winner = max(a, b, key=lambda s: s.meta.lww_key)
    if winner.deleted:
        return TOMBSTONE
    return {**winner.data, "merged_at": time.time_ns()}


not_a_rule = 42

profile = field_rules(tags=union(), score=maximum(), likes=pn_counter())


# A georep.toml with three regions and the union rule above, for the chaos runs under a merge
# rule (tests/chaos/test_chaos_run.py, tools/chaos_teeth.py).
UNION_TAGS_CONFIG = """[table]
name = "chaos-merge"
partition_key = "pk"
resolver = "rules"
resolver_options = { rule = "tests.property.example_rules:union_tags" }

[[regions]]
name = "eu-west-1"

[[regions]]
name = "us-east-1"

[[regions]]
name = "ap-southeast-2"
"""
