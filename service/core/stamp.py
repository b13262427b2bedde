"""Building new versions: a local write stamped by georep (:func:`stamp`), a raw write
adopted, a version written over a tombstone, the successor of a merge. Pure: time and ids are
arguments.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import replace

import ulid

from service.core import hlc as hlc_
from service.core.residency_rules import register_floor, register_stamp
from service.core.stored import Raw, Settings, Stamped, Stored, checked_digest
from service.core.values import AttributeValue, same_value
from service.core.version import (
    META_ATTR,
    Family,
    FieldStamp,
    Meta,
    Version,
    VersionVector,
    actor_region,
    blind_actor,
    fresh_actor,
    is_adoption_actor,
)

# How far above every version it saw a new version is timed. A successor (`succeeding`) is one
# above its base; every other write, stamped or adopted, two: so a write that saw what a
# successor succeeds is later than the successor. A successor copies a write its region
# already made; it is not a later write, and must never win over one that followed what it
# copies (test_a_successor_of_a_write_over_a_raw_item_loses_to_a_delete_that_saw_the_write).
# One above still keeps every version later than all it succeeds, so the last-writer order
# extends the causal one and merges stay associative.
SUCCESSOR_STEP = 1
WRITE_STEP = 2


def field_stamps(
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


def new_version(
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
    over_raw: bool = False,
    successor: bool = False,
    count: int | None = None,
) -> Version:
    """A new version by ``region`` on top of ``base``.

    ``visible``: ``base`` is what this region's table held, so the region's history of the
    item is in it and the region's actor continues. Otherwise the write starts a fresh actor,
    which claims no dot it never saw (docs/design.md, "History that was lost").

    ``sequence`` set: a raw write adopted from the record at that sequence number, and the
    actor takes the sequence number as its counter (`_adoption_counter`). A blind one (its
    record shows no history but the region's blind raw writes: `is_blind`) continues the
    region's blind actor, with update count 1 and a clock no lower than its base's; else it
    continues the region's adoption actor its base holds if the base is visible (the record's
    old image: what the raw write replaced), else starts a fresh one. Otherwise a stamped
    write, which continues the region's stamped actor, counter ``max(previous + 1, at_hlc)``:
    the HLC floor keeps counters unique even if a stale version was restored over a forgotten
    one.

    ``over_raw``: the write replaces a raw item not adopted yet; under merge rules its fresh
    actor is then an over-raw actor, which tells that raw write's adoption, should it meet a
    dot of it in its own region, that the dot was written there after it (`decide`). Never an
    adoption: adoption actors are never over-raw, and merge rules have no blind actor
    (`is_blind`).

    The clock is at least ``at_hlc`` and `WRITE_STEP` above the base's, `SUCCESSOR_STEP` for
    a ``successor``.
    """
    vv = base.vv if base is not None else VersionVector()
    blind = sequence is not None and is_blind(
        base, visible=visible, region=region, sequence=sequence, settings=settings
    )
    if sequence is not None:
        if blind:
            actor = blind_actor(region)
        else:
            continued = _adoption_actor_for(base, region=region) if visible else None
            actor = continued or fresh_actor(
                region, write_id, taken=(a for a, _ in vv.entries), adoption=True
            )
        counter = _adoption_counter(vv.get(actor), sequence=sequence, at_hlc=at_hlc)
    else:
        continued = _actor_for(base, region=region) if visible else None
        family: Family = "unmarked"
        if settings.resolver.keeps_deleted_data:
            family = "over-raw" if over_raw else "plain"
        actor = continued or fresh_actor(
            region, write_id, taken=(a for a, _ in vv.entries), family=family
        )
        # Above the previous counter and at least the clock: unique even if a stale version
        # was restored over a forgotten one.
        counter = max(vv.get(actor) + 1, at_hlc)
    vv = vv.bump(actor, counter)
    step = 0 if blind else SUCCESSOR_STEP if successor else WRITE_STEP
    hlc = max(at_hlc, base.hlc + step) if base is not None else at_hlc
    if base is not None:
        # Above the base's register (residency) too, blind or not: the floor only raises a
        # clock, and each blind write of a chain meets the same register, so the chain keeps
        # its order by write id.
        hlc = max(hlc, register_floor(base.redacted))
    fields = None
    if settings.resolver.field_stamps:
        fields = field_stamps(
            base_data=base_data, base=base, data=data, stamp=(hlc, region), settings=settings
        )
    meta = Meta(
        vv=vv,
        actor=actor,
        write_id=write_id,
        hlc=hlc,
        digest=checked_digest(data),
        count=count
        if count is not None
        else base.count + 1
        if base is not None and not blind
        else 1,
        deleted=deleted,
        adopted=adopted,
        fields=fields,
        redacted=register_stamp(
            region=region, data=data, at=hlc, write_id=write_id, settings=settings
        ),
    )
    return Version(data=dict(data), meta=meta)


def _adoption_counter(previous: int, *, sequence: str, at_hlc: int) -> int:
    """An adoption actor's counter for the record at ``sequence``: the sequence number itself.

    Sequence numbers increase within a shard, and an item's records stay in one shard lineage,
    so no two adoptions of an item take one counter, and a replay computes the same one.
    ``previous + 1`` keeps it above the base's should a stream ever number below it (a
    re-enabled stream, a restored table); a non-numeric sequence (no DynamoDB stream has one)
    falls back to the clock.
    """
    number = int(sequence) if sequence.isdigit() else at_hlc
    return max(previous + 1, number)


def is_blind(
    base: Meta | None, *, visible: bool, region: str, sequence: str, settings: Settings
) -> bool:
    """Whether an adoption in ``region`` over ``base`` is blind: its raw write replaced no
    stamped item (not ``visible``) and its record shows no history but the region's blind raw
    writes (no metadata at all, or only the blind actor's: an annotation of one, or a raw item
    annotated with one), so it continues the region's blind actor.

    NOTE: the blind actor's counter claims every lower one of it, and each version it numbers
    has the vector ``{blind_actor: sequence}`` alone, so every version that claims one holds
    its whole vector: no claim without history (docs/design.md, "Raw-write adoption"). Ranks
    follow the counters too, so a later blind raw write is also the resolvers' later one: all
    have update count 1, the clock of their record's second (logical 0, `_adopt`) or their
    base's if that is higher, and write ids ordered by the sequence number within a
    millisecond (`adoption_id`). Over a visible base the raw write replaced a version the
    table held: it continues another adoption actor, counting updates (version counters). A
    non-numeric sequence (no DynamoDB stream has one) orders nothing: a fresh actor then. Not
    under merge rules or field stamps, where a successor's clock and stamps must rise above
    its predecessors' (docs/design.md, "Raw writes under merge rules")."""
    resolver = settings.resolver
    if visible or not sequence.isdigit() or resolver.keeps_deleted_data or resolver.field_stamps:
        return False
    return base is None or {a for a, _ in base.vv.entries} == {blind_actor(region)}


