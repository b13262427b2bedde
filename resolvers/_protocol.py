"""The one interface every resolver implements.

Delivery between regions is at-least-once and ordered only per item, so the same pair of
concurrent versions can meet in any order, any number of times, in any grouping. A resolver
therefore MUST obey these laws (``resolvers.check`` tests them with Hypothesis):

* deterministic:  ``resolve(a, b)`` depends on nothing but ``a`` and ``b`` (no clock, no
  randomness, no I/O), so every region computes the same bytes;
* commutative:    ``resolve(a, b) == resolve(b, a)``;
* associative:    ``resolve(resolve(a, b), c) == resolve(a, resolve(b, c))``;
* idempotent:     ``resolve(a, a) == a`` and ``resolve(resolve(a, b), b) == resolve(a, b)``.

Equality is on the merged version (data, deleted flag and carried identity). The core, not the
resolver, computes the merged version vector (the join) and flags; see service/core/apply.py.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from service.core.values import AttributeValue
from service.core.version import FieldStamp, Meta, Version


@dataclass(frozen=True, slots=True)
class Resolution:
    """What a resolver decided for two concurrent versions.

    ``carrier`` is the input whose identity (HLC, origin, write id, count) the merged version
    carries; it must be chosen by a total order so that merging stays associative.
    """

    data: Mapping[str, AttributeValue]
    deleted: bool
    carrier: Meta
    fields: tuple[tuple[str, FieldStamp], ...] | None = None


@runtime_checkable
class Resolver(Protocol):
    """Settles two concurrent versions of one item. See the module docstring for the laws."""

    @property
    def name(self) -> str:
        """Registry name, used in metrics and the conflict log."""
        ...

    @property
    def field_stamps(self) -> bool:
        """Whether versions must carry per-attribute provenance (``_georep.f``)."""
        ...

    @property
    def keeps_deleted_data(self) -> bool:
        """Whether a tombstone keeps the data it deletes, and a write over a tombstone is
        merged with it. Needed by resolvers that merge data (rather than pick one version):
        a state-based merge converges only if every causal successor includes what it
        replaced (docs/design.md, "Deletes under merge rules")."""
        ...

    def resolve(self, a: Version, b: Version) -> Resolution:
        """Merge two concurrent versions. Must obey the laws above."""
        ...
