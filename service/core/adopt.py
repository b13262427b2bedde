"""A record of a region's own stream, classified: a fresh local write to forward, a raw write
to adopt, a tombstone to restore, or nothing (an echo of replication, a no-op, garbage
collection). Pure: :func:`translate` is deterministic in the record, so a replayed record
adopts the same version.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from service.core import hlc as hlc_
from service.core.stamp import (
    WRITE_STEP,
    adoption_id,
    is_blind,
    join_meta,
    new_version,
    over_tombstone,
    sequence_bits,
)
from service.core.stored import (
    Absent,
    Raw,
    Settings,
    Stamped,
    Stored,
    read_item,
    stored_data,
    stored_meta,
    tombstone_expired,
)
from service.core.tombstones import Deletion
from service.core.values import AttributeValue, Item, same_item
from service.core.version import (
    META_ATTR,
    Meta,
    Order,
    Version,
    VersionVector,
    compare,
)
from service.errors import RecordError


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


def translate(
    change: Change,
    *,
    region: str,
    settings: Settings,
    deletion: Deletion | None = None,
    beside: Stamped | None = None,
) -> Outcome:
    """Decide what a record of ``region``'s own stream means for replication.

    Echo suppression: a version that replication wrote (another origin, a merge, an adoption)
    is never forwarded; only a fresh version whose origin is this region is. Raw writes are
    adopted from the record itself, deterministically, so replaying the record adopts the
    same version.

    A record whose images do not hold the key it names is refused (RecordError): its version
    would be written under another key, or under none.

    With the tombstone store (`Settings.tombstone_store`), georep's own deletes remove the
    item from the table too, and ``deletion`` is what the store recorded for a REMOVE's old
    image (`explain_remove`, read by the caller): this region's own delete is forwarded, a
    replicated one is an echo; none found, the application deleted the item itself.
    ``beside``: for an INSERT of a stamped image, the store's tombstone if the table still
    holds that image beside it. georep never leaves a live item beside a tombstone it does
    not succeed (`service.core.places`), so the application wrote it there (a restore from a
    backup, a copy of another region's item) after the delete: it is adopted over the
    tombstone, as it was when the tombstone was the item it replaced.
    """
    _check_keys(change, settings=settings)
    if change.event == "REMOVE":
        old = read_item(change.old, settings=settings)
        if isinstance(old, Absent):
            raise RecordError(
                "REMOVE record without an old image (stream must be NEW_AND_OLD_IMAGES)"
            )
        if deletion is not None and not change.ttl_delete:
            # First: a tombstone item written before the store and moved into it since (the
            # migration, or a version applied over it) is georep's own deletion, not a
            # tombstone deleted by hand (service/core/migration.py).
            if deletion.local:
                return Forward(deletion.tombstone)
            if not (isinstance(old, Stamped) and old.version.meta.deleted):
                # The deletion recorded may be this record's own adoption, applied in its
                # home region on an earlier attempt: an application's delete of the same
                # image that georep later deleted again leaves one entry for both REMOVEs
                # (entries are keyed by the image). Replayed, it is adopted again, the same
                # version, so regions that missed it still receive it.
                adopted = _adopt(change, old=old, new=Absent(), region=region, settings=settings)
                recorded = deletion.tombstone.meta
                if (adopted.meta.actor, adopted.meta.write_id, adopted.meta.vv) == (
                    recorded.actor,
                    recorded.write_id,
                    recorded.vv,
                ):
                    return Adopt(adopted)
            return Drop("echo")
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
    if (
        beside is not None
        and change.old is None
        and isinstance(new, Stamped)
        and compare(new.version.meta, beside.version.meta) is not Order.AFTER
    ):
        return Adopt(_adopt(change, old=beside, new=new, region=region, settings=settings))
    if isinstance(new, Stamped) and _written_by_georep(new.version.meta, change, settings):
        meta = new.version.meta
        if meta.origin != region or meta.merged or meta.adopted:
            return Drop("echo")
        return Forward(new.version)
    old = read_item(change.old, settings=settings)
    return Adopt(_adopt(change, old=old, new=new, region=region, settings=settings))


def _check_keys(change: Change, *, settings: Settings) -> None:
    """The record's ``Keys`` are exactly the table's key attributes, and every image it has
    carries them unchanged."""
    if set(change.keys) != set(settings.key_attributes):
        raise RecordError(
            f"record Keys name {sorted(change.keys)}, the table's key is "
            f"{list(settings.key_attributes)}"
        )
    for name, image in (("NewImage", change.new), ("OldImage", change.old)):
        if image is None:
            continue
        if type(image) is not dict:
            raise RecordError(f"record field dynamodb.{name} is not a DynamoDB item")
        for attribute, value in change.keys.items():
            if image.get(attribute) != value:
                raise RecordError(
                    f"dynamodb.{name} does not hold the record's key {attribute}={value!r}"
                )


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
    keeps = settings.resolver.keeps_deleted_data
    if isinstance(new, Absent):  # a delete
        old_data = stored_data(old)
        data, deleted = settings.deleted_data(old_data), True
    else:
        data, deleted = stored_data(new), False
    # NOTE: under last-writer-wins and version counters an adoption continues its region's
    # adoption actor over what its raw write replaced in the table (a stamped old image: the
    # region's history of the item is in it), so an item written raw again and again keeps
    # one entry per region; over a raw item or nothing it starts a fresh adoption actor, as a
    # stamped write would (docs/design.md, "Raw-write adoption"). Under merge rules every
    # adoption starts a fresh actor and claims only its base: the adoption actor would make a
    # raw write succeed earlier raw writes whose clock and field stamps can be ahead of its own
    # (a raw write's old image may carry no metadata, and an adoption is timed by its record),
    # and under merge rules a successor must be an inflation of what it succeeds, stamps
    # included (the field-rules machine found it). Over a raw item a later raw write succeeds
    # an earlier one through the annotation its adoption gets (`decide`, `beside_raw`), whose
    # record is adopted with the earlier one in its base.
    visible = isinstance(old, Stamped) and not keeps
    base = join_meta(stored_meta(old), stored_meta(new))
    # NOTE: stream times are whole seconds (on AWS and moto); the record's sequence
    # number in the logical bits keeps two adoptions of one second from sharing a counter
    # when they succeed the same base (test_two_adoptions_from_one_base_in_one_second_...).
    # A blind adoption takes logical 0 and its base's clock, not one above: its rank among
    # the region's blind ones is then its write id's, which follows the whole sequence number,
    # not 16 wrapping bits of it (`is_blind`).
    blind = is_blind(
        base, visible=visible, region=region, sequence=change.sequence, settings=settings
    )
    floor = hlc_.pack(change.approx_ms, 0 if blind else sequence_bits(change.sequence))
    at_hlc = max(floor, (base.hlc + (0 if blind else WRITE_STEP)) if base else 0)
    if not deleted and keeps and isinstance(old, Stamped) and old.version.meta.deleted:
        data = over_tombstone(old.version, data, region=region, settings=settings)
    return new_version(
        base=base,
        visible=visible,
        base_data=stored_data(old),
        data=data,
        deleted=deleted,
        region=region,
        at_hlc=at_hlc,
        write_id=adoption_id(region=region, sequence=change.sequence, at_hlc=at_hlc),
        adopted=True,
        settings=settings,
        sequence=None if keeps else change.sequence,
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
    overwrote is merged in (`over_tombstone`). Otherwise every attribute counts as written now.

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
        data = over_tombstone(base, data, region=region, settings=settings)
    return new_version(
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
