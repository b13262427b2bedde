"""Version counters: the version with the higher counter wins; ties fall back to LWW.

The counter is a numeric attribute the application maintains (``attribute="version"``), or by
default the version's update count: the total of its version vector when it was written
(``_georep.n``), i.e. how many writes it has seen. A version without the attribute (an item
written before the attribute existed) ranks by that update count.

With an application counter, a tombstone keeps the counter of the version it deletes
(`kept_when_deleted`; the core writes it into the tombstone's data) and ranks just above that
version: (counter, deleted, HLC, origin, write id). A merge converges only if no version ranks
below one it succeeds (a region that merged the predecessor with a concurrent version keeps
the predecessor's rank there, a region that received the successor first does not): an update
count is small beside an application's counter, so a tombstone ranked by it fell below the
version it deleted, and regions that settled the delete against a concurrent write in a
different order diverged for good (docs/design.md, "Version counters with an application
counter"). The application's part: every write counts above what it replaces, a deleted
version's counter included (a counter shared by writers, or a timestamp).

The order is total, so the laws hold.
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

    @property
    def kept_when_deleted(self) -> tuple[str, ...]:
        """The attributes a tombstone keeps of the data it deletes: the counter ranked by."""
        return (self.attribute,) if self.attribute is not None else ()

    def counter(self, version: Version) -> Decimal:
        if self.attribute is not None:
            value = version.data.get(self.attribute)
            if value is not None and "N" in value:
                return Decimal(value["N"])
        return Decimal(version.meta.count)

    def resolve(self, a: Version, b: Version) -> Resolution:
        winner = max(a, b, key=self.rank)
        return Resolution(data=winner.data, deleted=winner.meta.deleted, carrier=winner.meta)

    def rank(self, version: Version) -> tuple[Decimal, bool, tuple[int, str, str]]:
        """The total order ``resolve`` keeps the greater of (module docstring)."""
        deleted = self.attribute is not None and version.meta.deleted
        return (self.counter(version), deleted, version.meta.lww_key)
