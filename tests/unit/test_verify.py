"""Properties of verify's pure core (service/core/verify.py): classifying what the regions hold
for one key, and planning its repair.

The state space is kept tiny (one key, three regions, a handful of versions made by the
product's own `stamp`, `join` and `adopt_found`), so that concurrency, tombstones past their
horizon, raw items with and without copied metadata and hand-edited bytes meet often.
"""

from __future__ import annotations

import itertools
from typing import Any

import pytest
import ulid
from hypothesis import given
from hypothesis import strategies as st

from resolvers import LastWriterWins, field_rules, union
from resolvers.version_counter import VersionCounter
from service.core import hlc
from service.core.adopt import Adopt, Change, adopt_found, translate
from service.core.apply import Annotate, Skip, Write, decide, supersedes
from service.core.stamp import stamp
from service.core.stored import Absent, Raw, Settings, Stamped, read_item
from service.core.verify import (
    Repair,
    Unrepairable,
    Verdict,
    classify,
    describe,
    fingerprint,
    join,
    plan_repair,
)
from service.core.version import (
    META_ATTR,
    TTL_ATTR,
    Order,
    Version,
    compare,
    encode_item,
    encode_meta,
)

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
KEY = {"pk": {"S": "k0"}}
T0 = 1_764_000_000_000
HORIZON_MS = 60_000
RESOLVERS = {
    "lww": LastWriterWins(),
    "version-counter": VersionCounter(),
    "fields-union": field_rules(tags=union()),
}
Items = dict[str, dict[str, Any] | None]


def settings_for(name: str) -> Settings:
    return Settings(
        regions=REGIONS, key_attributes=("pk",), resolver=RESOLVERS[name], horizon_ms=HORIZON_MS
    )


LWW = settings_for("lww")


def write_id(n: int) -> str:
    return str(ulid.from_int((T0 << 80) + n))


def item_of(version: Version, settings: Settings = LWW) -> dict[str, Any]:
    return encode_item(version, horizon_ms=settings.horizon_ms)


def held(version: Version) -> Stamped:
    return Stamped(version=version, meta_attr=encode_meta(version.meta))


def put(
    base: Version | None,
    value: str | None,
    *,
    region: str,
    at_ms: int,
    n: int,
    settings: Settings = LWW,
) -> Version:
    """A stamped write (``value``) or delete (``None``) of k0 by ``region`` over ``base``."""
    current = Absent() if base is None else held(base)
    data = None if value is None else {**KEY, "v": {"S": value}, "tags": {"SS": [value]}}
    version = stamp(
        current,
        data,
        region=region,
        now_hlc=hlc.pack(T0 + at_ms),
        write_id=write_id(n),
        settings=settings,
    )
    assert version is not None
    return version


def ids() -> dict[str, str]:
    return {region: write_id(900 + i) for i, region in enumerate(REGIONS)}


# -- strategies -----------------------------------------------------------------------------


@st.composite
def histories(draw: st.DrawFn, settings: Settings, spread_ms: int) -> list[Version]:
    """A few versions of k0 the way the product makes them: writes and deletes over an
    earlier version or over nothing, and merges of two earlier versions, within
    ``spread_ms`` (beyond the horizon, regions can hold what a tombstone's horizon assumes
    they no longer do)."""
    pool: list[Version] = []
    for n in range(draw(st.integers(1, 5))):
        op = draw(st.sampled_from(["write", "write", "delete", "merge"])) if pool else "write"
        if op == "merge" and len(pool) >= 2:
            a, b = draw(st.permutations(pool))[:2]
            pool.append(join([a, b], settings=settings))
            continue
        base = draw(st.sampled_from([None, *pool]))
        if op == "delete" and (base is None or base.meta.deleted):
            continue
        pool.append(
            put(
                base,
                None if op == "delete" else f"w{n}",
                region=draw(st.sampled_from(REGIONS)),
                at_ms=draw(st.integers(0, spread_ms)),
                n=n,
                settings=settings,
            )
        )
    return pool