def _adoption_actor_for(base: Meta | None, *, region: str) -> str | None:
    """The adoption actor an adoption in ``region`` continues over a visible ``base``: ours
    with the highest counter, never the blind actor (its versions hold nothing but it), else
    none (start a fresh one).

    NOTE: a counter claims every lower one of its actor, so an adoption may continue an actor
    only over a base that holds the actor's history: what its raw write replaced in the table.
    Over a raw item or nothing the record shows none of it (a blind put over a raw write, a
    put after a raw delete), and continuing there claimed earlier adoptions without their
    bases: two regions then held one vector with two carriers (a deep run, seed 4282501956;
    test_a_raw_write_claims_no_earlier_adoption_it_did_not_see)."""
    if base is None:
        return None
    blind = blind_actor(region)
    ours = [
        (c, a)
        for a, c in base.vv.entries
        if actor_region(a) == region and is_adoption_actor(a) and a != blind
    ]
    return max(ours)[1] if ours else None


def _actor_for(base: Meta | None, *, region: str) -> str | None:
    """The actor this region's stamped writes continue: the base's writer if it is ours,
    else our actor with the highest counter in the base, else none (start a fresh one).
    Never an adoption actor: only adoptions bump those."""
    if base is None:
        return None
    if actor_region(base.actor) == region and not is_adoption_actor(base.actor):
        return base.actor
    ours = [
        (c, a) for a, c in base.vv.entries if actor_region(a) == region and not is_adoption_actor(a)
    ]
    return max(ours)[1] if ours else None


