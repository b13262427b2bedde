"""The SDK's decisions in the core: expressions (service/core/expressions), the application's
condition joined to georep's precondition (service/core/conditions), and a write planned over
what was read (service/core/writes). Pure; the same code runs over HTTP in
tests/integration/test_sdk.py and against moto in tests/integration/test_sdk_expressions.py.
"""

from __future__ import annotations

import re

import pytest
from hypothesis import given
from hypothesis import strategies as st

from resolvers import LastWriterWins, field_rules, union
from service.core.apply import ExpectAbsent, ExpectMeta, precondition_for
from service.core.conditions import condition_for, precondition_holds, with_application
from service.core.expressions import (
    apply_update,
    check_all_used,
    holds,
    parse_condition,
    parse_projection,
    parse_update,
    placeholders,
    project,
)
from service.core.stored import Absent, Settings, read_item
from service.core.version import encode_item
from service.core.writes import (
    ApplicationCondition,
    Change,
    Delete,
    Nothing,
    Planned,
    Put,
    Refused,
    Write,
    plan,
)
from service.errors import ExpressionError

REGIONS = ("eu-west-1", "us-east-1")
LWW = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
FIELDS = Settings(
    regions=REGIONS, key_attributes=("pk",), resolver=field_rules(tags=union()), horizon_ms=60_000
)
KEY = {"pk": {"S": "k"}}
T0 = 1_700_000_000_000 << 16
ids = iter(f"01J{n:023d}" for n in range(10_000))


def stamped(write: Write, *, over: dict | None = None, settings: Settings = LWW, at: int = T0):
    """``write`` planned over ``over`` (an item as stored), as the SDK plans it."""
    outcome = plan(
        read_item(over, settings=settings),
        write,
        condition=None,
        region="eu-west-1",
        now_hlc=at,
        write_id=next(ids),
        settings=settings,
        horizon_ms=settings.horizon_ms,
    )
    assert isinstance(outcome, Planned)
    return outcome


def condition(text: str, **values: dict) -> ApplicationCondition:
    vals = {f":{k}": v for k, v in values.items()} or None
    return ApplicationCondition(text, None, vals, parse_condition(text, values=vals))


# -- expressions ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("expression", "names", "values", "message"),
    [
        ("SET a = :x", None, None, "attribute value used in expression is not defined"),
        ("SET #a = :x", None, {":x": {"S": "1"}}, "attribute name used in the document path"),
        ("SET a = :x SET b = :x", None, {":x": {"S": "1"}}, 'The "SET" section can only'),
        ("SET a = :x, a.b = :x", None, {":x": {"S": "1"}}, "Two document paths overlap"),
        ("SET name = :x", None, {":x": {"S": "1"}}, "reserved keyword: name"),
        ("SET a = :x", None, {":x": {"SS": []}}, "invalid value"),
        ("SET a = :x +", None, {":x": {"N": "1"}}, "Syntax error"),
        ("SET a = size(b)", None, None, "size is not a function valid here"),
        ("", None, None, "can not be empty"),
    ],
)
def test_an_expression_dynamodb_refuses_is_refused_with_its_reason(
    expression: str, names: dict | None, values: dict | None, message: str
) -> None:
    with pytest.raises(ExpressionError, match=re.escape(message)):
        parse_update(expression, names=names, values=values)


def test_a_placeholder_no_expression_uses_is_refused_as_dynamodb_refuses_it() -> None:
    used = placeholders("#a = :x")
    check_all_used([used], names={"#a": "a"}, values={":x": {"S": "1"}})
    with pytest.raises(ExpressionError, match=re.escape("unused in expressions: keys: {:y}")):
        check_all_used([used], names={"#a": "a"}, values={":x": {"S": "1"}, ":y": {"N": "1"}})