@st.composite
def holdings(
    draw: st.DrawFn, settings: Settings, spread_ms: int = 3 * HORIZON_MS
) -> tuple[Items, list[Version]]:
    """What each region holds: nothing, a version of the history (sometimes with a hand-edited
    ``_georep_ttl``), or a raw item (no metadata, or a version's copied back)."""
    pool = draw(histories(settings, spread_ms))
    items: Items = {}
    for region in REGIONS:
        kind = draw(st.sampled_from(["absent", "stamped", "stamped", "raw", "edited"]))
        version = draw(st.sampled_from(pool))
        if kind == "absent":
            items[region] = None
        elif kind == "stamped":
            items[region] = item_of(version, settings)
        elif kind == "edited":
            items[region] = {**item_of(version, settings), TTL_ATTR: {"N": "12345"}}
        else:
            data = {**KEY, "v": {"S": draw(st.sampled_from(["raw-a", "raw-b"]))}}
            copied = draw(st.booleans())
            items[region] = {**data, META_ATTR: encode_meta(version.meta)} if copied else data
    return items, pool


NOW_MS = st.integers(0, 5 * HORIZON_MS).map(lambda ms: T0 + ms)


def applied(items: Items, repair: Repair, settings: Settings) -> Items:
    """The regions after the plan's writes (each one's precondition held)."""
    out = dict(items)
    for region, write in repair.writes.items():
        out[region] = item_of(write.version, settings)
    return out


def planned(items: Items, settings: Settings, *, now_ms: int = T0 + 4 * HORIZON_MS) -> Repair:
    repair = plan_repair(items, settings=settings, now_hlc=hlc.pack(now_ms), write_ids=ids())
    assert isinstance(repair, Repair)
    return repair


# -- classification --------------------------------------------------------------------------


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data(), now_ms=NOW_MS)
def test_classification_does_not_depend_on_the_order_of_the_regions(
    resolver: str, data: st.DataObject, now_ms: int
) -> None:
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings))
    expected = classify(items, settings=settings, now_ms=now_ms)
    for order in itertools.permutations(REGIONS):
        assert expected == classify({r: items[r] for r in order}, settings=settings, now_ms=now_ms)


@given(data=st.data(), now_ms=NOW_MS)
def test_the_same_item_everywhere_is_identical(data: st.DataObject, now_ms: int) -> None:
    items, _ = data.draw(holdings(LWW))
    one = items[REGIONS[0]]
    assert Verdict("identical", "same") == classify(
        dict.fromkeys(REGIONS, one), settings=LWW, now_ms=now_ms
    )


def test_a_set_in_another_order_is_the_same_item() -> None:
    a = {**KEY, "tags": {"SS": ["x", "y"]}, "n": {"N": "1.0"}}
    b = {**KEY, "tags": {"SS": ["y", "x"]}, "n": {"N": "1"}}
    assert fingerprint(a) == fingerprint(b)


def test_a_region_without_the_newest_version_is_behind_not_divergent() -> None:
    first = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    second = put(first, "b", region=REGIONS[0], at_ms=10, n=2)
    items: Items = {REGIONS[0]: item_of(second), REGIONS[1]: item_of(first), REGIONS[2]: None}
    assert Verdict("pending", "behind") == classify(items, settings=LWW, now_ms=T0)


def test_concurrent_versions_are_pending_replication_merges_them() -> None:
    first = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    left = put(first, "b", region=REGIONS[0], at_ms=10, n=2)
    right = put(first, "c", region=REGIONS[1], at_ms=20, n=3)
    items: Items = {REGIONS[0]: item_of(left), REGIONS[1]: item_of(right), REGIONS[2]: None}
    assert Verdict("pending", "concurrent") == classify(items, settings=LWW, now_ms=T0)


def test_a_raw_edit_that_copied_the_metadata_is_a_pending_adoption() -> None:
    """The injection of the integration test: the data changed, ``_georep`` copied back."""
    version = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    edited = {**item_of(version), "v": {"S": "edited by hand"}}
    items: Items = {REGIONS[0]: edited, REGIONS[1]: item_of(version), REGIONS[2]: item_of(version)}
    assert isinstance(read_item(edited, settings=LWW), Raw)
    assert Verdict("pending", "raw") == classify(items, settings=LWW, now_ms=T0)


