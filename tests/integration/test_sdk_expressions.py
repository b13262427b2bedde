"""The core's expression evaluator against the moto server: the same UpdateItem (and the same
ConditionExpression) on a plain table through boto3, and applied by the core to the same item.

A differential test (STYLE 2): the evaluator the SDK writes with is checked against a real
DynamoDB implementation over HTTP, on random expressions over a small item with every kind
of container. Where moto deviates from DynamoDB (an update through a scalar is silently
ignored; BETWEEN with bounds out of order is false instead of refused; ordering comparisons
of mismatched types, ``size`` of a number and some malformed arithmetic answer HTTP 500), the
generators stay away, and the deviation is named where it is avoided.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError
from hypothesis import assume, example, given, settings
from hypothesis import strategies as st

from service.adapters.backends import EmbeddedBackend, MotoServer
from service.core.expressions import apply_update, holds, parse_condition, parse_update
from service.core.values import canonical
from service.errors import ExpressionError

pytestmark = pytest.mark.integration

TABLE = "plain"
KEY = {"pk": {"S": "k"}}


@pytest.fixture(scope="module")
def plain(moto_server: MotoServer) -> Iterator[Any]:
    """A plain table (no georep) on the module's moto server, reused by every example."""
    view: EmbeddedBackend = moto_server.isolated().start()
    try:
        # NOTE: no retries: moto answers some invalid expressions with HTTP 500, which the
        # backend's clients retry with backoff for seconds.
        client = boto3.session.Session().client(
            "dynamodb",
            region_name="eu-west-1",
            endpoint_url=view.endpoint_url,
            config=Config(retries={"mode": "standard", "total_max_attempts": 1}),
            **view.credentials_for("eu-west-1"),
        )
        view._prepare_client(client)  # this view's moto account
        client.create_table(
            TableName=TABLE,
            KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
        yield client
    finally:
        view.stop()


def n(x: int) -> dict[str, str]:
    return {"N": str(x)}


small = st.integers(-5, 5)
strings = st.sampled_from(["a", "b", "c"])
numbers = small.map(n)
string_sets = st.sets(strings, min_size=1, max_size=3).map(lambda s: {"SS": sorted(s)})
number_sets = st.sets(small, min_size=1, max_size=3).map(lambda s: {"NS": [str(x) for x in s]})
scalars = st.one_of(numbers, strings.map(lambda s: {"S": s}), st.just({"BOOL": True}))
lists = st.lists(scalars, max_size=3).map(lambda xs: {"L": xs})
# NOTE: moto compares a number and a boolean as Python does (1 == True); DynamoDB never
# finds two values of different types equal. Conditions are tested without booleans.
plain_scalars = st.one_of(numbers, strings.map(lambda s: {"S": s}))
plain_lists = st.lists(plain_scalars, max_size=3).map(lambda xs: {"L": xs})


@st.composite
def items(draw: st.DrawFn, *, booleans: bool = True) -> dict[str, Any] | None:
    """A small item, or None (UpdateItem then creates it). Each name keeps one type, so no
    generated path runs through a scalar (moto ignores such an update; DynamoDB refuses it)."""
    if draw(st.booleans()) and draw(st.booleans()):
        return None
    item: dict[str, Any] = dict(KEY)
    optional = {
        "n": numbers,
        "s": strings.map(lambda s: {"S": s}),
        "ss": string_sets,
        "ns": number_sets,
        "l": lists if booleans else plain_lists,
        "m": st.fixed_dictionaries(
            {"x": numbers, "l": lists if booleans else plain_lists},
            optional={"deep": st.fixed_dictionaries({"z": numbers}).map(lambda d: {"M": d})},
        ).map(lambda d: {"M": d}),
    }
    for name, strategy in optional.items():
        if draw(st.integers(0, 3)) > 0:
            item[name] = draw(strategy)
    return item


def parts(path: str) -> list[str]:
    return re.findall(r"[A-Za-z_]+|\[\d+\]", path)


def overlap(one: list[str], two: list[str]) -> bool:
    shorter = min(len(one), len(two))
    return one[:shorter] == two[:shorter]


PATHS = ["n", "s", "ss", "ns", "l", "l[0]", "l[1]", "l[7]", "m", "m.x", "m.y", "m.l[0]"]
PATHS += ["m.l[4]", "m.deep", "m.deep.z", "new", "nope.x", "pk"]


@st.composite
def updates(draw: st.DrawFn) -> tuple[str, dict[str, str], dict[str, Any]]:
    """An UpdateExpression with its names and values: 1-3 clauses of 1-2 actions, over a few
    paths, name placeholders for some of them."""
    names: dict[str, str] = {}
    values: dict[str, Any] = {}
    targets: list[list[str]] = []

    def target() -> str:
        """A path no earlier target overlaps. NOTE: moto refuses overlapping paths only
        within SET; DynamoDB (and the core) across every clause: the explicit examples pin
        the refusal."""
        free = [p for p in PATHS if not any(overlap(parts(p), t) for t in targets)]
        chosen = draw(st.sampled_from(free))
        targets.append(parts(chosen))
        return placeholder(chosen)

    def path() -> str:
        # NOTE: moto refuses an expression that reads a key attribute (SET a = pk); for
        # DynamoDB only writing one is refused. Operands never name pk.
        return placeholder(draw(st.sampled_from([p for p in PATHS if p != "pk"])))

    def placeholder(text: str) -> str:
        if draw(st.integers(0, 3)) == 0:
            head = parts(text)[0]
            names[f"#{head}"] = head
            return f"#{head}{text[len(head) :]}"
        return text

    def value(strategy: st.SearchStrategy[Any]) -> str:
        name = f":v{len(values)}"
        values[name] = draw(strategy)
        return name

    def operand() -> str:
        kind = draw(st.sampled_from(["value", "path", "if_not_exists"]))
        if kind == "path":
            return path()
        if kind == "if_not_exists":
            return f"if_not_exists({path()}, {value(numbers)})"
        return value(st.one_of(numbers, scalars, lists, string_sets))

    def set_action() -> str:
        to = target()
        shape = draw(st.sampled_from(["plain", "plus", "minus", "append", "prepend"]))
        if shape == "plus":
            return f"{to} = {operand()} + {value(numbers)}"
        if shape == "minus":
            return f"{to} = {path()} - {value(numbers)}"
        if shape == "append":
            return f"{to} = list_append({path()}, {value(lists)})"
        if shape == "prepend":
            return f"{to} = list_append({value(lists)}, {path()})"
        return f"{to} = {operand()}"

    actions = {
        "SET": set_action,
        "REMOVE": target,
        "ADD": lambda: f"{target()} {value(st.one_of(numbers, string_sets, number_sets))}",
        "DELETE": lambda: f"{target()} {value(st.one_of(string_sets, number_sets))}",
    }
    chosen = draw(st.lists(st.sampled_from(sorted(actions)), min_size=1, max_size=3, unique=True))
    clauses = []
    for clause in chosen:
        count = draw(st.integers(1, 2))
        clauses.append(f"{clause} " + ", ".join(actions[clause]() for _ in range(count)))
    return " ".join(clauses), names, values


def reset(client: Any, item: dict[str, Any] | None) -> None:
    """The table holds ``item`` under KEY (None: nothing)."""
    if item is None:
        client.delete_item(TableName=TABLE, Key=KEY)
    else:
        client.put_item(TableName=TABLE, Item=item)


def moto_update(client: Any, item: dict[str, Any] | None, update: Any) -> Any:
    """DynamoDB's answer: the new item (canonical), or "refused"."""
    expression, names, values = update
    reset(client, item)
    request: dict[str, Any] = {
        "TableName": TABLE,
        "Key": KEY,
        "UpdateExpression": expression,
        "ReturnValues": "ALL_NEW",
    }
    if names:
        request["ExpressionAttributeNames"] = names
    if values:
        request["ExpressionAttributeValues"] = values
    try:
        response = client.update_item(**request)
    except ClientError as error:
        # NOTE: moto answers HTTP 500 to some expressions DynamoDB refuses (list_append of an
        # attribute that does not exist): counted as refused, so the core must refuse them too.
        assert error.response["Error"]["Code"] in ("ValidationException", "500"), error
        return "refused"
    return canonical({"M": response["Attributes"]})


def core_update(item: dict[str, Any] | None, update: Any) -> Any:
    expression, names, values = update
    try:
        parsed = parse_update(expression, names=names or None, values=values or None)
        return canonical({"M": apply_update(item or KEY, parsed, keys=("pk",))})
    except ExpressionError:
        return "refused"


# A quarter of the profile's examples (50 under ci, 1,250 under deep): each costs the moto
# server two requests.
SOME = settings(max_examples=max(50, settings().max_examples // 4))


@SOME
@given(item=items(), update=updates())
@example(item=None, update=("SET l[7] = :v0, m.l[4] = :v1", {}, {":v0": n(1), ":v1": n(2)}))
@example(item=dict(KEY, l={"L": [n(1), n(2)]}), update=("REMOVE l[0], l[1]", {}, {}))
@example(item=dict(KEY, n=n(1)), update=("SET fresh = n, n = :v0", {}, {":v0": n(5)}))
@example(item=dict(KEY, ss={"SS": ["a"]}), update=("DELETE ss :v0", {}, {":v0": {"SS": ["a"]}}))
@example(item=dict(KEY, n=n(1)), update=("SET n = :v0, n = :v0", {}, {":v0": n(2)}))
# Found by this test: clauses apply in the order written (the REMOVE finds no l[0], then the
# ADD past the end appends), not SET, ADD, DELETE, REMOVE.
@example(item=dict(KEY, l={"L": []}), update=("REMOVE l[0] ADD l[1] :v0", {}, {":v0": n(3)}))
@example(item=dict(KEY, m={"M": {}}), update=("SET m = :v0, m.x = :v0", {}, {":v0": n(2)}))
def test_the_core_applies_an_update_expression_as_the_moto_server_does(
    plain: Any, item: dict[str, Any] | None, update: Any
) -> None:
    """Same result item, or both refuse the expression (ValidationException)."""
    assert moto_update(plain, item, update) == core_update(item, update)


TYPE_NAMES = ["N", "S", "SS", "NS", "L", "M", "BOOL"]
CONDITIONS = [
    "attribute_exists({p})",
    "attribute_not_exists({p})",
    "{p} = {v}",
    "{p} <> {v}",
    "{p} IN ({v}, {w})",
    "begins_with({p}, {s})",
    "contains({p}, {s})",
    "size({p}) = {num}",
    "attribute_type({p}, {t})",
]


@st.composite
def conditions(draw: st.DrawFn) -> tuple[str, dict[str, Any]]:
    """A ConditionExpression over the same paths: functions, equality and IN (ordering
    comparisons and BETWEEN only between numbers: moto answers 500 for mismatched types),
    joined with AND, OR, NOT and parentheses."""
    values: dict[str, Any] = {}

    def value(strategy: st.SearchStrategy[Any]) -> str:
        name = f":c{len(values)}"
        values[name] = draw(strategy)
        return name

    def atom() -> str:
        p = draw(st.sampled_from([p for p in PATHS if p != "pk"]))
        if p in ("n", "m.x", "m.deep.z") and draw(st.booleans()):
            op = draw(st.sampled_from(["<", "<=", ">", ">="]))
            if draw(st.booleans()):
                low, high = sorted(draw(st.tuples(small, small)))
                return f"{p} BETWEEN {value(st.just(n(low)))} AND {value(st.just(n(high)))}"
            return f"{p} {op} {value(numbers)}"
        template = draw(st.sampled_from(CONDITIONS))
        if template.startswith("size") and p in ("n", "m.x", "m.deep.z", "l[0]", "l[1]"):
            template = "attribute_exists({p})"  # moto: size() of a number is an HTTP 500
        fields = {
            "v": lambda: value(st.one_of(plain_scalars, plain_lists, string_sets)),
            "w": lambda: value(plain_scalars),
            "s": lambda: value(strings.map(lambda s: {"S": s})),
            "num": lambda: value(st.integers(0, 3).map(n)),
            "t": lambda: value(st.sampled_from(TYPE_NAMES).map(lambda t: {"S": t})),
        }
        used = {name: make() for name, make in fields.items() if "{" + name + "}" in template}
        return template.format(p=p, **used)

    def expression(depth: int) -> str:
        if depth == 0 or draw(st.booleans()):
            return atom()
        op = draw(st.sampled_from(["AND", "OR", "NOT"]))
        if op == "NOT":
            return f"NOT ({expression(depth - 1)})"
        return f"({expression(depth - 1)}) {op} {expression(depth - 1)}"

    return expression(2), values


@SOME
@given(item=items(booleans=False), condition=conditions())
@example(item=None, condition=("attribute_exists(new)", {}))
@example(item=dict(KEY, n=n(1)), condition=("n <> :c0", {":c0": {"S": "a"}}))
@example(item=None, condition=("NOT (nope = :c0)", {":c0": n(1)}))
def test_the_core_judges_a_condition_expression_as_the_moto_server_does(
    plain: Any, item: dict[str, Any] | None, condition: tuple[str, dict[str, Any]]
) -> None:
    """A conditional UpdateItem that changes nothing else (``SET #mark = :mark``) succeeds on
    moto exactly when the core says the condition holds on the item, and both refuse the
    same expressions (a reserved word as a bare name)."""
    expression, values = condition
    reset(plain, item)
    on_moto: bool | str = True
    try:
        plain.update_item(
            TableName=TABLE,
            Key=KEY,
            UpdateExpression="SET #mark = :mark",
            ConditionExpression=expression,
            ExpressionAttributeNames={"#mark": "mark"},
            ExpressionAttributeValues={**values, ":mark": {"S": "x"}},
        )
    except ClientError as error:
        code = error.response["Error"]["Code"]
        # NOTE: moto answers HTTP 500 to size() of an attribute that does not exist (for
        # DynamoDB the condition is false): such an example says nothing.
        assume(code != "500")
        assert code in ("ConditionalCheckFailedException", "ValidationException"), error
        on_moto = False if code == "ConditionalCheckFailedException" else "refused"
    in_core: bool | str
    try:
        in_core = holds(parse_condition(expression, values=values or None), item)
    except ExpressionError:
        in_core = "refused"
    assert on_moto == in_core
