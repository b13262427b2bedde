"""What ``georep verify`` decides, as pure functions over what each region holds for one key.

* :func:`fingerprint` — equal for items DynamoDB calls equal, georep's own attributes
  included: what the scans compare, region against region;
* :func:`classify` — identical, *pending* (a difference replication can still settle: a region
  behind the newest version, concurrent versions, a raw write not adopted yet) or *divergent*
  (one replication never settles, whatever it delivers: unreadable metadata, one version held
  in different bytes);
* :func:`plan_repair` — the version every region should hold (the join of what they hold, raw
  items adopted as found) and the conditional write each region needs to get there, which is
  exactly what `decide` says: a region holding something newer than the plan is left alone.

With the tombstone store (issue 22) each region holds a key in two places: its table and its
store. Every function then also takes ``stores`` (each region's store item for the key), and
a region holds what `read_key` says (its table's item, else its store's tombstone): a key
absent from a table and tombstoned in the store is deleted, not missing, and the stores'
tombstones are compared across regions like the tables' items. :func:`commits_for` turns a
repair into the table's and the store's steps of one `Table.commit` per region (`commit_for`),
so a repair deletes an item and writes its tombstone atomically (docs/decisions.md, "verify
and repair read the tombstone store").

One reading cannot tell a pending difference that is in flight from one that is stuck (its
record trimmed, its consumer stopped): the shell (service/engine/verify.py) re-reads it until it
settles or stops changing (docs/decisions.md, "verify").
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Literal

from service.core.adopt import adopt_found
from service.core.apply import Decision, Skip, Write, decide, precondition_for
from service.core.places import KeyState, Step, commit_for, read_key
from service.core.residency import (
    decide_for,
    identity,
    join_registers,
    main_view,
    project,
    register_of,
    residency_of,
    with_register,
)
from service.core.stamp import join_meta
from service.core.stored import Absent, Raw, Settings, Stamped, Stored, checked_digest, read_item
from service.core.tombstones import DATA_ATTR
from service.core.values import Item, digest
from service.core.version import (
    META_ATTR,
    Meta,
    Order,
    Version,
    compare,
    encode_item,
    encode_meta,
    expiry_ms,
)
from service.errors import GeorepError, MetadataError

Holdings = Mapping[str, Item | None]
"""Region -> the item it holds under one key (``None``: no item). With the tombstone store,
a second one gives each region's store item for the key (the ``stores`` arguments)."""


@dataclass(frozen=True)
class Unreadable:
    """An item whose ``_georep`` cannot be read (tampered, or another schema): replication
    dead-letters its records, and verify reports it instead of guessing."""

    error: str


Holding = Stored | Unreadable


def holding_of(item: Item | None, *, settings: Settings) -> Holding:
    try:
        return read_item(item, settings=settings)
    except GeorepError as error:
        return Unreadable(str(error))


def fingerprint(item: Item | None) -> str | None:
    """A digest of the whole item, ``_georep`` and ``_georep_ttl`` included (``None``: no
    item). Equal for items DynamoDB calls equal (set order, ``1.0`` and ``1``), so a region
    whose set came back in another order does not count as different."""
    return None if item is None else digest(item)


def store_print(stored: Item | None) -> str | None:
    """What regions compare of a store item: its tombstone, ``_georep`` and ``d`` as stored
    (``None``: no tombstone). The deletions it records and its TTL attribute are the region's
    own (which deletes were local, which replicated), so they are never compared."""
    if stored is None or META_ATTR not in stored:
        return None
    return digest({name: stored[name] for name in (META_ATTR, DATA_ATTR) if name in stored})


Kind = Literal["identical", "pending", "divergent"]
Reason = Literal[
    "same",
    "collected",
    "behind",
    "concurrent",
    "raw",
    "bytes",
    "unreadable",
    "redacted",
    "store",
]