def test_one_version_in_different_bytes_is_divergent_replication_never_rewrites_it() -> None:
    version = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    edited = {**item_of(version), TTL_ATTR: {"N": "1"}}
    items: Items = {REGIONS[0]: edited, REGIONS[1]: item_of(version), REGIONS[2]: item_of(version)}
    assert Verdict("divergent", "bytes") == classify(items, settings=LWW, now_ms=T0)


def test_unreadable_metadata_is_divergent_and_unrepairable() -> None:
    version = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    tampered = {**item_of(version), META_ATTR: {"M": {"s": {"N": "1"}}}}
    items: Items = {REGIONS[0]: tampered, REGIONS[1]: item_of(version), REGIONS[2]: None}
    assert Verdict("divergent", "unreadable") == classify(items, settings=LWW, now_ms=T0)
    plan = plan_repair(items, settings=LWW, now_hlc=hlc.pack(T0), write_ids=ids())
    assert isinstance(plan, Unrepairable)
    assert REGIONS[0] in plan.reason
    assert "unreadable" == describe(tampered, settings=LWW).holds


def test_a_tombstone_past_its_horizon_is_the_same_as_no_item() -> None:
    live = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    tombstone = put(live, None, region=REGIONS[0], at_ms=10, n=2)
    items: Items = {REGIONS[0]: item_of(tombstone), REGIONS[1]: None, REGIONS[2]: None}
    before, after = T0 + 10 + HORIZON_MS - 1, T0 + 10 + HORIZON_MS
    assert Verdict("pending", "behind") == classify(items, settings=LWW, now_ms=before)
    assert Verdict("identical", "collected") == classify(items, settings=LWW, now_ms=after)


# -- repair ----------------------------------------------------------------------------------


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data())
def test_a_repair_never_regresses_what_a_region_holds(resolver: str, data: st.DataObject) -> None:
    """The planned version is never causally older than any region's version, nor than the
    metadata a raw item copied: nothing newer is overwritten."""
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings))
    repair = planned(items, settings)
    for item in items.values():
        stored = read_item(item, settings=settings)
        meta = (
            stored.version.meta if isinstance(stored, Stamped) else getattr(stored, "copied", None)
        )
        if meta is None:
            continue
        assert repair.target is not None
        assert compare(repair.target.meta, meta) is not Order.BEFORE


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data(), now_ms=NOW_MS)
def test_after_a_repair_every_region_holds_the_same_stamped_item(
    resolver: str, data: st.DataObject, now_ms: int
) -> None:
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings))
    after = applied(items, planned(items, settings), settings)
    assert 1 == len({fingerprint(item) for item in after.values()})
    for item in after.values():
        assert isinstance(read_item(item, settings=settings), Stamped | Absent)
    assert "identical" == classify(after, settings=settings, now_ms=now_ms).kind
    assert {} == dict(planned(after, settings).writes)  # a second pass writes nothing


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data())
def test_replication_still_in_flight_after_a_repair_changes_nothing(
    resolver: str, data: st.DataObject
) -> None:
    """Safe while consumers run: any version of the history delivered late to a repaired
    region is skipped (the repair's version contains what the regions held)."""
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings))
    target = planned(items, settings).target
    for item in items.values():
        stored = read_item(item, settings=settings)
        if isinstance(stored, Stamped):
            assert target is not None
            assert isinstance(decide(held(target), stored.version, settings=settings), Skip)


