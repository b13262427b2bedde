"""Residency rules as the core sees them, and the redacted attributes' register. Pure.

Split from service/core/residency.py so that new versions (service/core/stamp.py) can stamp
the register without importing the apply decision.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from service.core.stored import Settings, checked_digest
from service.core.values import AttributeValue, same_value
from service.core.version import Version


@dataclass(frozen=True)
class Filter:
    """Items whose ``attribute`` equals ``equals`` replicate only among ``regions``."""

    name: str
    attribute: str
    equals: AttributeValue
    regions: frozenset[str]

    def matches(self, data: Mapping[str, AttributeValue]) -> bool:
        value = data.get(self.attribute)
        return value is not None and same_value(value, self.equals)


@dataclass(frozen=True)
class Residency:
    """A table's filters (the first that matches an item decides) and redactions: the
    attributes redacted, and the regions that never receive them (every ``[[redactions]]``
    entry names the same regions: one register covers them all)."""

    filters: tuple[Filter, ...] = ()
    redacted: frozenset[str] = frozenset()
    non_holders: frozenset[str] = frozenset()

    def filter_for(self, data: Mapping[str, AttributeValue]) -> Filter | None:
        return next((f for f in self.filters if f.matches(data)), None)

    def holds(self, region: str) -> bool:
        """Whether ``region`` holds the redacted attributes (and their register)."""
        return bool(self.redacted) and region not in self.non_holders


def residency_of(settings: Settings) -> Residency | None:
    residency = settings.residency
    if residency is None or not (residency.filters or residency.redacted):
        return None
    return residency


# -- the redacted attributes' register -----------------------------------------------------


@dataclass(frozen=True)
class Register:
    """The redacted attributes as one last-writer-wins register: ``values`` set by the write
    ``(at, write_id)``. Ordered by (at, write id, digest of values): a total order, so the
    join is commutative, associative and idempotent."""

    at: int
    write_id: str
    values: Mapping[str, AttributeValue]

    @property
    def order(self) -> tuple[int, str, str]:
        return (self.at, self.write_id, checked_digest(self.values))


def _redacted_values(
    data: Mapping[str, AttributeValue], residency: Residency
) -> dict[str, AttributeValue]:
    return {k: v for k, v in data.items() if k in residency.redacted}


def register_of(version: Version, *, settings: Settings) -> Register | None:
    """The register a version carries (``None``: none, the join's identity).

    Its stamp ``r`` if the values still match it; a delete that carries none (made where the
    attributes are not held) empties them at its own clock; a version holding values without a
    stamp (written before the redaction was configured, or raw) counts at its own clock; a
    merge without a stamp, a withheld marker, or a version without values carries none."""
    residency = residency_of(settings)
    meta = version.meta
    if residency is None or not residency.redacted or meta.withheld:
        return None
    values = _redacted_values(version.data, residency)
    if meta.redacted is not None:
        at, write_id, stamped = meta.redacted
        if stamped == checked_digest(values):
            return Register(at, write_id, values)
    if meta.deleted and not meta.merged:
        return Register(meta.hlc, meta.write_id, {})
    if values:
        return Register(meta.hlc, meta.write_id, values)
    return None


def join_registers(*registers: Register | None) -> Register | None:
    present = [r for r in registers if r is not None]
    return max(present, key=lambda r: r.order) if present else None


def register_stamp(
    *,
    region: str,
    data: Mapping[str, AttributeValue],
    at: int,
    write_id: str,
    settings: Settings,
) -> tuple[int, str, str] | None:
    """The ``r`` a new version written in ``region`` carries: its own clock and write id over
    its redacted values, in a region that holds them; none elsewhere (a delete made there
    empties them through `register_of`)."""
    residency = residency_of(settings)
    if residency is None or not residency.holds(region):
        return None
    return (at, write_id, checked_digest(_redacted_values(data, residency)))


def register_floor(base_redacted: tuple[int, str, str] | None) -> int:
    """A new version's clock must be above its base's register, so that a write in a holding
    region, which read the register, sets one later than it under every resolver."""
    return base_redacted[0] + 1 if base_redacted is not None else 0