REASONS: Mapping[Reason, str] = {
    "same": "every region holds the same item",
    "collected": "only tombstones past their horizon differ from no item (TTL collects them)",
    "behind": "a region lacks the newest version",
    "concurrent": "regions hold concurrent versions",
    "raw": "a raw write is not adopted yet",
    "bytes": "regions hold one version in different bytes (replication never rewrites it)",
    "unreadable": "an item's _georep cannot be read (its records are dead-lettered)",
    "redacted": "the regions that hold the redacted attributes hold different values of them",
    "store": "a tombstone store keeps a tombstone its table's item succeeds (nothing drops it)",
}


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: Reason

    def __str__(self) -> str:
        return f"{self.kind}: {REASONS[self.reason]}"


@dataclass(frozen=True)
class _Seen:
    """What each region holds for one key, read from its table (and its store).

    ``views``: one item per region as the tables held it before the store: the table's item,
    else the store's tombstone as a tombstone item (its ``_georep`` bytes as stored), so one
    version held in other bytes in a store is seen too. ``holdings``: what `decide` sees.
    ``stale``: the regions whose store keeps a tombstone beside an item that succeeds it.
    ``states``: each region's `KeyState` (with the store only)."""

    views: Mapping[str, Item | None]
    holdings: Mapping[str, Holding]
    stale: frozenset[str] = frozenset()
    states: Mapping[str, KeyState] | None = None


def _seen(items: Holdings, stores: Holdings | None, *, settings: Settings) -> _Seen:
    if stores is None:
        holdings = {region: holding_of(item, settings=settings) for region, item in items.items()}
        return _Seen(views=items, holdings=holdings)
    views: dict[str, Item | None] = {}
    found: dict[str, Holding] = {}
    states: dict[str, KeyState] = {}
    stale: set[str] = set()
    for region, item in items.items():
        try:
            state = read_key(item, stores.get(region), settings=settings)
            tombstone = state.tombstone
            if tombstone is not None and checked_digest(tombstone.data) != tombstone.meta.digest:
                # Only georep writes the store: data its metadata does not describe is an edit.
                raise MetadataError("its tombstone store item holds data _georep does not describe")
        except GeorepError as error:
            views[region], found[region] = item, Unreadable(str(error))
            continue
        states[region] = state
        views[region] = _view(state, settings=settings)
        found[region] = held_in(state)
        table = state.table
        if (
            tombstone is not None
            and isinstance(table, Stamped)
            and compare(table.version.meta, tombstone.meta) is Order.AFTER
        ):
            stale.add(region)
    return _Seen(views=views, holdings=found, stale=frozenset(stale), states=states)


def _view(state: KeyState, *, settings: Settings) -> Item | None:
    if state.item is not None or state.tombstone is None:
        return state.item
    assert state.store_attr is not None
    return {
        **encode_item(state.tombstone, horizon_ms=settings.horizon_ms),
        META_ATTR: state.store_attr,
    }


def held_in(state: KeyState) -> Stored:
    """What a region holds for a key across its two places, as repair and classification see
    it: `KeyState.current` (the table's item, else the store's tombstone; a raw item beside
    a tombstone holds it as copied context), except that a stamped item beside a tombstone
    it does not succeed (an application's copy put back after the delete, which georep never
    leaves there) counts as a raw item whose context is both: the engine adopts it over the
    tombstone (`translate`'s ``beside``), and so does repair."""
    table, tombstone = state.table, state.tombstone
    if (
        isinstance(table, Stamped)
        and tombstone is not None
        and compare(table.version.meta, tombstone.meta) is not Order.AFTER
    ):
        copied = join_meta(table.version.meta, tombstone.meta)
        return Raw(data=table.version.data, copied=copied, meta_attr=table.meta_attr)
    return state.current


def _same(items: Holdings, stores: Holdings | None) -> bool:
    """Every region holds the same bytes (and, with the store, the same tombstone)."""
    return (
        len(
            {
                (fingerprint(item), store_print(stores.get(r)) if stores is not None else None)
                for r, item in items.items()
            }
        )
        == 1
    )


