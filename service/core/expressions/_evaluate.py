"""Evaluating parsed expressions against an item in wire form, as DynamoDB does. Pure.

Update: every operand on the right of SET is read from the item as it was before the update
(``SET a = b, b = a`` swaps); then the clauses are applied in the order written, REMOVE
highest list index first, so that the indexes of one REMOVE name elements of the list as it
was. (DynamoDB does not document an order between clauses; it shows only where list indexes
of two clauses meet, and the order written is moto's.)
"""

from __future__ import annotations

import copy
import decimal
from collections.abc import Mapping
from typing import Any

from service.core.expressions import _documents as documents
from service.core.expressions._syntax import (
    And,
    Arithmetic,
    Between,
    Call,
    Compare,
    Condition,
    In,
    Literal_,
    Not,
    Operand,
    Or,
    Path,
    Update,
)
from service.core.values import AttributeValue, canonical, same_value
from service.errors import ExpressionError

# Exact sums of two 38-digit numbers of any exponents DynamoDB allows (1E-130 .. 1E+126).
_EXACT = decimal.Context(prec=300, traps=[decimal.Inexact, decimal.InvalidOperation])
_MAX_DIGITS = 38
_TYPES = frozenset({"S", "SS", "N", "NS", "B", "BS", "BOOL", "NULL", "L", "M"})
_SETS = frozenset({"SS", "NS", "BS"})
_MISSING_OPERAND = "The provided expression refers to an attribute that does not exist in the item"


# ---- numbers ---------------------------------------------------------------------------------


def number_text(value: decimal.Decimal) -> str:
    """A DynamoDB number as DynamoDB returns it (normalised: ``2.5``, not ``2.50``), or
    ExpressionError if it does not fit in 38 significant digits between 1E-130 and 1E+126."""
    value = value.normalize(_EXACT)
    if value.is_zero():
        return "0"
    digits = len(value.as_tuple().digits)
    if digits > _MAX_DIGITS:
        raise ExpressionError(
            "Number overflow. Attempting to store a number with more than 38 significant digits"
        )
    if value.adjusted() > 125:
        raise ExpressionError(
            "Number overflow. Attempting to store a number with magnitude larger than "
            "supported range"
        )
    if value.adjusted() < -130:
        raise ExpressionError(
            "Number underflow. Attempting to store a number with magnitude smaller than "
            "supported range"
        )
    return format(value, "f")


def _decimal(value: AttributeValue) -> decimal.Decimal:
    return decimal.Decimal(value["N"])


def _kind(value: AttributeValue) -> str:
    return next(iter(value))


# ---- update ----------------------------------------------------------------------------------


def apply_update(
    item: Mapping[str, AttributeValue], update: Update, *, keys: tuple[str, ...]
) -> dict[str, AttributeValue]:
    """``item`` after ``update`` (a new dict; ``item`` is not changed). ``keys``: the table's
    key attributes, which no action may touch."""
    for path in update.targets():
        if path.parts[0] in keys:
            raise ExpressionError(
                "One or more parameter values were invalid: Cannot update attribute "
                f"{path.parts[0]}. This attribute is part of the key"
            )
    before: dict[str, Any] = dict(item)
    after: dict[str, Any] = copy.deepcopy(dict(item))
    # NOTE: right-hand sides first, all against the item as it was.
    assignments = [(path, _operand(before, value)) for path, value in update.set]
    for clause in update.clauses:
        if clause == "SET":
            for path, value in assignments:
                documents.put(after, path, copy.deepcopy(value))
        elif clause == "ADD":
            for path, value in update.add:
                _add(after, path, value)
        elif clause == "DELETE":
            for path, value in update.delete:
                _delete(after, path, value)
        else:
            for path in documents.removal_order(update.remove):
                documents.remove(after, path)
    return after