def test_set_operands_are_read_from_the_item_as_it_was() -> None:
    """``SET a = b, b = a`` swaps; arithmetic, if_not_exists and list_append on the old item."""
    item = {**KEY, "a": {"N": "1"}, "b": {"N": "2"}, "l": {"L": [{"S": "x"}]}}
    update = parse_update(
        "SET a = b, b = a, c = if_not_exists(c, :zero) + :one, l = list_append(l, :more)",
        values={":zero": {"N": "0"}, ":one": {"N": "1"}, ":more": {"L": [{"S": "y"}]}},
    )
    expected = {
        **KEY,
        "a": {"N": "2"},
        "b": {"N": "1"},
        "c": {"N": "1"},
        "l": {"L": [{"S": "x"}, {"S": "y"}]},
    }
    assert expected == apply_update(item, update, keys=("pk",))
    assert {**KEY, "a": {"N": "1"}, "b": {"N": "2"}, "l": {"L": [{"S": "x"}]}} == item


def test_add_and_delete_join_and_take_out_set_elements_and_an_emptied_set_goes() -> None:
    item = {**KEY, "tags": {"SS": ["a", "b"]}, "nums": {"NS": ["1"]}}
    update = parse_update(
        "ADD tags :more, nums :two, tally :one DELETE gone :ab",
        values={
            ":more": {"SS": ["b", "c"]},
            ":two": {"NS": ["1.0", "2"]},
            ":one": {"N": "1"},
            ":ab": {"SS": ["a", "b"]},
        },
    )
    after = apply_update(item, update, keys=("pk",))
    expected = {
        **KEY,
        "tags": {"SS": ["a", "b", "c"]},
        "nums": {"NS": ["1", "2"]},
        "tally": {"N": "1"},
    }
    assert expected == after
    emptied = parse_update("DELETE tags :all", values={":all": {"SS": ["a", "b"]}})
    assert dict(KEY) == apply_update({**KEY, "tags": {"SS": ["a", "b"]}}, emptied, keys=("pk",))


@pytest.mark.parametrize(
    ("expression", "values", "message"),
    [
        ("SET a.b = :x", {":x": {"N": "1"}}, "document path provided in the update expression"),
        ("SET n = s + :x", {":x": {"N": "1"}}, "operand type: S"),
        ("SET n = nothing_here", None, "refers to an attribute that does not exist"),
        ("ADD s :x", {":x": {"N": "1"}}, "incorrect data type"),
        ("SET pk = :x", {":x": {"S": "1"}}, "Cannot update attribute pk"),
        ("SET n = :x + :x", {":x": {"N": "9" * 38}}, "more than 38 significant digits"),
        ("SET n = :x + :x", {":x": {"N": "9e125"}}, "magnitude larger than supported range"),
    ],
)
def test_an_update_dynamodb_cannot_apply_to_the_item_is_refused(
    expression: str, values: dict | None, message: str
) -> None:
    item = {**KEY, "s": {"S": "text"}}
    with pytest.raises(ExpressionError, match=re.escape(message)):
        apply_update(item, parse_update(expression, values=values), keys=("pk",))


@pytest.mark.parametrize(
    ("expression", "expected"),
    [
        ("n <> :one", True),  # an absent attribute is not equal to anything
        ("n = :one", False),
        ("attribute_not_exists(n) AND NOT attribute_exists(m.x)", True),
        ("s BETWEEN :a AND :z", True),
        ("size(s) = :four AND begins_with(s, :t) AND contains(l, :one)", True),
        ("attribute_type(l, :list) OR n = :one", True),
        ("s < :one", False),  # values of two types are never ordered
    ],
)
def test_a_condition_is_judged_as_dynamodb_judges_it(expression: str, expected: bool) -> None:
    values = {
        ":one": {"N": "1"},
        ":a": {"S": "a"},
        ":z": {"S": "z"},
        ":four": {"N": "4"},
        ":t": {"S": "t"},
        ":list": {"S": "L"},
    }
    used = {k: v for k, v in values.items() if k in expression}
    item = {**KEY, "s": {"S": "text"}, "l": {"L": [{"N": "1.0"}]}, "m": {"M": {}}}
    assert expected == holds(parse_condition(expression, values=used or None), item)