@pytest.mark.parametrize("resolver", sorted(RESOLVERS))
@given(data=st.data(), sequence=st.integers(1, 2**70))
def test_a_raw_edit_adopted_from_its_record_after_the_repair_still_converges(
    resolver: str, data: st.DataObject, sequence: int
) -> None:
    """The raw item's record, read by its consumer after the repair, is adopted and applied to
    every region (its own as an adoption): every region still ends with the same item."""
    settings = settings_for(resolver)
    items, pool = data.draw(holdings(settings))
    raw_regions = [r for r, i in items.items() if isinstance(read_item(i, settings=settings), Raw)]
    if not raw_regions:
        return
    region = data.draw(st.sampled_from(raw_regions))
    raw = items[region]
    assert raw is not None
    old = data.draw(st.sampled_from([None, *pool]))
    change = Change(
        event="MODIFY" if old is not None else "INSERT",
        keys=KEY,
        old=item_of(old, settings) if old is not None else None,
        new=raw,
        sequence=str(sequence),
        approx_ms=T0 + 3 * HORIZON_MS,
    )
    outcome = translate(change, region=region, settings=settings)
    assert isinstance(outcome, Adopt)
    after = applied(items, planned(items, settings), settings)
    # Its own region first, then the others, unless it superseded the adoption there (under
    # merge rules the pipeline's gate then sends it nowhere).
    for destination in [region, *(r for r in REGIONS if r != region)]:
        here = "adoption" if destination == region else None
        current = read_item(after[destination], settings=settings)
        decision = decide(current, outcome.version, settings=settings, here=here)
        assert not isinstance(decision, Annotate)  # the repaired region holds no raw item
        if isinstance(decision, Write):
            after[destination] = item_of(decision.version, settings)
        gated = settings.resolver.keeps_deleted_data
        if here is not None and gated and supersedes(decision, outcome.version):
            break
    assert 1 == len({fingerprint(item) for item in after.values()})