def _operand(item: dict[str, Any], operand: Operand) -> AttributeValue:
    match operand:
        case Literal_(value=value):
            return value
        case Path():
            found = documents.get(item, operand)
            if found is None:
                raise ExpressionError(_MISSING_OPERAND)
            return found  # type: ignore[no-any-return]
        case Call(function="if_not_exists", args=(Path() as path, fallback)):
            found = documents.get(item, path)
            return found if found is not None else _operand(item, fallback)
        case Call(function="list_append", args=(first, second)):
            one, two = _operand(item, first), _operand(item, second)
            for value in (one, two):
                if _kind(value) != "L":
                    raise _wrong_type("list_append", value)
            return {"L": [*one["L"], *two["L"]]}
        case Arithmetic(op=op, left=left, right=right):
            one, two = _operand(item, left), _operand(item, right)
            for value in (one, two):
                if _kind(value) != "N":
                    raise _wrong_type(op, value)
            a, b = _decimal(one), _decimal(two)
            return {"N": number_text(_EXACT.add(a, b) if op == "+" else _EXACT.subtract(a, b))}
    raise ExpressionError(f"Invalid UpdateExpression: {operand} is not an update operand")


def _wrong_type(function: str, value: AttributeValue) -> ExpressionError:
    return ExpressionError(
        "Invalid UpdateExpression: Incorrect operand type for operator or function; "
        f"operator or function: {function}, operand type: {_kind(value)}"
    )


_INCORRECT_TYPE = "An operand in the update expression has an incorrect data type"


def _add(item: dict[str, Any], path: Path, value: AttributeValue) -> None:
    """ADD: a number is added to (0 if absent), a set's elements joined to the attribute."""
    kind = _kind(value)
    if kind != "N" and kind not in _SETS:
        raise ExpressionError(_INCORRECT_TYPE)
    current = documents.get(item, path)
    if current is None:
        new = {"N": number_text(_decimal(value))} if kind == "N" else copy.deepcopy(value)
    elif _kind(current) != kind:
        raise ExpressionError(_INCORRECT_TYPE)
    elif kind == "N":
        new = {"N": number_text(_EXACT.add(_decimal(current), _decimal(value)))}
    else:
        seen = {_element_key(kind, e) for e in current[kind]}
        added = [e for e in value[kind] if _element_key(kind, e) not in seen]
        new = {kind: [*current[kind], *_unique(kind, added)]}
    documents.put(item, path, new)


def _delete(item: dict[str, Any], path: Path, value: AttributeValue) -> None:
    """DELETE: a set's elements taken out of the attribute; an emptied set is removed."""
    kind = _kind(value)
    if kind not in _SETS:
        raise ExpressionError(_INCORRECT_TYPE)
    current = documents.get(item, path)
    if current is None:
        documents.remove(item, path)  # checks the path's container, removes nothing
        return
    if _kind(current) != kind:
        raise ExpressionError(_INCORRECT_TYPE)
    gone = {_element_key(kind, e) for e in value[kind]}
    kept = [e for e in current[kind] if _element_key(kind, e) not in gone]
    if kept:
        documents.put(item, path, {kind: kept})
    else:
        documents.remove(item, path)


def _element_key(kind: str, element: Any) -> Any:
    """Set elements compare as DynamoDB compares them (numbers by value, binary by bytes)."""
    return canonical({kind[0]: element})[1]


def _unique(kind: str, elements: list[Any]) -> list[Any]:
    out, seen = [], set()
    for element in elements:
        key = _element_key(kind, element)
        if key not in seen:
            seen.add(key)
            out.append(element)
    return out


# ---- conditions ------------------------------------------------------------------------------


def holds(condition: Condition, item: Mapping[str, AttributeValue] | None) -> bool:
    """Whether ``condition`` holds for ``item`` (None: no item, every path is absent)."""
    return _holds(condition, dict(item or {}))


