"""Residency filters and redactions: configuration, the projection of a version per region, the
register of redacted attributes, and verify's view of them."""

from __future__ import annotations

from typing import Any

import pytest

from resolvers import LastWriterWins
from service.config import ConfigError, parse_config
from service.core.apply import ExpectAbsent, Skip, Write
from service.core.residency import decide_for, project, register_of, with_register
from service.core.residency_rules import Filter, Register, Residency
from service.core.stamp import stamp
from service.core.stored import Absent, Settings, Stamped, read_item
from service.core.verify import classify, plan_repair
from service.core.version import META_ATTR, Version, encode_item, encode_meta
from service.core.writes import Planned, Put, plan
from service.errors import ExpressionError

REGIONS = ("eu-west-1", "eu-central-1", "us-east-1")


def _doc(**extra: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {
        "table": {"name": "users", "partition_key": "pk"},
        "regions": [{"name": r} for r in REGIONS],
    }
    doc.update(extra)
    return doc


EU = {
    "name": "eu-residency",
    "when": {"attribute": "residency", "equals": "EU"},
    "regions": ["eu-west-1", "eu-central-1"],
}
SSN = {"attributes": ["ssn", "dob"], "regions": ["us-east-1"]}


# -- configuration ---------------------------------------------------------------------------


def test_the_issues_example_parses_into_the_tables_residency() -> None:
    """Top-level [[filters]] and [[redactions]] belong to the single [table]."""
    config = parse_config(_doc(filters=[EU], redactions=[SSN]))
    residency = config.settings().residency
    assert residency is not None
    assert (
        Filter("eu-residency", "residency", {"S": "EU"}, frozenset(REGIONS[:2])),
    ) == residency.filters
    assert frozenset({"ssn", "dob"}) == residency.redacted
    assert frozenset({"us-east-1"}) == residency.non_holders


def test_the_minimal_config_has_no_residency() -> None:
    assert parse_config(_doc()).settings().residency is None


def test_filters_may_also_be_given_inside_the_table() -> None:
    doc = _doc()
    doc["table"]["filters"] = [EU]
    assert parse_config(doc).table.filters[0].name == "eu-residency"


def test_equals_may_be_a_number_or_a_boolean() -> None:
    numbers = {**EU, "when": {"attribute": "zone", "equals": 7}}
    flags = {**EU, "name": "flag", "when": {"attribute": "private", "equals": True}}
    residency = parse_config(_doc(filters=[numbers, flags])).settings().residency
    assert residency is not None
    assert [{"N": "7"}, {"BOOL": True}] == [f.equals for f in residency.filters]


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        (
            {"filters": [{**EU, "regions": ["eu-west-1", "eu-west-3"]}]},
            "[[filters]] eu-residency names region eu-west-3, which is not in [[regions]]: "
            "did you mean eu-west-1?",
        ),
        ({"filters": [{**EU, "regions": []}]}, "List should have at least 1 item"),
        (
            {"redactions": [{"attributes": ["pk"], "regions": ["us-east-1"]}]},
            "[[redactions]] attribute 'pk' is a key attribute",
        ),
        (
            {"redactions": [{"attributes": ["_georep"], "regions": ["us-east-1"]}]},
            "[[redactions]] attribute '_georep' is georep's own metadata",
        ),
        (
            {"redactions": [{"attributes": ["ssn"], "regions": list(REGIONS)}]},
            "[[redactions]] name every region, so no region would hold ['ssn']",
        ),
        (
            {"redactions": [SSN, {"attributes": ["x"], "regions": ["eu-west-1"]}]},
            "every [[redactions]] entry must name the same regions",
        ),
        (
            {"filters": [{**EU, "when": {"attribute": "ssn", "equals": "1"}}], "redactions": [SSN]},
            "attribute 'ssn' is redacted",
        ),
        (
            {"filters": [EU], "redactions": [{"attributes": ["ssn"], "regions": ["eu-west-1"]}]},
            "keeps its items out of us-east-1, which hold the redacted attributes",
        ),
        ({"filters": [EU, EU]}, "[[filters]] name(s) ['eu-residency'] used twice"),
        ({"filters": [{**EU, "regons": []}]}, "did you mean regions?"),
    ],
)
def test_a_wrong_residency_rule_is_refused_in_one_line(extra: dict[str, Any], message: str) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(_doc(**extra))
    assert message in str(error.value)
    assert "\n" not in str(error.value)


def test_a_merge_rule_resolver_is_refused_with_filters() -> None:
    doc = _doc(filters=[EU])
    doc["table"].update(resolver="rules", resolver_options={"rule": "resolvers.fields:x"})
    with pytest.raises(ConfigError, match="need resolver 'lww' or 'version-counter'"):
        parse_config(doc)


