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
from service.core.stored import Absent, Raw, Settings, Stamped, Stored, read_item
from service.core.values import Item, digest
from service.core.version import (
    Meta,
    Order,
    Version,
    compare,
    encode_item,
    encode_meta,
    expiry_ms,
)
from service.errors import GeorepError

Holdings = Mapping[str, Item | None]
"""Region -> the item it holds under one key (``None``: no item)."""


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


Kind = Literal["identical", "pending", "divergent"]
Reason = Literal[
    "same", "collected", "behind", "concurrent", "raw", "bytes", "unreadable", "redacted"
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
}


@dataclass(frozen=True)
class Verdict:
    kind: Kind
    reason: Reason

    def __str__(self) -> str:
        return f"{self.kind}: {REASONS[self.reason]}"


def classify(items: Holdings, *, settings: Settings, now_ms: int) -> Verdict:
    """Whether the regions agree on one key, and if not whether replication can still settle it.

    A tombstone whose expiry (`expiry_ms`) is at or before ``now_ms`` counts as no item: TTL
    collects it in each region at its own pace. Under residency rules each region is compared
    with what it may hold (`_classify_residency`).
    """
    if residency_of(settings) is not None:
        return _classify_residency(items, settings=settings, now_ms=now_ms)
    if len({fingerprint(item) for item in items.values()}) == 1:
        return Verdict("identical", "same")
    holdings = {region: holding_of(item, settings=settings) for region, item in items.items()}
    if any(isinstance(h, Unreadable) for h in holdings.values()):
        return Verdict("divergent", "unreadable")
    live = {
        region: h
        for region, h in holdings.items()
        if not _collectable(h, settings=settings, now_ms=now_ms)
    }
    if len({fingerprint(items[r]) if r in live else None for r in items}) == 1:
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
            and fingerprint(items[region]) != canonical
        ):
            return Verdict("divergent", "bytes")
    return Verdict("pending", "behind")


def _classify_residency(items: Holdings, *, settings: Settings, now_ms: int) -> Verdict:
    """`classify` under residency filters and redactions: a region holding one version is
    compared with what that region receives of it (`project`: a withheld marker outside a
    filter, no redacted attribute where it is not held), so neither a filtered-out item nor a
    redacted attribute is a difference; the redacted attributes are compared among the
    regions that hold them (a difference there is pending: their register is still being
    joined)."""
    holdings = {region: holding_of(item, settings=settings) for region, item in items.items()}
    if any(isinstance(h, Unreadable) for h in holdings.values()):
        return Verdict("divergent", "unreadable")
    live = {
        region: h
        for region, h in holdings.items()
        if not _collectable(h, settings=settings, now_ms=now_ms) and not isinstance(h, Absent)
    }
    if not live:
        same = len({fingerprint(item) for item in items.values()}) == 1
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
    """
    if residency_of(settings) is not None:
        return _plan_repair_residency(
            items, settings=settings, now_hlc=now_hlc, write_ids=write_ids
        )
    holdings = {region: holding_of(item, settings=settings) for region, item in items.items()}
    for region, holding in holdings.items():
        if isinstance(holding, Unreadable):
            return Unrepairable(
                f"{region}: {holding.error}; fix or delete the item there by hand, then verify"
            )
    stamped = [h.version for h in holdings.values() if isinstance(h, Stamped)]
    versions = list(stamped)
    for region, holding in holdings.items():
        if isinstance(holding, Raw):
            base = next((v for v in stamped if v.meta == holding.copied), None)
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
            and fingerprint(items[region]) != canonical
        ):
            writes[region] = Write(target, precondition_for(holding))
    return Repair(target=target, writes=writes)


def _plan_repair_residency(
    items: Holdings,
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
    holdings = {region: holding_of(item, settings=settings) for region, item in items.items()}
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
            and fingerprint(items[region])
            != fingerprint(encode_item(own, horizon_ms=settings.horizon_ms))
        ):
            writes[region] = Write(own, precondition_for(holding))
    return Repair(target=target, writes=writes)


# -- what people read ------------------------------------------------------------------------


@dataclass(frozen=True)
class Described:
    """One region's item as the report shows it."""

    holds: Literal["absent", "stamped", "withheld", "raw", "unreadable"]
    digest: str  # the data's digest (first 8 characters), or "-"
    version: str  # the version vector (a raw item's: the one it copied), or "-"
    origin: str
    deleted: bool


def describe(item: Item | None, *, settings: Settings) -> Described:
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