def waits_for_adoption(current: Stored, *, settings: Settings) -> bool:
    """Whether a write through georep over ``current`` must wait for its adoption: under
    merge rules, over a raw item not adopted yet. Written at once, it would be timed by the
    writer's clock while the raw write's adoption is timed by its record, and a merge with
    another region's version before that adoption arrives leaves the region with no way to
    rank the later write above it without re-timing that version too (docs/design.md, "Raw
    writes under merge rules"). Waiting, the write succeeds the adoption by its vector."""
    return settings.resolver.keeps_deleted_data and isinstance(current, Raw)


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
        data, deleted = settings.deleted_data(old), True
    else:
        deleted = False
        settings.keys_of(data)
    if keeps and not deleted and base is not None and base.deleted:
        data = over_tombstone(
            Version(data=base_data, meta=base), data, region=region, settings=settings
        )
    return new_version(
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
        over_raw=isinstance(current, Raw),
    )


def succeeding(
    adopted: Version,
    replaced: Version | None,
    *,
    settings: Settings,
    before: bool = False,
) -> Version:
    """What replaced an adopted raw write in its own region before the adoption reached its
    table, as a version succeeding both: ``replaced`` (a stamped write made over the raw
    item, which could not see the adoption, or under merge rules a merge holding one), or,
    if ``None``, the deletion that left the item absent (a tombstone). Computed from its
    inputs alone (replays agree), with a fresh actor (its dot is no other write's) and origin
    the adoption's region, so that region's consumer forwards it when it reads its record. A
    deletion's own record is adopted later and merges with it (both are tombstones).

    ``before``: ``replaced`` came before the raw write instead (the context its raw item was
    annotated with, holding the raw write's data), so the successor stands for the raw write
    written after it."""
    meta = adopted.meta
    base = join_meta(replaced.meta, meta) if replaced is not None else meta
    assert base is not None
    # NOTE: the adoption's actor names its region: adoption write ids follow sequence numbers
    # alone, so two regions' adoptions can share one (test_two_regions_successors_...).
    after = replaced.meta.write_id if replaced is not None else "deleted"
    if replaced is not None and replaced.meta.merged:
        # A merge carries its carrier's write id, which other merges share: name it by its
        # vector too, so two successors of one adoption never take one write id (and actor).
        after += "/" + ",".join(f"{actor}={counter}" for actor, counter in replaced.meta.vv.entries)
    seed = f"{meta.actor}/{meta.write_id}/{after}"
    randomness = hashlib.blake2b(seed.encode(), digest_size=10).digest()
    ms = hlc_.wall_ms(base.hlc) % (1 << 48)
    data = replaced.data if replaced is not None else settings.deleted_data(adopted.data)
    base_data = replaced.data if replaced is not None else adopted.data
    deleted = replaced.meta.deleted if replaced is not None else True
    if (
        replaced is not None
        and settings.ranked_by_data
        and not settings.resolver.keeps_deleted_data
    ):
        # Ranked by an application counter, a successor holds the higher-ranked of the two
        # (the resolver's choice), as a merge of them would: with what replaced the raw write
        # alone it could rank below the adoption it succeeds, which no merge converges under
        # ("Why it converges", point 2). The counter, not the order the writes landed in,
        # says which came later (the application counts above what it replaces), e.g. when
        # what "replaced" it is the tombstone an earlier adoption left for that same
        # deletion, or a successor georep wrote while a raw write landed (both found by
        # VersionCounterAttributeMachine).
        chosen = settings.resolver.resolve(adopted, replaced)
        deleted = chosen.deleted
        data = {**chosen.data, **settings.keys_of(replaced.data)}
        data = settings.deleted_data(data) if deleted else data
    if settings.resolver.keeps_deleted_data:
        # Under merge rules a successor is an inflation of what it succeeds, field stamps
        # included: the resolver's merge of the adopted version and what replaced it, or, for
        # a deletion, the adopted data itself (a tombstone keeps the data it deletes).
        fields = meta.fields
        if replaced is not None:
            # ``replaced`` was written after the raw write, over it: the resolver sees it as
            # the later write (test_a_successor_keeps_what_replaced_the_raw_write_...).
            resolution = settings.resolver.resolve(
                adopted, written_later(replaced, adopted, settings=settings)
            )
            data = {**resolution.data, **settings.keys_of(replaced.data)}
            fields = resolution.fields
        else:
            data = dict(adopted.data)
        base, base_data = replace(base, fields=fields), data
    # NOTE: the update count of what the successor stands for, not one more than both: the
    # write that replaced the raw item followed it (at least one update past the adoption),
    # a deletion is one update past it, and a raw write is one past the context it was
    # annotated with (``before``); re-stamping a version adds no update. A
    # successor that raised it would outrank, under version counters, a write that followed
    # ``replaced`` in another region: a chain of successors of one value (late adoptions of
    # raw writes it had replaced) won over a delete of that value (version-counter store
    # machine, deep run seed 1208; test_successors_never_raise_a_values_update_count).
    if replaced is None:
        count = meta.count + 1
    elif before:
        count = max(meta.count, replaced.meta.count + 1)
    else:
        count = max(replaced.meta.count, meta.count + 1)
    return new_version(
        base=base,
        visible=False,
        base_data=base_data,
        data=data,
        deleted=deleted,
        region=actor_region(meta.actor),
        at_hlc=base.hlc + SUCCESSOR_STEP,
        write_id=str(ulid.from_bytes(ms.to_bytes(6, "big") + randomness)),
        adopted=False,
        settings=settings,
        successor=True,
        count=count,
    )