def test_a_version_counter_attribute_is_refused_with_filters() -> None:
    doc = _doc(filters=[EU])
    doc["table"].update(resolver="version-counter", resolver_options={"attribute": "n"})
    with pytest.raises(ConfigError, match="without option attribute"):
        parse_config(doc)


# -- projection ------------------------------------------------------------------------------


SETTINGS = Settings(
    regions=REGIONS,
    key_attributes=("pk",),
    resolver=LastWriterWins(),
    residency=Residency(
        (Filter("eu", "residency", {"S": "EU"}, frozenset(REGIONS[:2])),),
        frozenset({"ssn"}),
        frozenset({"us-east-1"}),
    ),
)


def _write(
    region: str, data: dict[str, Any] | None, over: Version | None = None, *, at: int = 1 << 40
) -> Version:
    current = Stamped(over, encode_meta(over.meta)) if over is not None else Absent()
    version = stamp(
        current,
        data,
        region=region,
        now_hlc=at,
        write_id=f"01HF7YAT0{at % 10}G00000000000000{len(region) % 10}",
        settings=SETTINGS,
    )
    assert version is not None
    return version


def _item(pk: str = "u1", **attributes: str) -> dict[str, Any]:
    return {"pk": {"S": pk}, **{k: {"S": v} for k, v in attributes.items()}}


def test_a_matching_version_reaches_an_outside_region_as_a_withheld_marker() -> None:
    v = _write("eu-west-1", _item(residency="EU", name="Ann", ssn="1"))
    marker = project(v, destination="us-east-1", settings=SETTINGS)
    assert {"pk": {"S": "u1"}} == marker.data
    assert (True, True, None) == (marker.meta.deleted, marker.meta.withheld, marker.meta.redacted)
    assert v.meta.vv == marker.meta.vv
    assert META_ATTR in encode_item(marker, horizon_ms=1)
    assert "_georep_ttl" not in encode_item(marker, horizon_ms=1), "a marker is never collected"
    assert v.data == project(v, destination="eu-central-1", settings=SETTINGS).data


def test_a_matching_version_stays_whole_where_it_was_written() -> None:
    v = _write("us-east-1", _item(residency="EU", name="Ann"))
    assert v == project(v, destination="us-east-1", settings=SETTINGS)
    assert project(v, destination="eu-west-1", settings=SETTINGS).meta.withheld is False


def test_a_redacted_attribute_is_stripped_where_it_is_not_held() -> None:
    v = _write("eu-west-1", _item(residency="US", ssn="1"))
    assert v.meta.redacted is not None, "a write where ssn is held stamps its register"
    out = project(v, destination="us-east-1", settings=SETTINGS)
    assert _item(residency="US") == out.data
    assert out.meta.redacted is None
    assert read_item(encode_item(out, horizon_ms=1), settings=SETTINGS) == Stamped(
        out, encode_meta(out.meta)
    )


def test_a_put_where_ssn_is_not_held_carries_no_register_and_a_delete_empties_it() -> None:
    a = _write("eu-west-1", _item(residency="US", ssn="1"))
    v = _write(
        "us-east-1",
        _item(residency="US", name="x"),
        over=project(a, destination="us-east-1", settings=SETTINGS),
        at=(1 << 40) + 5,
    )
    assert (
        register_of(project(v, destination="eu-west-1", settings=SETTINGS), settings=SETTINGS)
        is None
    )
    gone = _write("us-east-1", None, over=v, at=(1 << 40) + 9)
    register = register_of(
        project(gone, destination="eu-west-1", settings=SETTINGS), settings=SETTINGS
    )
    assert register is not None and {} == register.values


def test_a_write_where_ssn_is_not_held_never_erases_it_where_it_is() -> None:
    """decide_for at a holder: the non-holder's later version wins the item, its ssn is the
    holder's own."""
    a = _write("eu-west-1", _item(residency="US", ssn="1"))
    v = _write(
        "us-east-1",
        _item(residency="US", name="x"),
        over=project(a, destination="us-east-1", settings=SETTINGS),
        at=(1 << 40) + 5,
    )
    decision = decide_for(
        Stamped(a, encode_meta(a.meta)), v, destination="eu-west-1", settings=SETTINGS
    )
    assert isinstance(decision, Write)
    assert {"S": "1"} == decision.version.data["ssn"]
    assert {"S": "x"} == decision.version.data["name"]
    assert decision.version.meta.write_id == v.meta.write_id


