"""Residency filters and redaction under every schedule the replication machine can draw.

The machine is the replication machine (tests/property/machine.py: the product's Replicator,
a hostile network, crashes, local writes racing replication) with a residency filter and a
redaction configured, and writers that write ``res`` (``EU`` or ``US``: the filter's
attribute) and, where it is held, a unique ``ssn`` (the redacted attribute), through the SDK
or raw (adopted by the consumers), also racing the consumers' writes.

Its own account (`Residency` below, like truth.py: plain item fields only, never the
product's rules) knows each write's region, whether it matched the filter, and the ``ssn`` it
read and wrote. Invariants, after every step:

* an item matching the filter is held, outside the filter's regions, only where it was written;
* no region the redaction names ever holds the redacted attribute.

At quiescence: every region holds one version (the same causal metadata); its visible
attributes are identical everywhere they may be (and a region outside the filter reads no item
where the final version matches it and was written elsewhere); the redacted attribute is
identical among the regions that hold it; the final ``ssn`` was written by a write in a
holding region and no acknowledged write replaced it (a put that read it, or a delete that
read its write's item); and truth.py's account of ``val`` holds.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar

import pytest
from hypothesis import strategies as st
from hypothesis.stateful import initialize, invariant, rule

from resolvers import LastWriterWins, VersionCounter
from service.core.residency_rules import Filter, Residency
from service.core.stored import Settings
from tests.property.machine import MAX_RACES, RACES, Race, ReplicationMachine, key_of
from tests.property.truth import Truth

FILTERED = "EU"
RESIDENCY_RACES = RACES


@dataclass(frozen=True)
class Layout:
    """Which regions a run has, which the filter keeps its items in (empty: no filter) and
    which never receive the redacted attribute (empty: no redaction)."""

    regions: int
    inside: frozenset[str]
    non_holders: frozenset[str]


LAYOUTS = (
    # The example: two EU regions, one outside that never receives ssn.
    Layout(3, frozenset({"r0", "r1"}), frozenset({"r2"})),
    # Three holders (concurrent holder writes meet a non-holder's write), one outside.
    Layout(4, frozenset({"r0", "r1", "r2"}), frozenset({"r3"})),
    # Two outside regions, neither holding ssn.
    Layout(4, frozenset({"r0", "r1"}), frozenset({"r2", "r3"})),
    # Each alone.
    Layout(3, frozenset(), frozenset({"r2"})),
    Layout(3, frozenset({"r0", "r1"}), frozenset()),
)


@dataclass
class Account:
    """The machine's own account of residency: per unique ``val``, the write's region and
    whether it matched; per key, every write's ``ssn`` (written, and read)."""

    region_of: dict[str, str] = field(default_factory=dict)
    matched: dict[str, bool] = field(default_factory=dict)
    # key -> (region, kind, val read, ssn read, ssn written) of every acknowledged write
    writes: dict[str, list[tuple[str, str, str | None, str | None, str | None]]] = field(
        default_factory=dict
    )


def _s(item: dict[str, Any] | None, name: str) -> str | None:
    if item is None:
        return None
    value = item.get(name)
    return value.get("S") if isinstance(value, dict) else None


def _deleted(item: dict[str, Any] | None) -> bool:
    return bool(
        item is not None and item.get("_georep", {}).get("M", {}).get("d", {}).get("BOOL", False)
    )


