"""Last-writer-wins: the version with the greatest (HLC, origin region, write id) wins whole.

Write ids are unique, so the order is total and never ties; HLC timestamps respect causality,
so a write always orders after every version its writer had seen. A delete is a tombstone and
competes like any other version.
"""

from __future__ import annotations

from dataclasses import dataclass

from resolvers._protocol import Resolution
from service.core.version import Version


@dataclass(frozen=True)
class LastWriterWins:
    """Whole-item last-writer-wins (the rule DynamoDB Global Tables applies, made visible)."""

    name: str = "lww"
    field_stamps: bool = False
    keeps_deleted_data: bool = False

    def resolve(self, a: Version, b: Version) -> Resolution:
        winner = max(a, b, key=lambda v: v.meta.lww_key)
        return Resolution(data=winner.data, deleted=winner.meta.deleted, carrier=winner.meta)
