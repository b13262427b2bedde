"""The apply decision: what a region's table must become, as pure functions.

Three entry points, all pure (time and ids are arguments):

* :func:`stamp` — a local application write through georep becomes a new version of this
  region (the SDK path);
* :func:`translate` — a record from this region's own stream becomes: a version to forward
  (a fresh local write), a version to adopt (a raw write that bypassed stamping), or nothing
  (an echo of replication, a no-op, garbage collection);
* :func:`decide` — an incoming version meets the destination's current item: skip it, write
  it, or write the merge of both, always under a precondition that makes the write safe
  against a concurrent local write.

docs/design.md argues why these converge.
"""

from __future__ import annotations

import functools
import hashlib
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Literal

import ulid

from service.core import hlc as hlc_
from service.core.values import AttributeValue, Item, digest, same_item, same_value
from service.core.version import (
    META_ATTR,
    FieldStamp,
    Meta,
    Order,
    Version,
    VersionVector,
    actor_region,
    adoption_actor,
    compare,
    data_of,
    decode_meta,
    expiry_ms,
    fresh_actor,
    is_adoption_actor,
)
from service.errors import RecordError, RuleError

if TYPE_CHECKING:  # resolvers import the core's types; the core only needs the Protocol
    from resolvers._protocol import Resolver