def classify(
    items: Holdings, *, settings: Settings, now_ms: int, stores: Holdings | None = None
) -> Verdict:
    """Whether the regions agree on one key, and if not whether replication can still settle it.

    A tombstone whose expiry (`expiry_ms`) is at or before ``now_ms`` counts as no item: TTL
    collects it in each region at its own pace. Under residency rules each region is compared
    with what it may hold (`_classify_residency`). ``stores``: each region's tombstone store
    item for the key, with the store on: a region holds its table's item, else its store's
    tombstone, and a store keeping a tombstone its table's item succeeds is divergent.
    """
    if residency_of(settings) is not None:
        return _classify_residency(
            items, _seen(items, stores, settings=settings), settings=settings, now_ms=now_ms
        )
    if _same(items, stores):
        return Verdict("identical", "same")
    seen = _seen(items, stores, settings=settings)
    views, holdings = seen.views, seen.holdings
    if any(isinstance(h, Unreadable) for h in holdings.values()):
        return Verdict("divergent", "unreadable")
    if seen.stale:
        return Verdict("divergent", "store")
    live = {
        region: h
        for region, h in holdings.items()
        if not _collectable(h, settings=settings, now_ms=now_ms)
    }
    if len({fingerprint(views[r]) if r in live else None for r in views}) == 1:
        return Verdict("identical", "collected")
    if any(isinstance(h, Raw) for h in live.values()):
        return Verdict("pending", "raw")
    newest = _newest([h.version for h in live.values() if isinstance(h, Stamped)])
    if newest is None:
        return Verdict("pending", "concurrent")
    canonical = fingerprint(encode_item(newest, horizon_ms=settings.horizon_ms))
    for region, h in live.items():
        if (
            isinstance(h, Stamped)
            and h.version.meta == newest.meta
            and fingerprint(views[region]) != canonical
        ):
            return Verdict("divergent", "bytes")
    return Verdict("pending", "behind")


def _classify_residency(
    items: Holdings, seen: _Seen, *, settings: Settings, now_ms: int
) -> Verdict:
    """`classify` under residency filters and redactions: a region holding one version is
    compared with what that region receives of it (`project`: a withheld marker outside a
    filter, no redacted attribute where it is not held), so neither a filtered-out item nor a
    redacted attribute is a difference; the redacted attributes are compared among the
    regions that hold them (a difference there is pending: their register is still being
    joined)."""
    holdings = seen.holdings
    if any(isinstance(h, Unreadable) for h in holdings.values()):
        return Verdict("divergent", "unreadable")
    if seen.stale:
        return Verdict("divergent", "store")
    live = {
        region: h
        for region, h in holdings.items()
        if not _collectable(h, settings=settings, now_ms=now_ms) and not isinstance(h, Absent)
    }
    if not live:
        same = len({fingerprint(item) for item in seen.views.values()}) == 1
        return Verdict("identical", "same" if same else "collected")
    if any(isinstance(h, Raw) for h in live.values()):
        return Verdict("pending", "raw")
    versions = {r: h.version for r, h in live.items() if isinstance(h, Stamped)}
    if len(versions) < len(items) or len({identity(v.meta) for v in versions.values()}) > 1:
        vectors = [v.meta.vv for v in versions.values()]
        newest = any(
            all(v.compare(w) in (Order.AFTER, Order.EQUAL) for w in vectors) for v in vectors
        )
        return Verdict(
            "pending", "behind" if newest or len(versions) < len(items) else "concurrent"
        )
    full = [v for v in versions.values() if not v.meta.withheld]
    if not full:
        return Verdict("identical", "same")
    reference = main_view(full[0], settings=settings)
    registers = set()
    for region, version in versions.items():
        expected = main_view(
            project(reference, destination=region, settings=settings), settings=settings
        )
        held = main_view(version, settings=settings)
        if fingerprint(encode_item(expected, horizon_ms=settings.horizon_ms)) != fingerprint(
            encode_item(held, horizon_ms=settings.horizon_ms)
        ):
            return Verdict("divergent", "bytes")
        residency = residency_of(settings)
        if residency is not None and not residency.holds(region):
            if residency.redacted & version.data.keys():
                return Verdict("divergent", "bytes")  # a redacted attribute where it must not be
        elif residency is not None and not version.meta.withheld:
            register = register_of(version, settings=settings)
            registers.add(None if register is None else register.order)
    if len(registers) > 1:
        return Verdict("pending", "redacted")
    return Verdict("identical", "same")


