"""What a region's table holds under a key, as the core sees it, and the settings it needs.

An item is :class:`Absent`, :class:`Raw` (written without fresh metadata) or :class:`Stamped`
(its metadata describes exactly its data); :func:`read_item` classifies a stored item or a
stream image. Pure.
"""

from __future__ import annotations

import functools
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

from service.core import hlc as hlc_
from service.core.values import AttributeValue, Item, digest
from service.core.version import (
    META_ATTR,
    Meta,
    Version,
    data_of,
    decode_meta,
    expiry_ms,
)
from service.errors import RecordError

if TYPE_CHECKING:  # resolvers import the core's types; the core only needs the Protocol
    from resolvers._protocol import Resolver
    from service.core.residency_rules import Residency


@dataclass(frozen=True)
class Settings:
    """What the core needs to know about the replica set. Built from the service config."""

    regions: tuple[str, ...]
    key_attributes: tuple[str, ...]
    resolver: Resolver
    horizon_ms: int = 7 * 24 * 3600 * 1000
    # What a TTL deletion of a live (non-tombstone) item means: replicate it as a delete, or
    # keep it local to this region.
    ttl_live_policy: Literal["delete", "ignore"] = "delete"
    # Residency filters and redactions (service/core/residency.py); None: every region holds
    # every attribute of every item.
    residency: Residency | None = None
    # Whether deletes leave the user's table for the tombstone store (issue 22; being built:
    # replication, the SDK, backfill and verify honour it; status and the conflict log not yet).
    tombstone_store: bool = False

    @functools.cached_property
    def region_set(self) -> frozenset[str]:
        return frozenset(self.regions)

    def keys_of(self, data: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        missing = [k for k in self.key_attributes if k not in data]
        if missing:
            raise RecordError(f"item is missing key attribute(s) {missing}")
        return {k: data[k] for k in self.key_attributes}

    def deleted_data(self, data: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        """What a tombstone keeps of the ``data`` it deletes: all of it under merge rules
        (`keeps_deleted_data`), else its key and the attributes the resolver ranks it by
        (version counters' application counter: ``kept_when_deleted``, optional on a
        resolver), so that it never ranks below the version it deletes."""
        if self.resolver.keeps_deleted_data:
            return dict(data)
        kept = self.ranked_by_data
        return {**self.keys_of(data), **{a: data[a] for a in kept if a in data}}

    @functools.cached_property
    def ranked_by_data(self) -> tuple[str, ...]:
        """The attributes of its data a version ranks by under this resolver (none: it ranks
        by its metadata alone, as under last-writer-wins)."""
        return tuple(getattr(self.resolver, "kept_when_deleted", ()))


@dataclass(frozen=True)
class Absent:
    """No item under this key."""


@dataclass(frozen=True)
class Raw:
    """An item written without fresh metadata: no ``_georep``, or one whose digest does not
    match the data (a read-modify-write that copied old metadata back)."""

    data: Mapping[str, AttributeValue]
    copied: Meta | None
    meta_attr: AttributeValue | None


@dataclass(frozen=True)
class Stamped:
    """An item whose metadata describes exactly its data."""

    version: Version
    meta_attr: AttributeValue


Stored = Absent | Raw | Stamped


def read_item(item: Item | None, *, settings: Settings) -> Stored:
    """Classify a stored item (or stream image). Raises MetadataError for tampered metadata."""
    if item is None:
        return Absent()
    data = data_of(item)
    attr = item.get(META_ATTR)
    if attr is None:
        return Raw(data=data, copied=None, meta_attr=None)
    meta = decode_meta(attr, regions=settings.region_set)
    if meta.digest != checked_digest(data):
        return Raw(data=data, copied=meta, meta_attr=attr)
    return Stamped(version=Version(data=data, meta=meta), meta_attr=attr)


def checked_digest(data: Mapping[str, AttributeValue]) -> str:
    """The data digest; a malformed attribute value is a RecordError (dead-lettered)."""
    try:
        return digest(data)
    except (ValueError, TypeError, AttributeError, KeyError) as exc:
        raise RecordError(f"item has a malformed attribute value: {exc}") from exc


def tombstone_expired(meta: Meta, *, at_hlc: int, settings: Settings) -> bool:
    """A tombstone past its collection horizon counts as absence for a version written at
    ``at_hlc``: some regions may already have collected it (see docs/design.md)."""
    return (
        meta.deleted
        and not meta.withheld  # never collected: it stands for a live item (residency.py)
        and expiry_ms(meta, horizon_ms=settings.horizon_ms) <= hlc_.wall_ms(at_hlc)
    )


def stored_meta(stored: Stored) -> Meta | None:
    match stored:
        case Stamped(version=v):
            return v.meta
        case Raw(copied=copied):
            return copied
    return None


def stored_data(stored: Stored) -> Mapping[str, AttributeValue]:
    match stored:
        case Stamped(version=v):
            return v.data
        case Raw(data=data):
            return data
    return {}