def _visible(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an application sees of an item, without the redacted attribute (the machine's own
    reading: a tombstone or a withheld marker, flagged deleted, reads as no item)."""
    if item is None or _deleted(item):
        return None
    return {k: v for k, v in item.items() if not k.startswith("_georep") and k != "ssn"}


def _identity(item: dict[str, Any]) -> tuple[Any, ...]:
    """The version an item holds: its causal metadata, whatever was projected."""
    meta = item["_georep"]["M"]
    return tuple(repr(meta[k]) for k in "vowtn")


class ResidencyMachine(ReplicationMachine):
    resolver: ClassVar[Any] = LastWriterWins()
    copies = False
    wide_items = False
    # Its account of redacted attributes (`_account`) takes each raw write to have read what
    # it replaced: a read-modify-write across other writes is left out, as copies are.
    stale_reads = False

    @initialize(
        layout=st.sampled_from(LAYOUTS),
        nkeys=st.integers(2, 3),
        skews=st.lists(st.sampled_from([0, 0, 0, 1, -1, 2, -250, 900]), min_size=5, max_size=5),
    )
    def setup(self, layout: Layout, nkeys: int, skews: list[int]) -> None:  # type: ignore[override]
        self.layout = layout
        self.account = Account()
        self.next_res = FILTERED
        self.next_ssn = True
        self.start(layout.regions, nkeys, skews)

    def make_settings(self) -> Settings:
        filters = ()
        if self.layout.inside:
            filters = (Filter("eu", "res", {"S": FILTERED}, self.layout.inside),)
        redacted = frozenset({"ssn"}) if self.layout.non_holders else frozenset()
        return Settings(
            regions=tuple(self.regions),
            key_attributes=("pk",),
            resolver=self.resolver,
            horizon_ms=self.horizon_ms,
            residency=Residency(filters, redacted, self.layout.non_holders),
        )

    def holds(self, region: str) -> bool:
        return bool(self.layout.non_holders) and region not in self.layout.non_holders

    def outside(self, region: str) -> bool:
        return bool(self.layout.inside) and region not in self.layout.inside

    # -- writers -------------------------------------------------------------------------------

    @rule(
        data=st.data(),
        res=st.sampled_from([FILTERED, "US"]),
        ssn=st.sampled_from([True, True, False]),
    )
    def sdk_put(self, data: st.DataObject, res: str, ssn: bool) -> None:  # type: ignore[override]
        self.next_res, self.next_ssn = res, ssn
        self.do_sdk_put(*self._pick(data))

    @rule(data=st.data(), res=st.sampled_from([FILTERED, "US"]), copy_meta=st.booleans())
    def raw_put(self, data: st.DataObject, res: str, copy_meta: bool) -> None:  # type: ignore[override]
        """A plain boto3 PutItem (blind, or copying ``_georep`` back), ssn only where held."""
        self.next_res, self.next_ssn = res, True
        self.do_raw_put(*self._pick(data), copy_meta=copy_meta)

    def do_raw_put(
        self, region: str, key: str, *, copy_meta: bool = False, wide: bool = False
    ) -> None:
        replaced = self.tables[region].get({"pk": {"S": key}})
        self.writing = region
        super().do_raw_put(region, key, copy_meta=copy_meta, wide=wide)
        written = self.truth.writes[key][-1]
        assert written.value is not None
        self.account.region_of[written.value] = region
        self.account.matched[written.value] = self.next_res == FILTERED
        ssn = f"s{written.value}" if self.holds(region) else None
        self._account(key, region, "put", replaced, ssn, raced=self.racing)

    def do_raw_delete(self, region: str, key: str) -> None:
        replaced = self.tables[region].get({"pk": {"S": key}})
        super().do_raw_delete(region, key)
        if replaced is not None:
            self._account(key, region, "delete", replaced, None, raced=self.racing)

    def _account(
        self,
        key: str,
        region: str,
        kind: str,
        replaced: dict[str, Any] | None,
        ssn: str | None,
        *,
        raced: bool = False,
    ) -> None:
        """An acknowledged write in the machine's own account: what it read (nothing over a
        raw item not adopted yet, as truth.py: the product starts a fresh history there; nor
        for a raw write racing a consumer, whose data replication may overwrite) and wrote."""
        blind = raced or (replaced is not None and Truth._unadopted(replaced))
        self.account.writes.setdefault(key, []).append(
            (
                region,
                kind,
                None if blind else _s(_visible(replaced), "val"),
                None if blind or _deleted(replaced) else _s(replaced, "ssn"),
                ssn,
            )
        )

    def new_data(self, key: str, value: str, current: dict[str, Any] | None) -> dict[str, Any]:
        region = self.writing
        data = {"pk": {"S": key}, "val": {"S": value}, "res": {"S": self.next_res}}
        if self.holds(region) and self.next_ssn:
            data["ssn"] = {"S": f"s{value}"}
        return data

    def _sdk_write(
        self, region: str, key: str, *, delete: bool, wide: bool = False, at_once: bool = False
    ) -> None:
        replaced = self.tables[region].get({"pk": {"S": key}})
        self.writing = region
        before = len(self.versions[key])
        super()._sdk_write(region, key, delete=delete, wide=wide, at_once=at_once)
        if len(self.versions[key]) == before:
            return  # a delete of nothing
        written = self.versions[key][-1].data
        val = _s(written, "val")
        if val is not None:
            self.account.region_of[val] = region
            self.account.matched[val] = _s(written, "res") == FILTERED
        ssn = _s(written, "ssn") if not delete else None
        self._account(key, region, "delete" if delete else "put", replaced, ssn)

    def _drawn(self, data: st.DataObject) -> Callable[[str, str], Race | None]:
        """Local writes racing replication, each with its filter attribute drawn."""
        budget = [MAX_RACES]

        def race(region: str, key: str) -> Race | None:
            kind = data.draw(st.sampled_from(RESIDENCY_RACES))
            if kind == "unreachable":
                return lambda: self._unreachable(region)
            if kind == "none" or not budget[0]:
                return None
            budget[0] -= 1
            if kind == "sdk_delete":
                return lambda: self.do_sdk_delete(region, key)
            if kind == "raw_delete":
                return lambda: self.do_raw_delete(region, key)
            res = data.draw(st.sampled_from([FILTERED, "US"]))

            def put() -> None:
                self.next_res, self.next_ssn = res, True
                if kind == "sdk_put":
                    self.do_sdk_put(region, key)
                else:
                    self.do_raw_put(region, key, copy_meta=kind == "raw_rmw")

            return put

        return race

    # -- invariants ---------------------------------------------------------------------------

    @invariant()
    def metadata_is_valid_and_never_moves_backwards(self) -> None:
        super().metadata_is_valid_and_never_moves_backwards()
        if not hasattr(self, "tables"):
            return
        for region, table in self.tables.items():
            for key in self.keys:
                item = table.items.get(key_of(key))
                if item is None:
                    continue
                if region in self.layout.non_holders:
                    assert "ssn" not in item, f"{region} holds redacted ssn of {key}: {item}"
                val = _s(item, "val")
                if self.outside(region) and val is not None:
                    where = self.account.region_of.get(val)
                    assert not self.account.matched.get(val) or where == region, (
                        f"{region} (outside the filter) holds {key}'s {FILTERED} item "
                        f"written in {where}: {item}"
                    )
                if self.outside(region) and _s(item, "res") == FILTERED:
                    assert val is not None and self.account.region_of.get(val) == region, item

    def teardown(self) -> None:
        if not hasattr(self, "tables"):
            return
        self.settle()
        for key in self.keys:
            images = {r: t.get({"pk": {"S": key}}) for r, t in self.tables.items()}
            held = [r for r, item in images.items() if item is not None]
            assert not held or len(held) == len(self.regions), f"{key}: held only in {held}"
            if not held:
                continue
            identities = {_identity(item) for item in images.values() if item is not None}
            assert len(identities) == 1, f"{key}: regions hold different versions: {images}"
            final = images["r0"]  # inside the filter, holding ssn, in every layout
            shown = _visible(final)
            val = _s(shown, "val")
            for region, item in images.items():
                kept_out = (
                    shown is not None
                    and self.outside(region)
                    and self.account.matched.get(val or "", False)
                    and self.account.region_of.get(val or "") != region
                )
                expected = None if kept_out else shown
                assert expected == _visible(item), (
                    f"{key}: {region} shows {_visible(item)}, expected {expected}"
                )
            ssns = {r: _s(item, "ssn") for r, item in images.items() if self.holds(r)}
            assert len(set(ssns.values())) <= 1, f"{key}: holders differ on ssn: {ssns}"
            self._ssn_not_lost(key, _s(final, "ssn"), deleted=_deleted(final))
            self.truth.check(key, final, merge_rules=False)
            expected_version = self.expected(key)
            assert expected_version is not None
            assert expected_version.meta.lww_key == (
                int(final["_georep"]["M"]["t"]["N"]),
                final["_georep"]["M"]["o"]["S"],
                final["_georep"]["M"]["w"]["S"],
            )

    def _ssn_not_lost(self, key: str, ssn: str | None, *, deleted: bool) -> None:
        """The final ``ssn`` is one a write in a holding region wrote, and no acknowledged
        write replaced it: a put that read it, or a delete that read the item its write
        made (whose ``val`` it shows). No ``ssn`` at all: a delete or a put where it is held
        removed it."""
        writes = self.account.writes.get(key, [])
        if ssn is None:
            # Only a delete, or a put in a holding region without ssn, removes it: a write
            # made where it is not held never does.
            if any(w[4] is not None for w in writes):
                assert any(
                    kind == "delete" or (kind == "put" and written is None and self.holds(region))
                    for region, kind, _val, _ssn, written in writes
                ), f"{key}: ssn is gone, yet only writes where it is not held removed it: {writes}"
            return
        sources = [w for w in writes if w[4] == ssn]
        assert len(sources) == 1 and self.holds(sources[0][0]), f"{key}: ssn {ssn} is no write's"
        wrote_val = ssn[1:]
        for region, kind, val_read, ssn_read, _written in writes:
            assert not (kind == "put" and ssn_read == ssn and self.holds(region)), (
                f"{key}: ssn {ssn} came back although a put in {region} read and replaced it"
            )
            assert not (kind == "delete" and val_read == wrote_val), (
                f"{key}: ssn {ssn} survived a delete in {region} that read its write"
            )


class ResidencyVersionCounterMachine(ResidencyMachine):
    resolver = VersionCounter()


TestResidencyLastWriterWins = ResidencyMachine.TestCase
TestResidencyVersionCounter = ResidencyVersionCounterMachine.TestCase


def _machine(machine: type[ResidencyMachine], layout: Layout, skews: list[int]) -> ResidencyMachine:
    m = machine()
    m.setup(layout=layout, nkeys=2, skews=skews)
    return m


def _put(m: ResidencyMachine, region: str, key: str, *, res: str = "US", ssn: bool = True) -> None:
    m.next_res, m.next_ssn = res, ssn
    m.do_sdk_put(region, key)


def _check(m: ResidencyMachine) -> None:
    m.metadata_is_valid_and_never_moves_backwards()
    m.teardown()


def test_a_write_where_ssn_is_not_held_over_one_holders_version_keeps_holders_equal() -> None:
    """The issue's pitfall: holder r0 has a (ssn sA), holder r1 a concurrent b (ssn sB, an
    earlier clock); r2, which never holds ssn, writes v over a. r0 takes v over a, r1 merges v
    with b, and a reaches r1 only after v (stale there by its version vector): r1 must still
    join a's ssn, or r0 and r1 end with different ssn."""
    m = _machine(ResidencyMachine, LAYOUTS[3], [0] * 5)
    _put(m, "r1", "k0")  # b
    m.now += 5
    _put(m, "r0", "k0")  # a, later
    m._poll("r0")
    m.do_deliver("r0", "r2", "k0")  # a reaches r2 only (projected: no ssn)
    _put(m, "r2", "k0")  # v, over a
    m._poll("r2", limit=10)
    m.do_deliver("r2", "r0", "k0")  # the echo of a (dropped)
    m.do_deliver("r2", "r0", "k0")  # v after a at r0
    m.do_deliver("r2", "r1", "k0")  # v concurrent with b at r1
    m.do_deliver("r0", "r1", "k0")  # a: stale at r1, but its ssn is the latest
    ssn = {r: _s(m.tables[r].get({"pk": {"S": "k0"}}), "ssn") for r in ("r0", "r1")}
    assert {"r0": "sw3", "r1": "sw3"} == ssn
    _check(m)