def _collectable(holding: Holding, *, settings: Settings, now_ms: int) -> bool:
    if not isinstance(holding, Stamped) or not holding.version.meta.deleted:
        return False
    if holding.version.meta.withheld:
        return False  # a residency filter's marker is never collected
    return expiry_ms(holding.version.meta, horizon_ms=settings.horizon_ms) <= now_ms


def _newest(versions: Sequence[Version]) -> Version | None:
    """The version every other one precedes or equals, if there is one."""
    for candidate in versions:
        if all(
            compare(other.meta, candidate.meta) in (Order.BEFORE, Order.EQUAL) for other in versions
        ):
            return candidate
    return None


# -- repair ----------------------------------------------------------------------------------


def join(versions: Sequence[Version], *, settings: Settings) -> Version:
    """What a region holding ``versions[0]`` holds once replication has delivered the others to
    it, in order: the fold of `decide` itself (one copy of the rule), so a dominated version is
    skipped, a dominating one taken, concurrent ones merged by the resolver."""
    first, *rest = versions
    held = first
    for version in rest:
        decision = decide(
            Stamped(version=held, meta_attr=encode_meta(held.meta)), version, settings=settings
        )
        if isinstance(decision, Write):
            held = decision.version
    return held


def _decide(holding: Stored, target: Version, *, settings: Settings) -> Decision:
    """`decide`, except that a raw item is replaced by the target: the target holds the raw
    item's adoption (`adopt_found`), whereas `decide` keeps a version that merely arrives at a
    raw item beside it under merge rules (`beside_raw`), to be adopted from its record."""
    if isinstance(holding, Raw):
        return Write(target, precondition_for(holding))
    return decide(holding, target, settings=settings)


def _agreed(
    versions: Sequence[Version],
    holdings: Mapping[str, Stored],
    *,
    settings: Settings,
    rounds: int = 8,
) -> Version | None:
    """The join of ``versions``, grown until `decide` writes it unchanged in every region
    (``None`` if it does not settle within ``rounds``).

    NOTE: the join alone is not always that version. A tombstone past its horizon counts as
    absence against a later version, so the join can drop it and, with it, the versions it
    superseded; a region still holding one of those merges it back in. Under the horizon
    assumption (docs/design.md) no region still holds them; a region cut off for longer does.
    """
    target = join(versions, settings=settings)
    for _ in range(rounds):
        grown = [
            decision.version
            for holding in holdings.values()
            if isinstance(decision := _decide(holding, target, settings=settings), Write)
            and decision.version != target
        ]
        if not grown:
            return target
        target = join([target, *grown], settings=settings)
    return None


@dataclass(frozen=True)
class Repair:
    """``target``: what every region should hold (``None``: no item anywhere). ``writes``: the
    conditional write each region that does not hold it yet needs (`decide`'s, with the
    precondition of what was read); a failed condition means: read again and plan again."""

    target: Version | None
    writes: Mapping[str, Write]


@dataclass(frozen=True)
class Unrepairable:
    reason: str