def test_a_projection_keeps_the_named_parts_in_their_places() -> None:
    item = {**KEY, "m": {"M": {"a": {"N": "1"}, "b": {"N": "2"}}}, "l": {"L": [{"S": "x"}] * 3}}
    paths = parse_projection("l[2], m.b, l[0], nothing_here, #k", names={"#k": "pk"})
    expected = {"l": {"L": [{"S": "x"}, {"S": "x"}]}, "m": {"M": {"b": {"N": "2"}}}, **KEY}
    assert expected == project(item, paths)


# -- the application's condition beside georep's ------------------------------------------

placeholder = st.from_regex(r"[A-Za-z0-9_]{1,6}", fullmatch=True)


@given(names=st.lists(placeholder, min_size=1, max_size=4, unique=True))
def test_the_applications_placeholders_never_collide_with_georeps(names: list[str]) -> None:
    """Whatever placeholders the application picks (georep's own ``#g``, ``:g``, ``#pk``
    included), the joined request keeps every one of both, each meaning what it meant."""
    expression = " AND ".join(f"#{n} = :{n}" for n in names)
    app_names = {f"#{n}": f"attr_{n}" for n in names}
    app_values = {f":{n}": {"S": n} for n in names}
    for precondition in (ExpectAbsent(), ExpectMeta(None), ExpectMeta({"M": {}})):
        own = condition_for(precondition, partition_key="pk")
        joined = with_application(own, expression=expression, names=app_names, values=app_values)
        names_out = joined["ExpressionAttributeNames"]
        values_out = joined.get("ExpressionAttributeValues", {})
        assert len(own["ExpressionAttributeNames"]) + len(app_names) == len(names_out)
        assert len(own.get("ExpressionAttributeValues", {})) + len(app_values) == len(values_out)
        parsed = parse_condition(joined["ConditionExpression"], names=names_out, values=values_out)
        item = {"pk": {"S": "k"}, **{f"attr_{n}": {"S": n} for n in names}}
        expected = precondition_holds(precondition, item, partition_key="pk")
        assert expected == holds(parsed, item)


def test_georeps_precondition_is_judged_on_the_item_a_failed_write_hands_back() -> None:
    """What tells the SDK that the application's condition failed (georep's part held on the
    item DynamoDB judged) rather than another write having got there first."""
    item = encode_item(stamped(Put({**KEY, "n": {"N": "1"}})).version, horizon_ms=1)
    read = precondition_for(read_item(item, settings=LWW))
    assert precondition_holds(read, item, partition_key="pk")
    changed = encode_item(stamped(Put({**KEY, "n": {"N": "2"}}), over=item).version, horizon_ms=1)
    assert not precondition_holds(read, changed, partition_key="pk")
    assert not precondition_holds(read, None, partition_key="pk")
    assert precondition_holds(ExpectAbsent(), None, partition_key="pk")


# -- planned writes --------------------------------------------------------------------------


def test_an_application_condition_that_fails_on_what_was_read_plans_no_write() -> None:
    item = encode_item(stamped(Put({**KEY, "n": {"N": "1"}})).version, horizon_ms=1)
    outcome = plan(
        read_item(item, settings=LWW),
        Change(KEY, parse_update("SET n = :two", values={":two": {"N": "2"}})),
        condition=condition("n > :five", five={"N": "5"}),
        region="eu-west-1",
        now_hlc=T0 + 1,
        write_id=next(ids),
        settings=LWW,
        horizon_ms=1,
    )
    assert Refused({**KEY, "n": {"N": "1"}}) == outcome