def test_under_version_counters_a_holders_write_sets_ssn_above_the_register_it_read() -> None:
    """Under version counters an item's winner (most updates) can be older by the clock than
    its ssn's register. r0 writes three times, r1 (clock 900 ms ahead) once: every region holds
    r0's data and r1's ssn. r2, clock behind, then writes a new ssn over it; its clock must be
    above the register it read (`register_floor`), or r1's ssn comes back over the write that
    replaced it."""
    m = _machine(ResidencyVersionCounterMachine, LAYOUTS[1], [0, 900, 0, 0, 0])
    for _ in range(3):
        _put(m, "r0", "k0")
    _put(m, "r1", "k0")
    m.drain()
    _put(m, "r2", "k0")
    _check(m)


@pytest.mark.parametrize("machine", [ResidencyMachine, ResidencyVersionCounterMachine])
def test_an_item_moves_out_of_and_back_into_a_filter(machine: type[ResidencyMachine]) -> None:
    """An EU item written in r0 reaches r1 but leaves a withheld marker in r2; a US version
    written in r2 over the marker replaces it everywhere; an EU version written in r1 then
    withholds it from r2 again (the copy left behind is a marker, read as no item)."""
    m = _machine(machine, LAYOUTS[0], [0] * 5)
    _put(m, "r0", "k0", res=FILTERED)
    m.drain()
    assert {"BOOL": True} == m.tables["r2"].get({"pk": {"S": "k0"}})["_georep"]["M"].get("x")
    _put(m, "r2", "k0", res="US", ssn=False)
    m.drain()
    assert _s(m.tables["r2"].get({"pk": {"S": "k0"}}), "res") == "US"
    _put(m, "r1", "k0", res=FILTERED)
    m.drain()
    assert _visible(m.tables["r2"].get({"pk": {"S": "k0"}})) is None
    _check(m)