@pytest.mark.parametrize("resolver", ["lww", "version-counter"])
@given(data=st.data())
def test_the_repair_target_does_not_depend_on_the_order_of_the_regions(
    resolver: str, data: st.DataObject
) -> None:
    """Not under merge rules: there a raw item that drops an element is not an inflation of
    the version it copied, and merge order decides whether a concurrent version brings the
    element back (docs/design.md, "Deletes under merge rules"); regions still end identical.
    And within the horizon: across it, a tombstone counts as absence against later versions
    only, so which version meets it first decides."""
    settings = settings_for(resolver)
    items, _ = data.draw(holdings(settings, spread_ms=HORIZON_MS // 2))
    now_ms = T0 + HORIZON_MS // 2
    expected = planned(items, settings, now_ms=now_ms).target
    for order in itertools.permutations(REGIONS):
        assert expected == planned({r: items[r] for r in order}, settings, now_ms=now_ms).target


def test_the_injected_raw_edit_is_repaired_to_its_own_data_everywhere() -> None:
    """A raw edit that copied the metadata of the version every region holds: the repair
    adopts the edit (its data is the newest) and writes it to all three regions."""
    version = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    edited = {**item_of(version), "v": {"S": "edited by hand"}}
    items: Items = {REGIONS[0]: edited, REGIONS[1]: item_of(version), REGIONS[2]: item_of(version)}
    repair = planned(items, LWW)
    assert repair.target is not None
    assert {"S": "edited by hand"} == repair.target.data["v"]
    assert repair.target.meta.adopted
    assert Order.AFTER == compare(repair.target.meta, version.meta)
    assert set(REGIONS) == set(repair.writes)


def test_a_raw_item_is_adopted_with_a_fresh_actor_never_the_adoption_actor() -> None:
    version = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    raw = read_item({**item_of(version), "v": {"S": "b"}}, settings=LWW)
    assert isinstance(raw, Raw)
    adopted = adopt_found(
        raw,
        base=version,
        region=REGIONS[1],
        now_hlc=hlc.pack(T0 + 5),
        write_id=write_id(7),
        settings=LWW,
    )
    assert adopted.meta.actor.startswith(f"{REGIONS[1]}~")
    assert not adopted.meta.actor.endswith("~00000000")
    assert Order.AFTER == compare(adopted.meta, version.meta)


def test_described_rows_say_what_each_region_holds() -> None:
    version = put(None, "a", region=REGIONS[2], at_ms=0, n=1)
    shown = describe(item_of(version), settings=LWW)
    assert ("stamped", REGIONS[2], False) == (shown.holds, shown.origin, shown.deleted)
    assert version.meta.digest[:8] == shown.digest
    raw = describe({**item_of(version), "v": {"S": "b"}}, settings=LWW)
    assert "raw" == raw.holds and raw.version.endswith("(copied)")
    assert "absent" == describe(None, settings=LWW).holds


def test_a_region_cut_off_past_a_tombstones_horizon_still_ends_identical() -> None:
    """Found by Hypothesis: one region still holds a version that a tombstone, now past its
    horizon, superseded; another holds a raw item adopted after the horizon. The join drops
    the expired tombstone and, with it, what it superseded; the old version's region then
    merges it back in (`decide`). The plan grows the target until every region agrees."""
    settings = settings_for("fields-union")
    live = put(None, "w0", region=REGIONS[0], at_ms=0, n=0, settings=settings)
    tombstone = put(live, None, region=REGIONS[0], at_ms=0, n=2, settings=settings)
    items: Items = {
        REGIONS[0]: item_of(live, settings),
        REGIONS[1]: {**KEY, "v": {"S": "raw-a"}},
        REGIONS[2]: item_of(tombstone, settings),
    }
    after = applied(items, planned(items, settings, now_ms=T0 + 4 * HORIZON_MS), settings)
    assert 1 == len({fingerprint(item) for item in after.values()})


# -- the engine's repair over in-memory tables ---------------------------------------------------


class MemoryReader:
    """verify's RegionReader over a MemoryTable (only what a keyed run uses)."""

    def __init__(self, table: Any) -> None:
        self.table = table

    def get_many(self, keys: Any) -> dict[str, dict[str, Any]]:
        from service.adapters.memory import key_string

        found = {key_string(k): self.table.get(k) for k in keys}
        return {name: item for name, item in found.items() if item is not None}

    def key_of(self, item: Any) -> dict[str, Any]:
        return {"pk": item["pk"]}


def test_a_repair_that_loses_a_race_to_a_newer_write_reads_again_and_keeps_that_write() -> None:
    """A divergent key (one region's copy in other bytes) is repaired while a newer stamped
    write lands in that region between the repair's read and its conditional write there.
    That write's condition fails: the repair reads again and writes a version that succeeds
    the newer write, so it is reported repaired only when every region holds it. (A repair
    that took the failed condition for success reported the key repaired, left the regions
    different, and a later reading said so.)"""
    from service.adapters.memory import MemoryTable
    from service.core.apply import precondition_for
    from service.engine.verify import Verifier

    version = put(None, "a", region=REGIONS[0], at_ms=0, n=1)
    newer = put(version, "raced", region=REGIONS[0], at_ms=10, n=2)
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    for region, table in tables.items():
        item = item_of(version)
        table.put_raw({**item, TTL_ATTR: {"N": "1"}} if region == REGIONS[0] else item)

    def racing_write(key: Any) -> None:
        tables[REGIONS[0]].before_write = None
        result = tables[REGIONS[0]].write(key, item_of(newer), precondition_for(held(version)))
        assert result.ok

    tables[REGIONS[0]].before_write = racing_write  # the one region the repair rewrites
    clock = [0.0]
    serial = itertools.count(100)
    with Verifier(
        settings=LWW,
        readers={r: MemoryReader(t) for r, t in tables.items()},  # type: ignore[misc]
        tables=tables,
        timeout=1.0,
        clock=lambda: clock[0],
        now_ms=lambda: T0 + 1_000,
        sleep=lambda seconds: clock.__setitem__(0, clock[0] + seconds + 0.01),
        new_id=lambda: write_id(next(serial)),
    ) as verifier:
        report = verifier.run(keys=[KEY], repair=True)
    assert ["repaired"] == [o.status for o in report.outcomes]
    first, *rest = (tables[r].get(KEY) for r in REGIONS)
    assert [first, first] == rest
    final = read_item(first, settings=LWW)
    assert isinstance(final, Stamped)
    assert tables[REGIONS[0]].before_write is None  # the race did land
    assert compare(final.version.meta, newer.meta) in (Order.AFTER, Order.EQUAL)