def test_a_stale_version_still_brings_its_later_register() -> None:
    """decide_for skips a stale version but writes its register when it is the later one."""
    b = _write("eu-central-1", _item(residency="US", ssn="2"), at=1 << 40)
    a = _write("eu-west-1", _item(residency="US", ssn="1"), at=(1 << 40) + 3)
    v = _write(
        "us-east-1",
        _item(residency="US"),
        over=project(a, destination="us-east-1", settings=SETTINGS),
        at=(1 << 40) + 5,
    )
    held = decide_for(
        Stamped(b, encode_meta(b.meta)), v, destination="eu-central-1", settings=SETTINGS
    )
    assert isinstance(held, Write) and {"S": "2"} == held.version.data["ssn"]
    after = decide_for(
        Stamped(held.version, encode_meta(held.version.meta)),
        a,
        destination="eu-central-1",
        settings=SETTINGS,
    )
    assert isinstance(after, Write)
    assert {"S": "1"} == after.version.data["ssn"]
    assert held.version.meta.vv == after.version.meta.vv
    again = decide_for(
        Stamped(after.version, encode_meta(after.version.meta)),
        a,
        destination="eu-central-1",
        settings=SETTINGS,
    )
    assert isinstance(again, Skip)


def test_without_rules_decide_for_is_decide() -> None:
    plain = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
    v = stamp(
        Absent(),
        _item(ssn="1"),
        region="us-east-1",
        now_hlc=1,
        write_id="01HF7YAT00G000000000000000",
        settings=plain,
    )
    assert v is not None
    assert Write(v, ExpectAbsent()) == decide_for(
        Absent(), v, destination="eu-west-1", settings=plain
    )


# -- verify ----------------------------------------------------------------------------------


def _held(version: Version) -> dict[str, Any]:
    return encode_item(version, horizon_ms=10**12)


def _everywhere(v: Version) -> dict[str, dict[str, Any] | None]:
    return {r: _held(project(v, destination=r, settings=SETTINGS)) for r in REGIONS}


def test_verify_counts_a_filtered_out_item_and_a_redacted_attribute_as_no_difference() -> None:
    v = _write("eu-west-1", _item(residency="EU", ssn="1"))
    assert "identical" == classify(_everywhere(v), settings=SETTINGS, now_ms=0).kind
    w = _write("eu-west-1", _item(residency="US", ssn="1"), over=v, at=(1 << 40) + 1)
    assert "identical" == classify(_everywhere(w), settings=SETTINGS, now_ms=0).kind


def test_verify_counts_a_marker_older_than_the_horizon_as_held_not_collected() -> None:
    """A withheld marker is never collected, so verify, long after, still finds the item
    identical (not pending behind a region that seems to hold nothing)."""
    v = _write("eu-west-1", _item(residency="EU"))
    later = (v.meta.hlc >> 16) + 30 * 24 * 3600 * 1000
    assert "identical" == classify(_everywhere(v), settings=SETTINGS, now_ms=later).kind


def test_verify_finds_a_filtered_item_where_it_must_not_be_and_repair_withholds_it() -> None:
    v = _write("eu-west-1", _item(residency="EU", ssn="1"))
    items = _everywhere(v)
    items["us-east-1"] = _held(project(v, destination="eu-central-1", settings=SETTINGS))
    assert "divergent" == classify(items, settings=SETTINGS, now_ms=0).kind
    plan = plan_repair(
        items,
        settings=SETTINGS,
        now_hlc=(1 << 40) + 7,
        write_ids={r: "01HF7YAT07G000000000000000" for r in REGIONS},
    )
    assert not isinstance(plan, str) and hasattr(plan, "writes")
    written = {r: w.version for r, w in plan.writes.items()}  # type: ignore[union-attr]
    assert set(written) <= {"us-east-1"}
    for region, version in written.items():
        items[region] = _held(version)
    assert "ssn" not in items["us-east-1"] and "residency" not in items["us-east-1"]
    assert "identical" == classify(items, settings=SETTINGS, now_ms=0).kind


def test_verify_finds_a_redacted_attribute_where_it_must_not_be_and_repair_strips_it() -> None:
    v = _write("eu-west-1", _item(residency="US", ssn="1"))
    items = _everywhere(v)
    items["us-east-1"] = _held(v)
    assert "divergent" == classify(items, settings=SETTINGS, now_ms=0).kind
    plan = plan_repair(
        items,
        settings=SETTINGS,
        now_hlc=(1 << 40) + 7,
        write_ids={r: "01HF7YAT07G000000000000000" for r in REGIONS},
    )
    writes = plan.writes  # type: ignore[union-attr]
    assert {"us-east-1"} == set(writes)
    assert "ssn" not in writes["us-east-1"].version.data
    items["us-east-1"] = _held(writes["us-east-1"].version)
    assert "identical" == classify(items, settings=SETTINGS, now_ms=0).kind