def over_stored_tombstone(adopted: Version, tombstone: Version, *, settings: Settings) -> Version:
    """Under merge rules with the tombstone store: the version a raw write becomes when it was
    written into a key whose tombstone the store holds (its INSERT shows none). A successor of
    the adoption and the tombstone whose data is the tombstone's with the raw data written
    after it (`over_tombstone`), as it is when the tombstone was the item the raw write
    replaced (`translate`): a write over a tombstone is an inflation of it (docs/design.md,
    "Deletes under merge rules"). Computed from its two inputs alone, so every attempt at the
    adoption's home writes the same one; it is stamped with the adoption's region as origin,
    so that region's consumer forwards it from its record."""
    meta = adopted.meta
    region = actor_region(meta.actor)
    base = join_meta(tombstone.meta, meta)
    assert base is not None
    data = over_tombstone(tombstone, adopted.data, region=region, settings=settings)
    seed = f"{meta.actor}/{meta.write_id}/over/{tombstone.meta.write_id}"
    randomness = hashlib.blake2b(seed.encode(), digest_size=10).digest()
    ms = hlc_.wall_ms(base.hlc) % (1 << 48)
    return new_version(
        base=base,
        visible=False,
        base_data=tombstone.data,
        data=data,
        deleted=False,
        region=region,
        at_hlc=base.hlc + SUCCESSOR_STEP,
        write_id=str(ulid.from_bytes(ms.to_bytes(6, "big") + randomness)),
        adopted=False,
        settings=settings,
        successor=True,
        # One update past the tombstone (the raw write), and never below the adoption's.
        count=max(meta.count, tombstone.meta.count + 1),
    )


def written_later(later: Version, earlier: Version, *, settings: Settings) -> Version:
    """``later`` as the resolver must see it when it was written after ``earlier``, having
    read it: its clock, and the stamp of every attribute either holds (a removal included),
    above all of ``earlier``'s, so last-writer rules, per attribute or whole, pick ``later``.
    Its own stamps are kept where they are higher still (an inflation of both sides)."""
    stamps = earlier.meta.field_map()
    top = max([earlier.meta.hlc, *(hlc for hlc, _ in stamps.values())]) + 1
    meta = replace(later.meta, hlc=max(later.meta.hlc, top))
    if settings.resolver.field_stamps:
        own = later.meta.field_map()
        # An attribute held without a stamp was set by the whole write (resolvers/fields.py).
        implicit = (later.meta.hlc, later.meta.origin)
        own.update({name: implicit for name in later.data if name not in own})
        if later.meta.deleted:
            # A deletion wrote no attribute: the data a tombstone keeps keeps its own stamps
            # (raised, a deleted value came back over a write made after it, in every region
            # that merged the tombstone with a concurrent live version: field-rules machine).
            # Its clock, raised above, is what makes the deletion the later.
            keys = set(settings.key_attributes)
            kept = tuple(sorted((name, at) for name, at in own.items() if name not in keys))
            return Version(data=later.data, meta=replace(meta, fields=kept))
        floor = (top, later.meta.origin)
        names = set(later.data).union(earlier.data, own, stamps) - set(settings.key_attributes)
        meta = replace(
            meta, fields=tuple(sorted((name, max(own.get(name, floor), floor)) for name in names))
        )
    return Version(data=later.data, meta=meta)