def test_a_raw_write_of_ssn_where_it_is_not_held_is_adopted_without_it() -> None:
    """An application writes ssn with plain boto3 in r2, which must not hold it: the adoption,
    applied in r2 itself, removes it, and no region receives it."""
    m = _machine(ResidencyMachine, LAYOUTS[3], [0] * 5)
    _put(m, "r0", "k0")
    m.drain()
    table = m.tables["r2"]
    item = {"pk": {"S": "k0"}, "val": {"S": "raw"}, "res": {"S": "US"}, "ssn": {"S": "leak"}}
    m._raw_write("r2", lambda: table.put_raw(item))
    m.drain()
    held = {r: m.tables[r].get({"pk": {"S": "k0"}}) for r in m.regions}
    assert "ssn" not in held["r2"]
    assert {"S": "raw"} == held["r2"]["val"] == held["r0"]["val"] == held["r1"]["val"]
    assert {"S": "sw1"} == held["r0"]["ssn"] == held["r1"]["ssn"], "a raw put there erases none"


def test_a_delete_coalesced_away_still_clears_ssn_at_a_holder() -> None:
    """Found by the deep run of seed 3048069373 (session 30): r3, which never holds ssn,
    deletes an item whose ssn r0-r2 hold, then writes it again (raw, no ssn). r0 receives the
    delete alone; r1 and r2 receive both in one batch, and their lanes coalesced the delete
    into the write that succeeds it. A version a destination never receives never joins its
    redaction register there: r1 and r2 kept the deleted ssn, r0 had cleared it, and the holders
    differed for good. Fix: no coalescing under residency rules."""
    m = _machine(ResidencyMachine, LAYOUTS[1], [0] * 5)
    _put(m, "r1", "k0")
    m.drain()
    m.now += 5
    m.do_sdk_delete("r3", "k0")
    m.now += 5
    m.next_res, m.next_ssn = "US", False
    m.do_raw_put("r3", "k0")
    m._poll("r3", limit=5)
    m.do_deliver("r3", "r0", "k0")  # the delete, at r0 only
    m.deliver_batch("r3", m.inflight["r3"]["k0"][:2])  # the delete and the write, everywhere
    ssn = {r: _s(m.tables[r].get({"pk": {"S": "k0"}}), "ssn") for r in ("r0", "r1", "r2")}
    assert 1 == len(set(ssn.values())), ssn
    _check(m)
