"""DynamoDB's expressions, evaluated in the pure core: what the SDK needs to apply an
application's UpdateExpression to the item it read, to judge its ConditionExpression against
what the application sees (a tombstone reads as no item), and to project what query and scan
return without georep's metadata.

Supported, as DynamoDB defines them (docs: "Using expressions in DynamoDB"):

- **UpdateExpression**: ``SET`` (``path = operand``, ``operand + operand``, ``operand -
  operand``, ``if_not_exists(path, operand)``, ``list_append(operand, operand)``),
  ``REMOVE path``, ``ADD path :value`` (a number, or a set), ``DELETE path :set``; document
  paths into maps (``a.b``) and lists (``a[2]``), ``#name`` and ``:value`` placeholders; each
  clause once; no two paths that overlap; no key attribute.
- **ConditionExpression**: ``= <> < <= > >=``, ``BETWEEN``, ``IN``, ``AND``, ``OR``, ``NOT``,
  parentheses, ``attribute_exists``, ``attribute_not_exists``, ``attribute_type``,
  ``begins_with``, ``contains``, ``size``.
- **ProjectionExpression**: paths separated by commas.

A bare attribute name that is one of DynamoDB's reserved words is refused, as DynamoDB
refuses it (``#name`` placeholders are the way round). Not reproduced: the expression length
limits (4 KB; DynamoDB still checks the ConditionExpression the SDK sends). The differential
tests (tests/integration/test_sdk_expressions.py) run random expressions here and on the moto
server, and name the places where moto departs from DynamoDB.

>>> update = parse_update("SET n = n + :one REMOVE stale", values={":one": {"N": "1"}})
>>> apply_update({"pk": {"S": "a"}, "n": {"N": "1"}, "stale": {"S": "x"}}, update, keys=("pk",))
{'pk': {'S': 'a'}, 'n': {'N': '2'}}
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from service.core.expressions._documents import project
from service.core.expressions._evaluate import apply_update, holds
from service.core.expressions._syntax import (
    Condition,
    Parser,
    Path,
    Update,
    Used,
    checked_values,
    no_overlap,
    rename_placeholders,
    tokens,
)
from service.core.values import AttributeValue
from service.errors import ExpressionError

__all__ = [
    "Condition",
    "Path",
    "Update",
    "Used",
    "apply_update",
    "check_all_used",
    "holds",
    "parse_condition",
    "parse_projection",
    "parse_update",
    "placeholders",
    "project",
    "rename_placeholders",
]


def parse_update(
    text: str,
    *,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, AttributeValue] | None = None,
    used: Used | None = None,
) -> Update:
    """Parse an UpdateExpression (ExpressionError if DynamoDB would refuse it). ``used``
    collects the placeholders it uses."""
    checked_values(values)
    parser = Parser(text, what="UpdateExpression", names=names, values=values, used=used or Used())
    update = parser.update()
    parser.end()
    no_overlap(update.targets(), what="UpdateExpression")
    return update


def parse_condition(
    text: str,
    *,
    names: Mapping[str, str] | None = None,
    values: Mapping[str, AttributeValue] | None = None,
    used: Used | None = None,
    what: str = "ConditionExpression",
) -> Condition:
    """Parse a ConditionExpression (or a FilterExpression: ``what``)."""
    checked_values(values)
    parser = Parser(text, what=what, names=names, values=values, used=used or Used())
    condition = parser.condition()
    parser.end()
    return condition


def parse_projection(
    text: str, *, names: Mapping[str, str] | None = None, used: Used | None = None
) -> tuple[Path, ...]:
    what = "ProjectionExpression"
    parser = Parser(text, what=what, names=names, values=None, used=used or Used())
    paths = parser.projection()
    parser.end()
    no_overlap(paths, what="ProjectionExpression")
    return paths


def placeholders(text: str) -> Used:
    """The placeholders an expression names, without parsing it (a KeyConditionExpression or
    FilterExpression the SDK passes on to DynamoDB)."""
    used = Used()
    for token in tokens(text):
        if token.kind == "name":
            used.names.add(token.text)
        elif token.kind == "value":
            used.values.add(token.text)
    return used


def check_all_used(
    used: Iterable[Used],
    *,
    names: Mapping[str, str] | None,
    values: Mapping[str, AttributeValue] | None,
) -> None:
    """DynamoDB refuses a request that defines a placeholder none of its expressions uses."""
    all_names: set[str] = set()
    all_values: set[str] = set()
    for one in used:
        all_names |= one.names
        all_values |= one.values
    if names is not None and not names:
        raise ExpressionError("ExpressionAttributeNames must not be empty")
    for given, seen, what in (
        (names, all_names, "ExpressionAttributeNames"),
        (values, all_values, "ExpressionAttributeValues"),
    ):
        unused = sorted(set(given or ()) - seen)
        if unused:
            raise ExpressionError(
                f"Value provided in {what} unused in expressions: keys: {{{', '.join(unused)}}}"
            )