def plan_repair(
    items: Holdings,
    *,
    settings: Settings,
    now_hlc: int,
    write_ids: Mapping[str, str],
    stores: Holdings | None = None,
) -> Repair | Unrepairable:
    """How to make every region hold the same version of one key without regressing any.

    Every stamped version held is kept; a raw item is adopted as found (`adopt_found`, timed
    ``now_hlc``, write id ``write_ids[region]``), so its data is not lost even if its stream
    record was; the target is their join. Each region then gets what `decide` makes of the
    target over what it holds: the target is never older than a region's version, so nothing
    newer is overwritten, and a write whose precondition fails was raced by a newer write.
    A region holding the target's version in other bytes (a hand-edited ``_georep_ttl``) is
    rewritten with the target's own bytes, under the same precondition. Under residency rules
    the same, on what each region may hold (`_plan_repair_residency`).

    ``stores``: each region's store item, with the tombstone store on. A store's tombstone is
    then a version held like any other, so a tombstone that wins the join is the target and a
    live item under it is deleted, never written elsewhere; a store keeping a tombstone its
    table's item succeeds gets the item rewritten (which drops it). `commits_for` turns the
    writes into each region's steps.
    """
    seen = _seen(items, stores, settings=settings)
    if residency_of(settings) is not None:
        return _plan_repair_residency(seen, settings=settings, now_hlc=now_hlc, write_ids=write_ids)
    holdings = seen.holdings
    for region, holding in holdings.items():
        if isinstance(holding, Unreadable):
            return Unrepairable(
                f"{region}: {holding.error}; fix or delete the item there by hand, then verify"
            )
    stamped = [h.version for h in holdings.values() if isinstance(h, Stamped)]
    bases = [*stamped, *_tombstones(seen)]
    versions = list(stamped)
    for region, holding in holdings.items():
        if isinstance(holding, Raw):
            base = next((v for v in bases if v.meta == holding.copied), None)
            versions.append(
                adopt_found(
                    holding,
                    base=base,
                    region=region,
                    now_hlc=now_hlc,
                    write_id=write_ids[region],
                    settings=settings,
                )
            )
    if not versions:
        return Repair(target=None, writes={})
    readable = {r: h for r, h in holdings.items() if not isinstance(h, Unreadable)}
    try:
        target = _agreed(versions, readable, settings=settings)
    except GeorepError as error:  # a user rule that raised or changed the key
        return Unrepairable(str(error))
    if target is None:
        return Unrepairable("the regions' versions do not settle on one version")
    canonical = fingerprint(encode_item(target, horizon_ms=settings.horizon_ms))
    writes: dict[str, Write] = {}
    for region, holding in readable.items():
        decision = _decide(holding, target, settings=settings)
        if isinstance(decision, Write):
            writes[region] = decision
        elif (
            isinstance(holding, Stamped)
            and holding.version.meta == target.meta
            and (fingerprint(seen.views[region]) != canonical or region in seen.stale)
        ):
            writes[region] = Write(target, precondition_for(holding))
    return Repair(target=target, writes=writes)


def _tombstones(seen: _Seen) -> list[Version]:
    """The tombstones the regions' stores hold, beside an item or not: the base a raw item
    beside one copied (`held_in`) may be looked up among them."""
    states = seen.states or {}
    return [s.tombstone for s in states.values() if s.tombstone is not None]


def commits_for(
    repair: Repair,
    items: Holdings,
    stores: Holdings,
    *,
    table: str,
    settings: Settings,
) -> dict[str, tuple[Step | None, Step | None]]:
    """With the tombstone store: each region's write of ``repair`` as the table's and the
    store's steps of one `Table.commit`, by `commit_for` over what the region held when the
    repair was planned (``items``, ``stores``), so its conditions are that reading's on both
    places: a failed one means a newer write landed (read again, plan again). A tombstone
    target deletes the table's item and writes the tombstone in one transaction; a live one
    drops the store's tombstone with the put. ``table``: the georep table's configured name.

    NOTE: written as replicated (``local=False``): every region gets the repair's version
    from the repair itself, so the REMOVE record of a delete it makes is an echo, never an
    application's delete to adopt nor a local one to forward again.
    """
    commits: dict[str, tuple[Step | None, Step | None]] = {}
    for region, write in repair.writes.items():
        state = read_key(items.get(region), stores.get(region), settings=settings)
        commits[region] = commit_for(
            state, write.version, local=False, table=table, settings=settings
        )
    return commits


