"""Field-level rules: merge each attribute on its own, with helpers that are lawful by design.

Each version carries per-attribute provenance (``Meta.fields``: name -> (HLC, region) of the
write that last set or removed it). :func:`field_rules` merges two concurrent versions
attribute by attribute, each attribute with its own helper, and keeps the result's stamps so
the next merge sees them. Every helper is a join on a semilattice of ``(value, stamp)`` pairs:
commutative, associative and idempotent, so any combination of them obeys the laws in
``resolvers/_protocol.py``.

>>> rules = field_rules(tags=union(), score=maximum(), likes=pn_counter())
>>> rules.field_stamps
True

A deleted carrier (the LWW maximum) makes the merged version a tombstone, but the tombstone
keeps the merged attribute values. # NOTE: dropping them would break associativity: a later
live version merged with the tombstone must see what the tombstone absorbed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Protocol

from resolvers._protocol import Resolution
from service.core.values import AttributeValue, canonical
from service.core.version import FieldStamp, Version
from service.errors import RuleError

FieldValue = tuple[AttributeValue | None, FieldStamp | None]
"""One side of one attribute: its wire value (None: absent) and its stamp (None: never set)."""


class FieldMerge(Protocol):
    """Merges one attribute of two concurrent versions. Commutative, associative, idempotent."""

    def merge(self, x: FieldValue, y: FieldValue) -> FieldValue: ...


def _json(value: AttributeValue | None) -> str:
    return "" if value is None else json.dumps(canonical(value), sort_keys=True)


def _max_stamp(x: FieldValue, y: FieldValue) -> FieldStamp | None:
    stamps = [s for _, s in (x, y) if s is not None]
    return max(stamps) if stamps else None


def _number(value: AttributeValue, helper: str) -> tuple[Decimal, str]:
    if set(value) != {"N"}:
        raise RuleError(f"{helper}() needs a number (N) attribute, got {value!r}")
    return (Decimal(value["N"]), value["N"])


# -- helpers -------------------------------------------------------------------------------


@dataclass(frozen=True)
class LWW:
    """Per-attribute last-writer-wins: the larger (stamp, canonical value) wins.

    An absent value with the larger stamp is a removal, and the attribute stays removed.
    """

    def key(self, x: FieldValue) -> tuple[bool, FieldStamp, str]:
        value, stamp = x
        return (stamp is not None, stamp or (0, ""), _json(value))

    def merge(self, x: FieldValue, y: FieldValue) -> FieldValue:
        return max(x, y, key=self.key)


@dataclass(frozen=True)
class PreferRegion:
    """The side last set by ``region`` wins; otherwise (both or neither) per-attribute LWW."""

    region: str

    def merge(self, x: FieldValue, y: FieldValue) -> FieldValue:
        def key(v: FieldValue) -> tuple[bool, tuple[bool, FieldStamp, str]]:
            stamp = v[1]
            return (stamp is not None and stamp[1] == self.region, LWW().key(v))

        return max(x, y, key=key)


@dataclass(frozen=True)
class Extreme:
    """Numeric maximum (or minimum) of the present values; absent is the identity."""

    largest: bool

    def merge(self, x: FieldValue, y: FieldValue) -> FieldValue:
        helper = "maximum" if self.largest else "minimum"
        values = [v for v, _ in (x, y) if v is not None]
        if not values:
            return (None, _max_stamp(x, y))
        # NOTE: the raw text breaks ties between equal numbers ("1" vs "1.0") deterministically.
        pick = max if self.largest else min
        best = pick(values, key=lambda v: _number(v, helper))
        return (best, _max_stamp(x, y))


_SETS = ("SS", "NS", "BS")


def _set_key(kind: str, element: Any) -> str:
    return json.dumps(canonical({kind[0]: element}))


@dataclass(frozen=True)
class Union:
    """Set union (SS, NS or BS); absent is the identity. The result is sorted and de-duplicated."""

    def merge(self, x: FieldValue, y: FieldValue) -> FieldValue:
        values = [v for v, _ in (x, y) if v is not None]
        if not values:
            return (None, _max_stamp(x, y))
        kinds = set()
        for v in values:
            if len(v) != 1 or next(iter(v)) not in _SETS:
                raise RuleError(f"union() needs a set attribute (SS, NS or BS), got {v!r}")
            kinds.add(next(iter(v)))
        if len(kinds) != 1:
            raise RuleError(f"union() cannot merge different set types {sorted(kinds)}")
        (kind,) = kinds
        chosen: dict[str, Any] = {}
        for v in values:
            for element in v[kind]:
                k = _set_key(kind, element)
                # NOTE: equal elements spelled differently ("1" vs "1.0"): keep the least spelling.
                if k not in chosen or repr(element) < repr(chosen[k]):
                    chosen[k] = element
        return ({kind: [chosen[k] for k in sorted(chosen)]}, _max_stamp(x, y))


def _pn_entries(value: AttributeValue) -> dict[str, dict[str, tuple[Decimal, str]]]:
    if set(value) != {"M"} or not isinstance(value["M"], Mapping):
        raise RuleError(f"pn_counter() needs a map {{region: {{p, n}}}}, got {value!r}")
    out: dict[str, dict[str, tuple[Decimal, str]]] = {}
    for region, entry in value["M"].items():
        if set(entry) != {"M"} or not set(entry["M"]) <= {"p", "n"}:
            raise RuleError(f"pn_counter() entry for {region!r} must be a map of p and n")
        out[region] = {part: _number(n, "pn_counter") for part, n in entry["M"].items()}
    return out


@dataclass(frozen=True)
class PNCounter:
    """A PN-counter: ``{region: {"p": N, "n": N}}``, merged by pointwise maximum."""

    def merge(self, x: FieldValue, y: FieldValue) -> FieldValue:
        values = [v for v, _ in (x, y) if v is not None]
        if not values:
            return (None, _max_stamp(x, y))
        merged: dict[str, dict[str, tuple[Decimal, str]]] = {}
        for v in values:
            for region, parts in _pn_entries(v).items():
                slot = merged.setdefault(region, {})
                for part, number in parts.items():
                    slot[part] = max(slot.get(part, number), number)
        zero = (Decimal(0), "0")
        doc = {
            region: {"M": {part: {"N": parts.get(part, zero)[1]} for part in ("p", "n")}}
            for region, parts in sorted(merged.items())
        }
        return ({"M": doc}, _max_stamp(x, y))


def lww() -> FieldMerge:
    """Per-attribute last-writer-wins (the default)."""
    return LWW()


def maximum() -> FieldMerge:
    """The numeric maximum of the concurrent values."""
    return Extreme(largest=True)


def minimum() -> FieldMerge:
    """The numeric minimum of the concurrent values."""
    return Extreme(largest=False)


def union() -> FieldMerge:
    """The union of the concurrent sets (elements are never removed by a concurrent write)."""
    return Union()


def pn_counter() -> FieldMerge:
    """A counter that adds concurrent increments; update it with :func:`pn_add`."""
    return PNCounter()


def prefer_region(region: str) -> FieldMerge:
    """The value last set by ``region`` wins over concurrent values from other regions."""
    return PreferRegion(region)


def pn_value(counter: Mapping[str, Mapping[str, Any]] | None) -> int:
    """The value of a PN-counter read as Python values (``{region: {"p": n, "n": n}}``).

    >>> pn_value({"eu": {"p": 3, "n": 1}, "us": {"p": 2, "n": 0}})
    4
    """
    if not counter:
        return 0
    return int(sum(Decimal(e.get("p", 0)) - Decimal(e.get("n", 0)) for e in counter.values()))


def pn_add(
    counter: Mapping[str, Mapping[str, Any]] | None, region: str, delta: int
) -> dict[str, dict[str, Decimal]]:
    """A new PN-counter with ``delta`` added by ``region`` (each region counts only its own).

    >>> pn_value(pn_add(pn_add(None, "eu", 2), "eu", -1))
    1
    """
    out = {
        r: {"p": Decimal(e.get("p", 0)), "n": Decimal(e.get("n", 0))}
        for r, e in (counter or {}).items()
    }
    entry = out.setdefault(region, {"p": Decimal(0), "n": Decimal(0)})
    entry["p" if delta >= 0 else "n"] += abs(delta)
    return out


# -- the resolver --------------------------------------------------------------------------


def _stamp_of(version: Version, name: str) -> FieldStamp | None:
    stamps = version.meta.field_map()
    if name in stamps:
        return stamps[name]
    if name in version.data:
        # NOTE: versions written without field stamps: the whole write set the attribute.
        return (version.meta.hlc, version.meta.origin)
    return None


@dataclass(frozen=True)
class FieldRules:
    """Merges concurrent versions attribute by attribute; see the module docstring."""

    default: FieldMerge = field(default_factory=lww)
    attributes: tuple[tuple[str, FieldMerge], ...] = ()
    name: str = "rules"
    field_stamps: bool = True
    keeps_deleted_data: bool = True

    def helper(self, attribute: str) -> FieldMerge:
        return dict(self.attributes).get(attribute, self.default)

    def resolve(self, a: Version, b: Version) -> Resolution:
        carrier = max(a, b, key=lambda v: v.meta.lww_key).meta
        explicit = set(a.meta.field_map()) | set(b.meta.field_map())
        data: dict[str, AttributeValue] = {}
        stamps: dict[str, FieldStamp] = {}
        for name in sorted(set(a.data) | set(b.data) | explicit):
            va, vb = a.data.get(name), b.data.get(name)
            if name not in explicit and va is not None and vb is not None and va == vb:
                # Key attributes (never stamped): identical on both sides.
                data[name] = va
                continue
            value, stamp = self.helper(name).merge(
                (va, _stamp_of(a, name)), (vb, _stamp_of(b, name))
            )
            if value is not None:
                data[name] = value
            if stamp is not None:
                stamps[name] = stamp
        return Resolution(
            data=data,
            deleted=carrier.deleted,
            carrier=carrier,
            fields=tuple(sorted(stamps.items())),
        )


def field_rules(default: FieldMerge | None = None, **per_attribute: FieldMerge) -> FieldRules:
    """A field-level resolver: ``per_attribute`` helpers, ``default`` (LWW) for the rest.

    >>> field_rules(score=maximum()).helper("score") == maximum()
    True
    """
    return FieldRules(
        default=default if default is not None else lww(),
        attributes=tuple(sorted(per_attribute.items())),
    )