def beside_raw(incoming: Version, raw: Raw, *, settings: Settings) -> Version:
    """Under merge rules, what a raw item not adopted yet becomes when ``incoming`` arrives:
    still a raw item (its metadata never describes its data), whose data is the raw data
    merged with ``incoming``'s and whose copied context is ``incoming`` joined with what the
    raw write copied back. Replication never rolls a region back to before a raw write.

    Its own record is then adopted (`translate`, like any raw write) as a version that
    succeeds ``incoming`` and the copied context and holds both data: an inflation of both,
    which a successor must be under merge rules (docs/design.md, "Raw writes under merge
    rules"). The raw data is asked of the resolver as a write just after ``incoming`` that
    claims no attribute it does not hold (no field stamps), so no element of ``incoming`` is
    dropped. Stamped writes over the result start a fresh actor (it is raw), so none can take
    a dot of the history the raw write hid (test_a_replicated_delete_over_a_raw_write_...).
    """
    meta = incoming.meta
    data, fields = written_after(
        incoming, raw.data, region=meta.origin, settings=settings, removals=False
    )
    base = join_meta(meta, raw.copied)
    assert base is not None
    context = Meta(
        vv=base.vv,
        actor=meta.actor,
        write_id=meta.write_id,
        hlc=base.hlc,
        # The item stays raw whatever the merge gives, so its record is adopted.
        digest=unmatched_digest(data),
        count=base.count,
        # The merge's stamps, each at least ``incoming``'s: the adoption of this item, which
        # succeeds ``incoming``, then holds no attribute stamped older than it. Joined with the
        # context's own: it already held the raw data stamped after an earlier version, and
        # dropping those stamps made a later successor of this item hold an attribute stamped
        # below a version it succeeds (field-rules machine: two regions, one vector).
        fields=_join_fields(fields, raw.copied.fields if raw.copied is not None else None),
    )
    return Version(data=data, meta=context)


def unmatched_digest(data: Mapping[str, AttributeValue]) -> str:
    """A digest for metadata annotated on raw ``data`` that keeps the item raw: never the
    digest of any data (no data has an attribute named META_ATTR), so its record is adopted."""
    return checked_digest({**data, META_ATTR: {"NULL": True}})


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


def sequence_bits(sequence: str) -> int:
    """16 bits that differ between records of one stream within any one second."""
    if sequence.isdigit():
        return int(sequence) & hlc_.LOGICAL_MASK
    digest_ = hashlib.blake2b(sequence.encode(), digest_size=2).digest()
    return int.from_bytes(digest_, "big")


def over_tombstone(
    tombstone: Version,
    data: Mapping[str, AttributeValue],
    *,
    region: str,
    settings: Settings,
) -> dict[str, AttributeValue]:
    """Under merge rules, a write over a tombstone includes what the tombstone holds, so the
    successor is an inflation of its predecessor (docs/design.md, "Deletes under merge
    rules"). ``data`` is asked of the resolver as a version just after the tombstone."""
    return written_after(tombstone, data, region=region, settings=settings)[0]


def written_after(
    before: Version,
    data: Mapping[str, AttributeValue],
    *,
    region: str,
    settings: Settings,
    removals: bool = True,
) -> tuple[dict[str, AttributeValue], tuple[tuple[str, FieldStamp], ...] | None]:
    """The resolver's merge of ``before`` with ``data`` written by ``region`` just after it:
    the data, and the field stamps of the merge (field-level rules), each at least the one
    ``before`` has. ``removals``: ``data`` was written reading ``before``, so an attribute it
    lacks was removed; otherwise (a raw write that never read ``before``) it claims only the
    attributes it holds."""
    base = before.meta
    hlc = base.hlc + 1
    fields = None
    if settings.resolver.field_stamps:
        fields = field_stamps(
            base_data=before.data if removals else {},
            base=base if removals else None,
            data=data,
            stamp=(hlc, region),
            settings=settings,
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
    resolution = settings.resolver.resolve(before, Version(data=dict(data), meta=meta))
    return {**resolution.data, **settings.keys_of(data)}, resolution.fields


def join_meta(a: Meta | None, b: Meta | None) -> Meta | None:
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
        fields=_join_fields(a.fields, b.fields),
    )


def _join_fields(
    a: tuple[tuple[str, FieldStamp], ...] | None, b: tuple[tuple[str, FieldStamp], ...] | None
) -> tuple[tuple[str, FieldStamp], ...] | None:
    """Each attribute's later stamp of the two: a version built on a join succeeds both, so
    under field rules its stamps must be an inflation of both sides' (a stamp taken from one
    side alone can sit below the other's for the same version vector, and two regions then
    store one vector with two sets of stamps: the field-rules machine found it, deep run
    seed 1669169229)."""
    if a is None or b is None:
        return a if b is None else b
    joined = dict(a)
    for name, stamp_ in b:
        if name not in joined or stamp_ > joined[name]:
            joined[name] = stamp_
    return tuple(sorted(joined.items()))