# -- configuration the core needs ----------------------------------------------------------


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

    @functools.cached_property
    def region_set(self) -> frozenset[str]:
        return frozenset(self.regions)

    def keys_of(self, data: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
        missing = [k for k in self.key_attributes if k not in data]
        if missing:
            raise RecordError(f"item is missing key attribute(s) {missing}")
        return {k: data[k] for k in self.key_attributes}


# -- what is stored ------------------------------------------------------------------------


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
    return meta.deleted and expiry_ms(meta, horizon_ms=settings.horizon_ms) <= hlc_.wall_ms(at_hlc)


# -- building new versions -----------------------------------------------------------------


def _field_stamps(
    *,
    base_data: Mapping[str, AttributeValue],
    base: Meta | None,
    data: Mapping[str, AttributeValue],
    stamp: FieldStamp,
    settings: Settings,
) -> tuple[tuple[str, FieldStamp], ...]:
    """Per-attribute provenance: changed or removed attributes get the new write's stamp."""
    previous = base.field_map() if base is not None else {}
    names = (set(data) | set(base_data) | set(previous)) - set(settings.key_attributes)
    out: dict[str, FieldStamp] = {}
    for name in names:
        before, after = base_data.get(name), data.get(name)
        unchanged = (before is None and after is None) or (
            before is not None and after is not None and same_value(before, after)
        )
        if not unchanged:
            out[name] = stamp
        elif name in previous:
            out[name] = previous[name]
        elif base is not None and after is not None:
            out[name] = (base.hlc, base.origin)
    return tuple(sorted(out.items()))


def _new_version(
    *,
    base: Meta | None,
    visible: bool,
    base_data: Mapping[str, AttributeValue],
    data: Mapping[str, AttributeValue],
    deleted: bool,
    region: str,
    at_hlc: int,
    write_id: str,
    adopted: bool,
    settings: Settings,
    sequence: str | None = None,
) -> Version:
    """A new version by ``region`` on top of ``base``.

    ``sequence`` set: a raw write adopted from the record at that sequence number; the
    region's adoption actor takes the sequence number as its counter (`_adoption_counter`).

    Otherwise a stamped write. ``visible``: ``base`` is what this region's table held, so the
    region's history of the item is in it and the region's actor continues (counter
    ``max(previous + 1, at_hlc)``: the HLC floor keeps counters unique even if a stale
    version was restored over a forgotten one). Otherwise the write starts a fresh actor,
    which claims no dot it never saw (docs/design.md, "History that was lost").
    """
    vv = base.vv if base is not None else VersionVector()
    if sequence is not None:
        actor = adoption_actor(region)
        counter = _adoption_counter(vv.get(actor), sequence=sequence, at_hlc=at_hlc)
    else:
        continued = _actor_for(base, region=region) if visible else None
        actor = continued or fresh_actor(region, write_id, taken=(a for a, _ in vv.entries))
        # Above the previous counter and at least the clock: unique even if a stale version
        # was restored over a forgotten one.
        counter = max(vv.get(actor) + 1, at_hlc)
    vv = vv.bump(actor, counter)
    hlc = max(at_hlc, base.hlc + 1) if base is not None else at_hlc
    fields = None
    if settings.resolver.field_stamps:
        fields = _field_stamps(
            base_data=base_data, base=base, data=data, stamp=(hlc, region), settings=settings
        )
    meta = Meta(
        vv=vv,
        actor=actor,
        write_id=write_id,
        hlc=hlc,
        digest=checked_digest(data),
        count=base.count + 1 if base is not None else 1,
        deleted=deleted,
        adopted=adopted,
        fields=fields,
    )
    return Version(data=dict(data), meta=meta)


def _adoption_counter(previous: int, *, sequence: str, at_hlc: int) -> int:
    """The adoption actor's counter for the record at ``sequence``: the sequence number itself.

    Sequence numbers increase within a shard, and an item's records stay in one shard lineage,
    so a raw write's counter exceeds that of every raw write it physically replaced, and a
    replay computes the same one. ``previous + 1`` keeps it above the base's should a stream
    ever number below it (a re-enabled stream, a restored table); a non-numeric sequence (no
    DynamoDB stream has one) falls back to the clock.
    """
    number = int(sequence) if sequence.isdigit() else at_hlc
    return max(previous + 1, number)


def _actor_for(base: Meta | None, *, region: str) -> str | None:
    """The actor this region's stamped writes continue: the base's writer if it is ours,
    else our actor with the highest counter in the base, else none (start a fresh one).
    Never the adoption actor: only adoptions bump it."""
    if base is None:
        return None
    if actor_region(base.actor) == region and not is_adoption_actor(base.actor):
        return base.actor
    ours = [
        (c, a) for a, c in base.vv.entries if actor_region(a) == region and not is_adoption_actor(a)
    ]
    return max(ours)[1] if ours else None


def stamp(
    current: Stored,
    data: Mapping[str, AttributeValue] | None,
    *,
    region: str,
    now_hlc: int,
    write_id: str,
    settings: Settings,
) -> Version | None:
    """A local write (``data``, or ``None`` to delete) as a new version of ``region``.

    ``current`` is what the writer read; the caller writes the result under the precondition
    :func:`precondition_for` (current). Returns ``None`` for a delete of nothing.
    A write over a tombstone succeeds it even past its horizon, so a late replay of the
    tombstone stays stale.
    """
    base: Meta | None = None
    base_data: Mapping[str, AttributeValue] = {}
    visible = False
    match current:
        case Stamped(version=v):
            base, base_data, visible = v.meta, v.data, True
        case Raw(data=raw, copied=copied):
            base, base_data = copied, raw
    keeps = settings.resolver.keeps_deleted_data
    if data is None:
        live_base = isinstance(current, Raw) or (base is not None and not base.deleted)
        if not live_base:
            return None
        old = current.data if isinstance(current, Raw) else base_data
        data, deleted = (dict(old) if keeps else settings.keys_of(old)), True
    else:
        deleted = False
        settings.keys_of(data)
    if keeps and not deleted and base is not None and base.deleted:
        data = _over_tombstone(
            Version(data=base_data, meta=base), data, region=region, settings=settings
        )
    return _new_version(
        base=base,
        visible=visible,
        base_data=base_data,
        data=data,
        deleted=deleted,
        region=region,
        at_hlc=now_hlc,
        write_id=write_id,
        adopted=False,
        settings=settings,
    )


def _succeeding(
    adopted: Version,
    replaced: Version | None,
    *,
    settings: Settings,
) -> Version:
    """What replaced an adopted raw write in its own region before the adoption reached its
    table, as a version succeeding both: ``replaced`` (a stamped write made over the raw
    item, which could not see the adoption), or, if ``None``, the deletion that left the
    item absent (a tombstone). Computed from its inputs alone (replays agree), with a fresh
    actor (its dot is no other write's) and origin the adoption's region, so that region's
    consumer forwards it when it reads its record. A deletion's own record is adopted later
    and merges with it (both are tombstones)."""
    meta = adopted.meta
    base = _join(replaced.meta, meta) if replaced is not None else meta
    assert base is not None
    # NOTE: the adoption's actor names its region: adoption write ids follow sequence numbers
    # alone, so two regions' adoptions can share one (test_two_regions_successors_...).
    after = replaced.meta.write_id if replaced is not None else "deleted"
    seed = f"{meta.actor}/{meta.write_id}/{after}"
    randomness = hashlib.blake2b(seed.encode(), digest_size=10).digest()
    ms = hlc_.wall_ms(base.hlc) % (1 << 48)
    data = replaced.data if replaced is not None else settings.keys_of(adopted.data)
    return _new_version(
        base=base,
        visible=False,
        base_data=replaced.data if replaced is not None else adopted.data,
        data=data,
        deleted=replaced.meta.deleted if replaced is not None else True,
        region=actor_region(meta.actor),
        at_hlc=base.hlc + 1,
        write_id=str(ulid.from_bytes(ms.to_bytes(6, "big") + randomness)),
        adopted=False,
        settings=settings,
    )


def _stamped_here(mine: Meta, adoption: Meta) -> bool:
    """Whether ``mine``, concurrent with an adoption of its own region, is a stamped write
    of that region (neither a merge nor an adoption), so made over the adopted raw write."""
    return (
        mine.origin == adoption.origin
        and not mine.merged
        and not mine.adopted
        and compare(mine, adoption) is Order.CONCURRENT
    )


def adoption_id(*, region: str, sequence: str, at_hlc: int) -> str:
    """A write id for an adopted raw write that every replay of the record reproduces.

    The random part follows the record's sequence number where it is numeric, so two raw
    writes adopted within one millisecond still order as they happened in the stream.
    """
    if sequence.isdigit():
        randomness = (int(sequence) % (1 << 80)).to_bytes(10, "big")
    else:
        randomness = hashlib.blake2b(f"{region}/{sequence}".encode(), digest_size=10).digest()
    ms = hlc_.wall_ms(at_hlc) % (1 << 48)
    return str(ulid.from_bytes(ms.to_bytes(6, "big") + randomness))


# -- stream records ------------------------------------------------------------------------


@dataclass(frozen=True)
class Change:
    """One stream record, as the core needs it (parsed at the edge, binary already decoded)."""

    event: Literal["INSERT", "MODIFY", "REMOVE"]
    keys: Mapping[str, AttributeValue]
    old: Mapping[str, AttributeValue] | None
    new: Mapping[str, AttributeValue] | None
    sequence: str
    approx_ms: int
    ttl_delete: bool = False


@dataclass(frozen=True)
class Forward:
    """A fresh local write: apply it to every other region."""

    version: Version


@dataclass(frozen=True)
class Adopt:
    """A raw local write adopted as a version: apply it here and in every other region."""

    version: Version


@dataclass(frozen=True)
class Restore:
    """A tombstone removed by hand before its horizon: write it back here, and only here.

    The other regions still hold it; removing it in one region alone would leave the replica
    set different until every region's TTL collected it.
    """

    version: Version


@dataclass(frozen=True)
class Drop:
    """Nothing to replicate; ``reason`` says why (echo, unchanged, collected...)."""

    reason: Literal["echo", "unchanged", "collected", "ttl-ignored"]


Outcome = Forward | Adopt | Restore | Drop


def translate(change: Change, *, region: str, settings: Settings) -> Outcome:
    """Decide what a record of ``region``'s own stream means for replication.

    Echo suppression: a version that replication wrote (another origin, a merge, an adoption)
    is never forwarded; only a fresh version whose origin is this region is. Raw writes are
    adopted from the record itself, deterministically, so replaying the record adopts the
    same version.
    """
    if change.event == "REMOVE":
        old = read_item(change.old, settings=settings)
        if isinstance(old, Absent):
            raise RecordError(
                "REMOVE record without an old image (stream must be NEW_AND_OLD_IMAGES)"
            )
        if isinstance(old, Stamped) and old.version.meta.deleted:
            # A tombstone collected by TTL is garbage collection (every region's copy carries
            # the same expiry). One deleted by hand is put back until its horizon.
            return Drop("collected") if change.ttl_delete else Restore(old.version)
        if change.ttl_delete and settings.ttl_live_policy == "ignore":
            return Drop("ttl-ignored")
        return Adopt(_adopt(change, old=old, new=Absent(), region=region, settings=settings))
    new = read_item(change.new, settings=settings)
    if isinstance(new, Absent):
        raise RecordError(f"{change.event} record without a new image")
    if change.old is not None and same_item(change.old, change.new or {}):
        return Drop("unchanged")
    if isinstance(new, Stamped) and _written_by_georep(new.version.meta, change, settings):
        meta = new.version.meta
        if meta.origin != region or meta.merged or meta.adopted:
            return Drop("echo")
        return Forward(new.version)
    old = read_item(change.old, settings=settings)
    return Adopt(_adopt(change, old=old, new=new, region=region, settings=settings))


def _written_by_georep(meta: Meta, change: Change, settings: Settings) -> bool:
    """Whether a stamped new image is what georep itself writes over the old image: a stamped
    write or a replicated version succeeds it (or equals it), and replication over a raw item,
    or over a tombstone past its horizon, writes any version its metadata does not already
    contain. Anything else (a version
    restored from a backup, or copied from another region over a concurrent one) is a raw
    write of old metadata, adopted like any raw write, never dropped as an echo.

    NOTE: only the old image's metadata is read on the common path, not its digest: this is
    the hot path (every record of every region passes here).
    """
    old_vv = _peek_vv(change.old)
    if old_vv is None:
        return True
    order = meta.vv.compare(old_vv)
    if order in (Order.AFTER, Order.EQUAL):
        return True
    if order is Order.BEFORE:
        return False
    # Concurrent: replication writes it over a raw item, or over a tombstone past its horizon
    # relative to it (which counts as absence, see `decide`).
    old = read_item(change.old, settings=settings)
    return isinstance(old, Raw) or (
        isinstance(old, Stamped)
        and tombstone_expired(old.version.meta, at_hlc=meta.hlc, settings=settings)
    )


def _peek_vv(image: Item | None) -> VersionVector | None:
    """The version vector of an image's metadata, unvalidated (None if there is none).

    Only used to spot a restored older version; the image is fully validated before anything
    is built from it.
    """
    try:
        raw = image[META_ATTR]["M"]["v"]["M"]  # type: ignore[index]
        return VersionVector.of({a: int(c["N"]) for a, c in raw.items()})
    except (KeyError, TypeError, ValueError, AttributeError):
        return None


def _adopt(change: Change, *, old: Stored, new: Stored, region: str, settings: Settings) -> Version:
    """The version a raw write becomes, computed from its record alone (replays agree).

    The old image is what the raw write physically replaced in this region's table, so the
    adopted version succeeds it (as the write did in the table); metadata the write copied
    back joins in.
    """
    data: Mapping[str, AttributeValue]
    if isinstance(new, Absent):  # a delete
        old_data = _data_of(old)
        keeps = settings.resolver.keeps_deleted_data
        data, deleted = (dict(old_data) if keeps else settings.keys_of(old_data)), True
    else:
        data, deleted = _data_of(new), False
    # NOTE: under merge rules every adoption starts a fresh actor and claims only its base.
    # The adoption actor would make a raw write succeed earlier raw writes it never read
    # (one overwritten by replication before its adoption, a tombstone already gone from the
    # table), and a successor under merge rules must contain its predecessors' data
    # (docs/design.md, "Deletes under merge rules"); last-writer-wins needs no such thing.
    visible = False
    base = _join(_meta_of(old), _meta_of(new))
    # NOTE: stream times are whole seconds (on AWS and moto); the record's sequence
    # number in the logical bits keeps two adoptions of one second from sharing a counter
    # when they succeed the same base (test_two_adoptions_from_one_base_in_one_second_...).
    floor = hlc_.pack(change.approx_ms, _sequence_bits(change.sequence))
    at_hlc = max(floor, (base.hlc + 1) if base else 0)
    if (
        not deleted
        and settings.resolver.keeps_deleted_data
        and isinstance(old, Stamped)
        and old.version.meta.deleted
    ):
        data = _over_tombstone(old.version, data, region=region, settings=settings)
    return _new_version(
        base=base,
        visible=visible,
        base_data=_data_of(old),
        data=data,
        deleted=deleted,
        region=region,
        at_hlc=at_hlc,
        write_id=adoption_id(region=region, sequence=change.sequence, at_hlc=at_hlc),
        adopted=True,
        settings=settings,
        sequence=None if settings.resolver.keeps_deleted_data else change.sequence,
    )


def adopt_found(
    raw: Raw,
    *,
    base: Version | None,
    region: str,
    now_hlc: int,
    write_id: str,
    settings: Settings,
) -> Version:
    """A raw item found in ``region``'s table (by ``georep verify --repair``) adopted without
    its stream record, which may be lost (trimmed) or not read yet: a version that succeeds the
    metadata the item copied back, if any, timed ``now_hlc``, written by a fresh actor.

    ``base``: the version whose metadata the item copied, if some region still holds it: its
    data is the raw write's base for field stamps and, under merge rules, a tombstone it
    overwrote is merged in (`_over_tombstone`). Otherwise every attribute counts as written now.

    NOTE: never the adoption actor. Its counters are the stream's sequence numbers, known only
    to the region's consumer, and a counter claims every lower one of its actor as seen. A
    fresh actor claims nothing it did not see; should the record still be adopted later, that
    adoption is concurrent with this one and merges with it (docs/decisions.md, verify).
    """
    copied = raw.copied
    if base is not None and (copied is None or base.meta != copied):
        base = None
    data: Mapping[str, AttributeValue] = raw.data
    if base is not None and base.meta.deleted and settings.resolver.keeps_deleted_data:
        data = _over_tombstone(base, data, region=region, settings=settings)
    return _new_version(
        base=copied,
        visible=False,
        base_data=base.data if base is not None else {},
        data=data,
        deleted=False,
        region=region,
        at_hlc=now_hlc,
        write_id=write_id,
        adopted=True,
        settings=settings,
    )


def _sequence_bits(sequence: str) -> int:
    """16 bits that differ between records of one stream within any one second."""
    if sequence.isdigit():
        return int(sequence) & hlc_.LOGICAL_MASK
    digest_ = hashlib.blake2b(sequence.encode(), digest_size=2).digest()
    return int.from_bytes(digest_, "big")


def _over_tombstone(
    tombstone: Version,
    data: Mapping[str, AttributeValue],
    *,
    region: str,
    settings: Settings,
) -> dict[str, AttributeValue]:
    """Under merge rules, a write over a tombstone includes what the tombstone holds, so the
    successor is an inflation of its predecessor (docs/design.md, "Deletes under merge
    rules"). ``data`` is asked of the resolver as a version just after the tombstone."""
    base = tombstone.meta
    hlc = base.hlc + 1
    fields = None
    if settings.resolver.field_stamps:
        fields = _field_stamps(
            base_data=tombstone.data, base=base, data=data, stamp=(hlc, region), settings=settings
        )
    meta = Meta(
        vv=base.vv,
        actor=base.actor,
        write_id=base.write_id,
        hlc=hlc,
        digest=checked_digest(data),
        count=base.count + 1,
        fields=fields,
    )
    merged = settings.resolver.resolve(tombstone, Version(data=dict(data), meta=meta)).data
    return {**merged, **settings.keys_of(data)}


def _join(a: Meta | None, b: Meta | None) -> Meta | None:
    """A base that has seen both (vector join, latest clock, larger count); ``a`` supplies
    the rest."""
    if a is None or b is None:
        return a or b
    return Meta(
        vv=a.vv.join(b.vv),
        actor=a.actor,
        write_id=a.write_id,
        hlc=max(a.hlc, b.hlc),
        digest=a.digest,
        # NOTE: the larger count, so the successor's count exceeds both predecessors' (the
        # version-counter resolver relies on it; test_a_copy_of_a_version_with_more_updates_...)
        count=max(a.count, b.count),
        fields=a.fields,
    )


def _meta_of(stored: Stored) -> Meta | None:
    match stored:
        case Stamped(version=v):
            return v.meta
        case Raw(copied=copied):
            return copied
    return None


def _data_of(stored: Stored) -> Mapping[str, AttributeValue]:
    match stored:
        case Stamped(version=v):
            return v.data
        case Raw(data=data):
            return data
    return {}


# -- merging and deciding ------------------------------------------------------------------


def merge(a: Version, b: Version, *, settings: Settings) -> Version:
    """The resolved version of two concurrent versions: the resolver decides data and winner,
    the core joins the vectors. Deterministic, so every region writes the same bytes."""
    resolution = settings.resolver.resolve(a, b)
    keys = settings.keys_of(a.data)
    data = dict(resolution.data)
    for name, value in keys.items():
        if name in data and not same_value(data[name], value):
            raise RuleError(f"resolver {settings.resolver.name!r} changed key attribute {name!r}")
        data[name] = value
    carrier = resolution.carrier
    meta = Meta(
        vv=a.meta.vv.join(b.meta.vv),
        actor=carrier.actor,
        write_id=carrier.write_id,
        hlc=carrier.hlc,
        digest=digest(data),
        count=carrier.count,
        deleted=resolution.deleted,
        merged=True,
        fields=resolution.fields,
    )
    return Version(data=data, meta=meta)


@dataclass(frozen=True)
class ExpectAbsent:
    """Write only if there is no item under the key."""


@dataclass(frozen=True)
class ExpectMeta:
    """Write only if the item exists and its ``_georep`` attribute is exactly ``value``
    (``None``: the item exists and has no ``_georep``).

    NOTE: the data is not pinned. A raw read-modify-write that copies ``_georep`` back can
    still be overwritten by a replicated write before its adoption; it is then adopted from its
    own record and merged, and because adoptions take their region's adoption actor, no other
    write can take its dot (docs/design.md, "Raw-write adoption and its limits").
    """

    value: AttributeValue | None


Precondition = ExpectAbsent | ExpectMeta


def precondition_for(current: Stored) -> Precondition:
    """The condition under which a decision taken on ``current`` is still valid."""
    match current:
        case Absent():
            return ExpectAbsent()
        case Stamped(meta_attr=attr) | Raw(meta_attr=attr):
            return ExpectMeta(attr)
    raise AssertionError(current)


@dataclass(frozen=True)
class Skip:
    reason: Literal["duplicate", "stale", "absorbed"]


@dataclass(frozen=True)
class Write:
    """Write ``version`` if ``precondition`` still holds; else re-read and decide again.

    ``conflict`` holds the two concurrent inputs when the version is a merge (for the
    conflict log and metrics).
    """

    version: Version
    precondition: Precondition
    conflict: tuple[Version, Version] | None = None


@dataclass(frozen=True)
class Annotate:
    """Set only the item's ``_georep`` to ``meta`` (its data untouched) if ``precondition``
    still holds; else re-read and decide again.

    The item is a raw write that physically replaced the adopted raw write being applied in
    its own region: the annotation makes the adoption the raw item's copied context, so the
    annotation's own stream record is adopted as the raw write's successor (`decide`).
    """

    meta: Meta
    precondition: Precondition


Decision = Skip | Write | Annotate


def decide(
    current: Stored,
    incoming: Version,
    *,
    settings: Settings,
    here: Literal["adoption", "restore"] | None = None,
) -> Decision:
    """What the destination must do with ``incoming`` given its ``current`` item.

    ``here="restore"``: ``incoming`` is a tombstone removed by hand from this destination
    (`Restore`); a raw item written since is annotated with it, not rolled back to it, so
    the raw write is adopted as the tombstone's successor.

    ``here="adoption"``: ``incoming`` adopts a raw write of this destination's own stream.
    Whatever other than that raw write the item holds was written after it (records of one
    item come in order), so a raw write, a stamped write or a deletion that physically
    replaced it must end up succeeding it, not rolled back to it (review finding 1, general
    form): a raw item is annotated with the adoption as its copied context (`Annotate`); a
    stamped write made here over the raw item, or an item deleted since, gets a successor
    (`_succeeding`). Not under merge rules, where an adoption claims only what its write
    read (docs/design.md).
    """
    pre = precondition_for(current)
    keeps = settings.resolver.keeps_deleted_data
    succeed = here == "adoption" and not keeps
    match current:
        case Absent():
            if succeed and not incoming.meta.deleted:
                return Write(_succeeding(incoming, None, settings=settings), pre)
            return Write(incoming, pre)
        case Raw(data=data, copied=copied):
            # The raw write is adopted from its own record and will meet this version there;
            # here only a version its copied context already contains is stale.
            if copied is not None and compare(incoming.meta, copied) in (Order.EQUAL, Order.BEFORE):
                return Skip("stale")
            if (
                here is not None
                and not keeps
                and (incoming.meta.deleted or incoming.meta.digest != checked_digest(data))
            ):
                return Annotate(_join(incoming.meta, copied) or incoming.meta, pre)
            return Write(incoming, pre)
        case Stamped(version=mine):
            order = compare(incoming.meta, mine.meta)
            if order is Order.EQUAL:
                return Skip("duplicate")
            if order is Order.BEFORE:
                return Skip("stale")
            if order is Order.AFTER:
                return Write(incoming, pre)
            if succeed and _stamped_here(mine.meta, incoming.meta):
                return Write(_succeeding(incoming, mine, settings=settings), pre)
            # Concurrent. A tombstone past its horizon relative to the other version counts as
            # absence, whichever side it is on: some regions may have collected it already.
            if tombstone_expired(mine.meta, at_hlc=incoming.meta.hlc, settings=settings):
                return Write(incoming, pre)
            if tombstone_expired(incoming.meta, at_hlc=mine.meta.hlc, settings=settings):
                return Skip("stale")
            merged = merge(mine, incoming, settings=settings)
            if merged.meta == mine.meta and merged.data == mine.data:
                return Skip("absorbed")
            return Write(merged, pre, conflict=(mine, incoming))
    raise AssertionError(current)