def test_verify_waits_for_holders_whose_redacted_attributes_differ() -> None:
    """One version, two registers among the regions holding ssn: pending, not divergent (the
    join is still being delivered)."""
    a = _write("eu-west-1", _item(residency="US", ssn="1"))
    items = _everywhere(a)
    later = Register((1 << 40) + 9, "01HF7YAT09G000000000000000", {"ssn": {"S": "2"}})
    items["eu-central-1"] = _held(with_register(a, later, settings=SETTINGS))
    assert ("pending", "redacted") == (
        classify(items, settings=SETTINGS, now_ms=0).kind,
        classify(items, settings=SETTINGS, now_ms=0).reason,
    )


def test_the_sdk_refuses_a_redacted_attribute_where_it_is_not_held() -> None:
    """A write through georep in us-east-1 that names ssn is refused, not stripped; the same
    write is planned in eu-west-1."""
    put = Put(_item(residency="US", ssn="1"))
    with pytest.raises(ExpressionError, match="ssn may not be written in us-east-1"):
        plan(
            Absent(),
            put,
            condition=None,
            region="us-east-1",
            now_hlc=1 << 40,
            write_id="01HF7YAT00G000000000000000",
            settings=SETTINGS,
            horizon_ms=1,
        )
    planned = plan(
        Absent(),
        put,
        condition=None,
        region="eu-west-1",
        now_hlc=1 << 40,
        write_id="01HF7YAT00G000000000000000",
        settings=SETTINGS,
        horizon_ms=1,
    )
    assert isinstance(planned, Planned) and {"S": "1"} == planned.version.data["ssn"]


# -- the wire format -------------------------------------------------------------------------


def test_the_register_and_the_marker_flag_round_trip_through_the_wire_format() -> None:
    from service.core.version import decode_meta

    v = _write("eu-west-1", _item(residency="EU", ssn="1"))
    marker = project(v, destination="us-east-1", settings=SETTINGS)
    for meta in (v.meta, marker.meta):
        assert meta == decode_meta(encode_meta(meta), regions=frozenset(REGIONS))
    assert "r" in encode_meta(v.meta)["M"] and "x" in encode_meta(marker.meta)["M"]
    assert "r" not in encode_meta(marker.meta)["M"] and "x" not in encode_meta(v.meta)["M"]


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("r", {"L": [{"N": "1"}, {"S": "01HF7YAT00G000000000000000"}]}, "must be \\[N, S, S\\]"),
        ("r", {"L": [{"N": "1"}, {"S": "not a ulid"}, {"S": "A" * 22}]}, "write id of 'r'"),
        ("r", {"L": [{"N": "1"}, {"S": "01HF7YAT00G000000000000000"}, {"S": "x"}]}, "digest"),
        ("x", {"BOOL": False}, "written only as true"),
    ],
)
def test_a_malformed_register_or_marker_flag_is_refused(
    field: str, value: dict[str, Any], message: str
) -> None:
    from service.core.version import decode_meta
    from service.errors import MetadataError

    attr = encode_meta(_write("eu-west-1", _item(ssn="1")).meta)
    attr["M"][field] = value
    with pytest.raises(MetadataError, match=message):
        decode_meta(attr, regions=frozenset(REGIONS))


# -- with many tables ([[tables]], each with its own rules) ----------------------------------


def _two_tables(users: dict[str, Any]) -> dict[str, Any]:
    return {
        "tables": [
            {"name": "users", "partition_key": "pk", **users},
            {"name": "orders", "partition_key": "id", "partition_key_type": "N"},
        ],
        "regions": [{"name": r} for r in REGIONS],
    }


def test_each_of_many_tables_has_its_own_filters_and_redactions() -> None:
    config = parse_config(_two_tables({"filters": [EU], "redactions": [SSN]}))
    users = config.for_table("users").settings().residency
    assert users is not None and "eu-residency" == users.filters[0].name
    assert frozenset({"ssn", "dob"}) == users.redacted
    assert config.for_table("orders").settings().residency is None


def test_a_table_of_many_whose_filter_names_an_unknown_region_is_refused() -> None:
    wrong = dict(EU, regions=["eu-west-1", "eu-south-9"])
    with pytest.raises(ConfigError, match="eu-south-9"):
        parse_config(_two_tables({"filters": [wrong]}))


def test_top_level_filters_with_many_tables_say_where_they_belong() -> None:
    doc = _two_tables({})
    doc["filters"] = [EU]
    with pytest.raises(ConfigError, match=r"with \[\[tables\]\], give each table its own"):
        parse_config(doc)
