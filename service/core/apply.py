"""The apply decision: what a destination's table must become when a version arrives.

The core's three entry points, all pure (time and ids are arguments):

* :func:`service.core.stamp.stamp` — a local application write through georep becomes a new
  version of this region (the SDK path);
* :func:`service.core.adopt.translate` — a record from this region's own stream becomes: a
  version to forward (a fresh local write), a version to adopt (a raw write that bypassed
  stamping), or nothing (an echo of replication, a no-op, garbage collection);
* :func:`decide` (here) — an incoming version meets the destination's current item: skip it,
  write it, or write the merge of both, always under a precondition that makes the write safe
  against a concurrent local write.

What is stored and the settings live in service/core/stored.py. docs/design.md argues why
these converge.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from service.core.stamp import beside_raw, join_meta, succeeding, unmatched_digest
from service.core.stored import (
    Absent,
    Raw,
    Settings,
    Stamped,
    Stored,
    checked_digest,
    tombstone_expired,
)
from service.core.values import AttributeValue, digest, same_item, same_value
from service.core.version import (
    Meta,
    Order,
    Version,
    actor_region,
    blind_actor,
    compare,
    is_adoption_actor,
    is_over_raw_actor,
)
from service.errors import RuleError

# -- merging and deciding ------------------------------------------------------------------


def _stamped_here(mine: Meta, adoption: Meta) -> bool:
    """Whether ``mine``, concurrent with an adoption of its own region, is a stamped write
    of that region (neither a merge nor an adoption), so made over the adopted raw write."""
    return (
        mine.origin == adoption.origin
        and not mine.merged
        and not mine.adopted
        and compare(mine, adoption) is Order.CONCURRENT
    )


def _carried_by_an_earlier_adoption(mine: Meta, adoption: Meta) -> bool:
    """Whether ``mine``, which an adoption's own region holds, is carried by the adoption of an
    earlier record of that region's stream that the adoption does not hold: its actor is an
    adoption actor of that region, counting by sequence numbers, and its counter is below the
    adoption's own. That raw write was made in the table before this one, so this one
    physically replaced it (or what replaced it) although its record did not show it: a
    version of another region landed where the raw writes left a raw item or nothing, and the
    earlier adoption, finding it there, merged with it and carried the merge (docs/design.md,
    "Raw-write adoption")."""
    actor = mine.actor
    counter = mine.vv.get(actor)
    return (
        actor_region(actor) == adoption.origin
        and is_adoption_actor(actor)
        and adoption.vv.get(actor) < counter < adoption.vv.get(adoption.actor)
    )


def _claims_without(adoption: Meta, context: Meta) -> bool:
    """Whether ``adoption``'s own counter reaches one that ``context`` holds on the same actor,
    without ``adoption`` holding all of ``context``: a counter claims every lower one of its
    actor, and an adoption continues its actor over what its raw write replaced, which need
    not hold an earlier adoption annotated on the raw item since (docs/design.md). Its other
    entries come from its base, which holds their history; a fresh actor claims nothing, and
    the blind actor only versions that hold nothing else (`is_blind`)."""
    if adoption.actor == blind_actor(adoption.origin):
        return False
    held = context.vv.get(adoption.actor)
    return (
        0 < held <= adoption.vv.get(adoption.actor)
        and compare(adoption, context) is not Order.AFTER
    )


def _covers(mine: Version, adoption: Version) -> bool:
    """Under merge rules, whether ``mine``, which the adoption's own region holds, already is
    what the adoption would make of it: the same data and deletion, succeeding everything
    the adoption's base holds (its vector but its own dot). The annotation of a raw item is
    adopted from its record after the raw write's own adoption has written a successor of
    both (`decide`): the annotation's adoption then adds only a dot of its own, and applied
    it would be a copy of that data timed later, outranking writes other regions made over
    the successor (field-rules machine, deep run seed 3048069373)."""
    own = adoption.meta.actor
    return (
        same_item(mine.data, adoption.data)
        and mine.meta.deleted == adoption.meta.deleted
        and all(mine.meta.vv.get(a) >= c for a, c in adoption.meta.vv.entries if a != own)
    )


def _written_over_raw_since(mine: Meta, adoption: Meta) -> bool:
    """Under merge rules, whether ``mine``, which the adoption's own region holds, holds a
    dot of an over-raw actor of that region that the adoption does not know: a write made
    there over a raw item not adopted yet, which the raw write's record did not show, so made
    after it (docs/design.md, "Raw writes under merge rules"), merged since with other
    versions or not."""
    region = adoption.origin
    return any(
        actor_region(actor) == region
        and is_over_raw_actor(actor)
        and counter > adoption.vv.get(actor)
        for actor, counter in mine.vv.entries
    )


def _same_resolution(merged: Version, successor: Version) -> bool:
    """Whether a plain merge holds what a successor would: the same data, deletion and field
    stamps (a successor raises stamps, so under field rules it rarely is)."""
    return (
        same_item(merged.data, successor.data)
        and merged.meta.deleted == successor.meta.deleted
        and merged.meta.fields == successor.meta.fields
    )


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
    # NOTE: a resolver that keeps one side's data whole (last-writer-wins, version counters)
    # hands back that side's mapping: its digest is that side's, already checked when it was
    # read or computed when it was made, so it is not hashed again (hashing was half of a
    # conflict's cost: bench/core.py, session 36); every version's data holds its key, so
    # setting the key above changed nothing. Any other data is hashed.
    kept = next((v for v in (a, b) if resolution.data is v.data), None)
    merged_digest = kept.meta.digest if kept is not None else digest(data)
    meta = Meta(
        vv=a.meta.vv.join(b.meta.vv),
        actor=carrier.actor,
        write_id=carrier.write_id,
        hlc=carrier.hlc,
        digest=merged_digest,
        count=carrier.count,
        deleted=resolution.deleted,
        merged=True,
        fields=resolution.fields,
        # A merge whose carrier is a withheld marker is one: under the resolvers residency
        # filters allow, the carrier's data is the merge's (docs/design.md).
        withheld=carrier.withheld,
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
    reason: Literal["duplicate", "stale", "absorbed", "covered"]


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


@dataclass(frozen=True)
class Defer:
    """Not now: under merge rules a version from another region that meets a raw item not
    adopted yet waits (its delivery fails and is retried) until the raw write's own adoption
    has stamped the item in its region. The raw data has no time of its own: merged beside
    the version as the later write, it outranked writes that had seen the raw write's
    adoption elsewhere (docs/design.md, "Raw writes under merge rules")."""

    reason: str


Decision = Skip | Write | Annotate | Defer


def supersedes(decision: Decision, incoming: Version) -> bool:
    """Whether an adoption's decision in its own region leaves the adoption itself nowhere: a
    successor written instead (forwarded from its own record), or the region already covering
    it (`_covers`). Under merge rules the other regions then do not receive it (the
    pipeline's gate), so no second, later-timed version of the same data exists."""
    match decision:
        case Skip(reason="covered"):
            return True
        case Write(version=written, conflict=None):
            return written.meta.write_id != incoming.meta.write_id
    return False


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
    (`succeeding`). Not under merge rules, where an adoption claims only what its write
    read (docs/design.md). Under merge rules a merge holding a write made here over a raw
    item, which the adoption does not know, gets a successor too (`_written_over_raw_since`).
    """
    pre = precondition_for(current)
    keeps = settings.resolver.keeps_deleted_data
    succeed = here == "adoption"
    match current:
        case Absent():
            if succeed and not incoming.meta.deleted:
                return Write(succeeding(incoming, None, settings=settings), pre)
            return Write(incoming, pre)
        case Raw(data=data, copied=copied):
            # The raw write is adopted from its own record and will meet this version there;
            # here only a version its copied context already contains is stale.
            if copied is not None and compare(incoming.meta, copied) in (Order.EQUAL, Order.BEFORE):
                return Skip("stale")
            own = not incoming.meta.deleted and incoming.meta.digest == checked_digest(data)
            if keeps and here is None:
                return Defer("the raw item here is not adopted yet")
            if keeps and not own:
                # Under merge rules nothing rolls a raw item back: an adoption (or restore) of
                # this region meeting a raw write made since keeps the raw data as the later
                # write (it is), merged with it, and adopted from its own record.
                beside = beside_raw(incoming, current, settings=settings)
                if same_item(beside.data, data):
                    return Annotate(beside.meta, pre)
                return Write(beside, pre)
            if here is not None and not own:
                return Annotate(join_meta(incoming.meta, copied) or incoming.meta, pre)
            if succeed and copied is not None and _claims_without(incoming.meta, copied):
                # The raw write's own adoption claims an earlier adoption annotated here
                # without holding all it holds: keep that context, the item raw (a digest no
                # data has), and the annotation's record is adopted as a successor of both, so
                # the region never drops a version its vector claims (docs/design.md,
                # "Raw-write adoption"; test_an_adoption_keeps_an_annotated_adoption_it_claims).
                context = join_meta(incoming.meta, copied)
                assert context is not None
                return Annotate(replace(context, digest=unmatched_digest(data)), pre)
            if (
                succeed
                and copied is not None
                and compare(incoming.meta, copied) is Order.CONCURRENT
            ):
                # The raw write's own adoption meets its data annotated with an adoption it
                # does not hold (an earlier raw write's, annotated here after this one replaced
                # it). Writing the adoption alone would drop that context from the region, and
                # a raw write landing before the annotation's own adoption arrives would then
                # succeed this adoption only, ranking below the annotation's adoption, which
                # holds the same older data: the later raw write lost everywhere (residency
                # version-counter machine, deep run seed 3048069373). A successor of both
                # keeps every version the item held; it is stamped and forwarded, so no
                # further annotation record follows (an annotation here would: a loop).
                # The raw data is live whatever its context (a tombstone it was written after).
                raw = Version(data=dict(data), meta=replace(copied, deleted=False))
                return Write(succeeding(incoming, raw, settings=settings, before=True), pre)
            return Write(incoming, pre)
        case Stamped(version=mine):
            order = compare(incoming.meta, mine.meta)
            if order is Order.EQUAL:
                return Skip("duplicate")
            if order is Order.BEFORE:
                return Skip("stale")
            if order is Order.AFTER:
                return Write(incoming, pre)
            if succeed and keeps and _covers(mine, incoming):
                # Applied nowhere: the pipeline sends it to no other region either (`_Gate`).
                return Skip("covered")
            if succeed and (
                _stamped_here(mine.meta, incoming.meta)
                or (keeps and _written_over_raw_since(mine.meta, incoming.meta))
            ):
                successor = succeeding(incoming, mine, settings=settings)
                if keeps:
                    merged = merge(mine, incoming, settings=settings)
                    if _same_resolution(merged, successor):
                        # The plain merge already keeps what was written here over the raw
                        # item, and every region computes it: no successor, whose clock
                        # would re-time values of other regions' writes that ``mine`` holds
                        # above their own regions' later writes (union machine, deep run
                        # seed 3048069373: a chain of successors here carried another
                        # region's value above the write that had replaced it there).
                        return Write(merged, pre, conflict=(mine, incoming))
                return Write(successor, pre)
            # Concurrent. A tombstone past its horizon relative to the other version counts as
            # absence, whichever side it is on: some regions may have collected it already.
            if tombstone_expired(mine.meta, at_hlc=incoming.meta.hlc, settings=settings):
                return Write(incoming, pre)
            if tombstone_expired(incoming.meta, at_hlc=mine.meta.hlc, settings=settings):
                return Skip("stale")
            if (
                succeed
                and not keeps
                and not settings.ranked_by_data
                and _carried_by_an_earlier_adoption(mine.meta, incoming.meta)
            ):
                # A later raw write of this region meets the merge its predecessor's adoption
                # carries: merged with it, it would lose to its own predecessor on the clock
                # (the predecessor's is its base's plus one, this one's a whole second), and a
                # delete would bring back what it deleted (chaos run, seed 20261206). It is
                # written as what it is, a write made after that adoption: its data over the
                # merge, succeeding it (`succeeding`, ``before``: the merge came first).
                # Not when versions rank by an application counter: there the merge already
                # ranks the later raw write above its predecessor (the application counts
                # above what it replaces), and a successor would rank below a version it
                # succeeds whenever the version that landed counted above it, which no merge
                # converges under (VersionCounterAttributeMachine).
                later = Version(
                    data=dict(incoming.data),
                    meta=replace(mine.meta, deleted=incoming.meta.deleted),
                )
                return Write(succeeding(incoming, later, settings=settings, before=True), pre)
            merged = merge(mine, incoming, settings=settings)
            if merged.meta == mine.meta and merged.data == mine.data:
                return Skip("absorbed")
            return Write(merged, pre, conflict=(mine, incoming))
    raise AssertionError(current)