def test_a_tombstone_reads_as_no_item_to_the_applications_condition() -> None:
    """DynamoDB would judge ``attribute_not_exists(pk)`` on the tombstone (which has a pk);
    the application sees no item, so the core judges it and sends georep's condition only."""
    live = encode_item(stamped(Put({**KEY, "n": {"N": "1"}})).version, horizon_ms=1)
    tombstone = encode_item(stamped(Delete(KEY), over=live, at=T0 + 5).version, horizon_ms=1)
    current = read_item(tombstone, settings=LWW)
    common = {
        "region": "eu-west-1",
        "write_id": next(ids),
        "settings": LWW,
        "horizon_ms": 1,
        "now_hlc": T0 + 9,
    }
    created = plan(
        current,
        Put({**KEY, "n": {"N": "2"}}),
        condition=condition("attribute_not_exists(pk)"),
        **common,
    )
    assert isinstance(created, Planned)
    assert created.request == condition_for(precondition_for(current), partition_key="pk")
    refused = plan(current, Delete(KEY), condition=condition("attribute_exists(pk)"), **common)
    assert Refused(None) == refused
    assert Nothing() == plan(current, Delete(KEY), condition=None, **common)


def test_a_condition_on_an_item_the_application_sees_is_also_sent_to_dynamodb() -> None:
    live = encode_item(stamped(Put({**KEY, "n": {"N": "1"}})).version, horizon_ms=1)
    outcome = plan(
        read_item(live, settings=LWW),
        Delete(KEY),
        condition=condition("n = :one", one={"N": "1"}),
        region="eu-west-1",
        now_hlc=T0 + 3,
        write_id=next(ids),
        settings=LWW,
        horizon_ms=1,
    )
    assert isinstance(outcome, Planned)
    assert "(#g = :g) AND (n = :app_one)" == outcome.request["ConditionExpression"]
    assert {":g", ":app_one"} == set(outcome.request["ExpressionAttributeValues"])


def test_an_update_gives_new_field_stamps_to_the_attributes_it_changed_only() -> None:
    """Under field rules the resolver merges attribute by attribute on their stamps: an
    update written whole must not claim the attributes it left alone, or a concurrent write
    of one of them elsewhere would lose to it."""
    first = stamped(
        Put({**KEY, "a": {"S": "1"}, "b": {"S": "1"}, "tags": {"SS": ["x"]}}),
        settings=FIELDS,
    )
    item = encode_item(first.version, horizon_ms=1)
    update = parse_update(
        "SET a = :two, b = :same ADD tags :y",
        values={":two": {"S": "2"}, ":same": {"S": "1"}, ":y": {"SS": ["y"]}},
    )
    second = stamped(Change(KEY, update), over=item, settings=FIELDS, at=T0 + 100)
    before, after = first.version.meta.field_map(), second.version.meta.field_map()
    new = (second.version.meta.hlc, "eu-west-1")
    assert new == after["a"] and new == after["tags"]
    assert before.get("b", (first.version.meta.hlc, "eu-west-1")) == after["b"]
    assert {**KEY, "a": {"S": "2"}, "b": {"S": "1"}, "tags": {"SS": ["x", "y"]}} == second.new


def test_an_update_of_an_absent_item_starts_from_its_key() -> None:
    update = parse_update(
        "SET n = if_not_exists(n, :zero) + :one", values={":zero": {"N": "0"}, ":one": {"N": "1"}}
    )
    outcome = stamped(Change(KEY, update))
    assert {**KEY, "n": {"N": "1"}} == outcome.new
    assert outcome.old is None
    assert condition_for(ExpectAbsent(), partition_key="pk") == outcome.request


def test_an_update_may_not_touch_georeps_metadata_or_miss_the_key() -> None:
    with pytest.raises(ExpressionError, match="_georep is georep's metadata"):
        stamped(Change(KEY, parse_update("REMOVE #g", names={"#g": "_georep"})))
    with pytest.raises(ExpressionError, match="key element does not match the schema"):
        stamped(Change({"id": {"S": "k"}}, parse_update("REMOVE a")))
    assert isinstance(read_item(None, settings=LWW), Absent)
