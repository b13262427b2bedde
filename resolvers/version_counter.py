"""Version counters: the version with the higher counter wins; ties fall back to LWW.

The counter is a numeric attribute the application maintains (``attribute="version"``), or by
default the version's update count: the total of its version vector when it was written
(``_georep.n``), i.e. how many writes it has seen. A version without the attribute (a
tombstone, or an item written before the attribute existed) ranks by that update count.
The order is (counter, HLC, origin, write id): total, so the laws hold.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from resolvers._protocol import Resolution
from service.core.version import Version


@dataclass(frozen=True)
class VersionCounter:
    attribute: str | None = None
    name: str = "version-counter"
    field_stamps: bool = False
    keeps_deleted_data: bool = False

    def counter(self, version: Version) -> Decimal:
        if self.attribute is not None:
            value = version.data.get(self.attribute)
            if value is not None and "N" in value:
                return Decimal(value["N"])
        return Decimal(version.meta.count)

    def resolve(self, a: Version, b: Version) -> Resolution:
        winner = max(a, b, key=lambda v: (self.counter(v), v.meta.lww_key))
        return Resolution(data=winner.data, deleted=winner.meta.deleted, carrier=winner.meta)