def _holds(condition: Condition, item: dict[str, Any]) -> bool:
    match condition:
        case And(left=left, right=right):
            return _holds(left, item) and _holds(right, item)
        case Or(left=left, right=right):
            return _holds(left, item) or _holds(right, item)
        case Not(condition=inner):
            return not _holds(inner, item)
        case Compare(op=op, left=left, right=right):
            return _compare(op, _value(item, left), _value(item, right))
        case Between(subject=subject, low=low, high=high):
            x, lo, hi = (_value(item, o) for o in (subject, low, high))
            if lo is not None and hi is not None:
                if _kind(lo) != _kind(hi):
                    raise ExpressionError(
                        "Invalid ConditionExpression: The BETWEEN operator requires same data "
                        "type for lower and upper bounds"
                    )
                if _compare(">", lo, hi):
                    raise ExpressionError(
                        "Invalid ConditionExpression: The BETWEEN operator requires upper bound "
                        "to be greater than or equal to lower bound"
                    )
            return _compare(">=", x, lo) and _compare("<=", x, hi)
        case In(subject=subject, options=options):
            x = _value(item, subject)
            return any(_compare("=", x, _value(item, o)) for o in options)
        case Call():
            return _function(condition, item)
    raise AssertionError(condition)


def _value(item: dict[str, Any], operand: Operand) -> AttributeValue | None:
    match operand:
        case Literal_(value=value):
            return value
        case Path():
            return documents.get(item, operand)
        case Call(function="size", args=(Path() as path,)):
            found = documents.get(item, path)
            size = _size(found) if found is not None else None
            return {"N": str(size)} if size is not None else None
    raise ExpressionError(f"Invalid ConditionExpression: {operand} is not a condition operand")


def _size(value: AttributeValue) -> int | None:
    kind = _kind(value)
    inner = value[kind]
    if kind == "S":
        return len(inner)
    if kind == "B":
        return len(_raw_bytes(inner))
    if kind in ("SS", "NS", "BS", "L", "M"):
        return len(inner)
    return None


def _raw_bytes(inner: bytes | bytearray | str) -> bytes:
    # NOTE: botocore sends a str given for a blob as its UTF-8 bytes (values._bytes agrees).
    return inner.encode() if isinstance(inner, str) else bytes(inner)


def _order_key(value: AttributeValue) -> Any:
    kind = _kind(value)
    if kind == "N":
        return _decimal(value)
    if kind == "B":
        return _raw_bytes(value["B"])
    return value["S"]


def _compare(op: str, a: AttributeValue | None, b: AttributeValue | None) -> bool:
    equal = a is not None and b is not None and _kind(a) == _kind(b) and same_value(a, b)
    if op == "=":
        return equal
    if op == "<>":
        return not equal
    if a is None or b is None or _kind(a) != _kind(b) or _kind(a) not in ("N", "S", "B"):
        return False
    x, y = _order_key(a), _order_key(b)
    outcome: bool = {"<": x < y, "<=": x <= y, ">": x > y, ">=": x >= y}[op]
    return outcome


def _function(call: Call, item: dict[str, Any]) -> bool:
    subject = _value(item, call.args[0])
    match call.function:
        case "attribute_exists":
            return subject is not None
        case "attribute_not_exists":
            return subject is None
        case "attribute_type":
            wanted = _value(item, call.args[1])
            if wanted is None or _kind(wanted) != "S" or wanted["S"] not in _TYPES:
                raise ExpressionError(
                    "Invalid ConditionExpression: Invalid attribute type name found in type "
                    f"condition; type: {wanted}"
                )
            return subject is not None and _kind(subject) == wanted["S"]
        case "begins_with":
            prefix = _value(item, call.args[1])
            if prefix is None or _kind(prefix) not in ("S", "B"):
                raise ExpressionError(
                    "Invalid ConditionExpression: Incorrect operand type for operator or "
                    "function; operator or function: begins_with"
                )
            if subject is None or _kind(subject) != _kind(prefix):
                return False
            if _kind(prefix) == "S":
                return bool(subject["S"].startswith(prefix["S"]))
            return _raw_bytes(subject["B"]).startswith(_raw_bytes(prefix["B"]))
        case "contains":
            needle = _value(item, call.args[1])
            if subject is None or needle is None:
                return False
            kind = _kind(subject)
            if kind == "S":
                return _kind(needle) == "S" and needle["S"] in subject["S"]
            if kind in _SETS:
                return _kind(needle) == kind[0] and any(
                    same_value(needle, {kind[0]: e}) for e in subject[kind]
                )
            if kind == "L":
                return any(same_value(needle, e) for e in subject["L"])
            return False
    raise AssertionError(call.function)