def _plan_repair_residency(
    seen: _Seen,
    *,
    settings: Settings,
    now_hlc: int,
    write_ids: Mapping[str, str],
) -> Repair | Unrepairable:
    """`plan_repair` under residency rules: the target is the join of the versions held in
    full (a withheld marker holds no data to join; the region whose marker it is gets the
    target's marker), without redacted attributes; their register is the join of the holding
    regions' registers; each region gets `decide_for` of that over what it holds, so repair
    never writes a filtered item or a redacted attribute where it must not go."""
    residency = residency_of(settings)
    assert residency is not None
    holdings = seen.holdings
    for region, holding in holdings.items():
        if isinstance(holding, Unreadable):
            return Unrepairable(
                f"{region}: {holding.error}; fix or delete the item there by hand, then verify"
            )
    readable = {r: h for r, h in holdings.items() if not isinstance(h, Unreadable)}
    full: dict[str, Version] = {}
    for region, holding in readable.items():
        if isinstance(holding, Stamped) and not holding.version.meta.withheld:
            full[region] = holding.version
        elif isinstance(holding, Raw):
            base = next(
                (
                    h.version
                    for h in readable.values()
                    if isinstance(h, Stamped) and h.version.meta == holding.copied
                ),
                None,
            )
            full[region] = adopt_found(
                holding,
                base=base,
                region=region,
                now_hlc=now_hlc,
                write_id=write_ids[region],
                settings=settings,
            )
    if not full:
        return Repair(target=None, writes={})
    register = join_registers(
        *(register_of(v, settings=settings) for r, v in full.items() if residency.holds(r))
    )
    mains = [main_view(v, settings=settings) for v in full.values()]
    main_holdings = {
        r: Stamped(main_view(h.version, settings=settings), encode_meta(h.version.meta))
        for r, h in readable.items()
        if isinstance(h, Stamped) and not h.version.meta.withheld
    }
    try:
        target = _agreed(mains, main_holdings, settings=settings)
    except GeorepError as error:
        return Unrepairable(str(error))
    if target is None:
        return Unrepairable("the regions' versions do not settle on one version")
    if residency.redacted:
        target = with_register(target, register, settings=settings)
    writes: dict[str, Write] = {}
    for region, holding in readable.items():
        own = project(target, destination=region, settings=settings)
        if isinstance(holding, Raw):
            writes[region] = Write(own, precondition_for(holding))
            continue
        decision = decide_for(holding, target, destination=region, settings=settings)
        if isinstance(decision, Write):
            writes[region] = decision
        elif (
            isinstance(decision, Skip)
            and isinstance(holding, Stamped)
            and identity(holding.version.meta) == identity(target.meta)
            and (
                fingerprint(seen.views[region])
                != fingerprint(encode_item(own, horizon_ms=settings.horizon_ms))
                or region in seen.stale
            )
        ):
            writes[region] = Write(own, precondition_for(holding))
    return Repair(target=target, writes=writes)


# -- what people read ------------------------------------------------------------------------


@dataclass(frozen=True)
class Described:
    """One region's item as the report shows it."""

    holds: Literal["absent", "stamped", "withheld", "raw", "unreadable", "tombstone"]
    digest: str  # the data's digest (first 8 characters), or "-"
    version: str  # the version vector (a raw item's: the one it copied), or "-"
    origin: str
    deleted: bool


def describe(
    item: Item | None, *, settings: Settings, stored: Item | None = None, store: bool = False
) -> Described:
    """``store``: the tombstone store is on and ``stored`` is the region's store item; a key
    the table does not hold and the store holds a tombstone of is shown as ``tombstone``."""
    if store:
        seen = _seen({"": item}, {"": stored}, settings=settings)
        holding = seen.holdings[""]
        if item is None and isinstance(holding, Stamped):
            meta = holding.version.meta
            return Described("tombstone", meta.digest[:8], _vector(meta), meta.origin, True)
    else:
        holding = holding_of(item, settings=settings)
    match holding:
        case Absent():
            return Described("absent", "-", "-", "-", False)
        case Unreadable(error=error):
            return Described("unreadable", "-", error, "-", False)
        case Stamped(version=v):
            meta = v.meta
            holds: Literal["stamped", "withheld"] = "withheld" if meta.withheld else "stamped"
            return Described(holds, meta.digest[:8], _vector(meta), meta.origin, meta.deleted)
        case Raw(data=data, copied=copied):
            vector = f"{_vector(copied)} (copied)" if copied is not None else "-"
            return Described("raw", digest(data)[:8], vector, "-", False)
    raise AssertionError(holding)


def _vector(meta: Meta) -> str:
    return " ".join(f"{actor}={counter}" for actor, counter in meta.vv.entries)
