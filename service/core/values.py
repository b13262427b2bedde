"""DynamoDB attribute values in wire form, their canonical encoding and digest.

Items stay in the low-level wire form (``{"S": "x"}``, ``{"N": "1.50"}``...) from the stream
to the destination table, so nothing is lost in conversion: 38-digit numbers, binary, sets,
nested maps and empty strings round-trip exactly. The canonical encoding is used only to
compare and digest values, never to write them.
"""

from __future__ import annotations

import base64
import decimal
import functools
import hashlib
from collections.abc import Mapping
from typing import Any

AttributeValue = Mapping[str, Any]
Item = Mapping[str, AttributeValue]

# NOTE: DynamoDB numbers have up to 38 significant digits; the default context (28) would
# round them while normalising.
_NUMBERS = decimal.Context(prec=60)
_TYPES = frozenset({"S", "N", "B", "SS", "NS", "BS", "M", "L", "BOOL", "NULL"})


@functools.lru_cache(maxsize=4096)
def _number(text: str) -> str:
    value = _NUMBERS.normalize(decimal.Decimal(text))
    return "0" if value.is_zero() else format(value, "f")


def _bytes(value: bytes | bytearray | str) -> str:
    raw = value.encode() if isinstance(value, str) else bytes(value)
    return base64.b64encode(raw).decode()


def canonical(value: AttributeValue) -> Any:
    """A JSON-able form equal for equal DynamoDB values (sets unordered, numbers normalised).

    >>> canonical({"NS": ["2", "1.0"]}) == canonical({"NS": ["1", "2.00"]})
    True
    """
    if len(value) != 1:
        raise ValueError(f"an attribute value has exactly one type key, got {sorted(value)}")
    ((kind, inner),) = value.items()
    match kind:
        case "S" | "BOOL" | "NULL":
            return [kind, inner]
        case "N":
            return ["N", _number(inner)]
        case "B":
            return ["B", _bytes(inner)]
        case "SS":
            return ["SS", sorted(set(inner))]
        case "NS":
            return ["NS", sorted({_number(n) for n in inner})]
        case "BS":
            return ["BS", sorted({_bytes(b) for b in inner})]
        case "M":
            return ["M", {k: canonical(v) for k, v in sorted(inner.items())}]
        case "L":
            return ["L", [canonical(v) for v in inner]]
    raise ValueError(f"unknown DynamoDB type {kind!r}")


def canonical_bytes(item: Item) -> bytes:
    """Stable, unambiguous bytes for an item: sorted names, every string length-prefixed,
    numbers normalised, sets sorted. The digest of these bytes is part of the metadata
    format (docs/metadata.md), so it must never change within a schema version."""
    out: list[str] = []
    for name in sorted(item):
        value = item[name]
        inner = value.get("S")
        # NOTE: strings are most attributes; encoding them inline saves a call per attribute.
        if inner is not None and len(value) == 1 and type(inner) is str:
            out.append(f"{len(name)}:{name}S{len(inner)}:{inner}")
        else:
            out.append(f"{len(name)}:{name}")
            _encode(value, out)
    return "".join(out).encode()


def _num(text: str) -> str:
    # NOTE: the common case (a plain integer) skips Decimal, which costs ~2 us per number.
    if type(text) is str and text.isdigit() and (text == "0" or text[0] != "0"):
        return text
    if type(text) is not str:
        raise ValueError(f"a number is sent as a string, got {text!r}")
    try:
        value = decimal.Decimal(text)
    except decimal.InvalidOperation:
        raise ValueError(f"not a DynamoDB number: {text!r}") from None
    if not value.is_finite():
        raise ValueError(f"not a DynamoDB number: {text!r}")
    return _number(text)


def _elements(kind: str, inner: object) -> list[Any]:
    if type(inner) is not list or not inner:
        raise ValueError(f"a {kind} value is a non-empty list, got {inner!r:.60}")
    return inner


def _byte_value(inner: object) -> str:
    if not isinstance(inner, bytes | bytearray | str):
        raise ValueError(f"a binary value is bytes, got {type(inner).__name__}")
    return _bytes(inner)


def _string(inner: object) -> str:
    if type(inner) is not str:
        raise ValueError(f"a string value is a str, got {type(inner).__name__}")
    return inner


def _encode(value: AttributeValue, out: list[str]) -> None:
    if len(value) != 1:
        raise ValueError(f"an attribute value has exactly one type key, got {sorted(value)}")
    ((kind, inner),) = value.items()
    # NOTE: the digest walks every value of every record, so it is where malformed values are
    # refused (a ValueError, which `checked_digest` makes a RecordError: dead-lettered) at no
    # extra pass: a wrong type here would otherwise reach the destination's write.
    if kind == "S":
        out.append(f"S{len(_string(inner))}:{inner}")
    elif kind == "N":
        n = _num(inner)
        out.append(f"N{len(n)}:{n}")
    elif kind == "M":
        if type(inner) is not dict:
            raise ValueError(f"a map value is an object, got {type(inner).__name__}")
        out.append(f"M{len(inner)}{{")
        for k in sorted(inner):
            out.append(f"{len(k)}:{k}")
            _encode(inner[k], out)
        out.append("}")
    elif kind == "L":
        if type(inner) is not list:
            raise ValueError(f"a list value is a list, got {type(inner).__name__}")
        out.append(f"L{len(inner)}[")
        for v in inner:
            _encode(v, out)
        out.append("]")
    elif kind == "BOOL":
        if type(inner) is not bool:
            raise ValueError(f"a BOOL value is true or false, got {inner!r:.40}")
        out.append("T" if inner else "F")
    elif kind == "NULL":
        if inner is not True:
            raise ValueError(f"a NULL value is true, got {inner!r:.40}")
        out.append("0")
    elif kind == "B":
        b = _byte_value(inner)
        out.append(f"B{len(b)}:{b}")
    elif kind in ("SS", "NS", "BS"):
        norm = {"SS": _string, "NS": _num, "BS": _byte_value}[kind]
        elements = sorted({norm(e) for e in _elements(kind, inner)})
        if len(elements) != len(inner):
            raise ValueError(f"a {kind} value holds duplicates")
        out.append(f"{kind}{len(elements)}(")
        out.extend(f"{len(e)}:{e}" for e in elements)
        out.append(")")
    else:
        raise ValueError(f"unknown DynamoDB type {kind!r}")


def digest(item: Item) -> str:
    """A 128-bit BLAKE2b digest of an item's data, base64url without padding (22 chars)."""
    raw = hashlib.blake2b(canonical_bytes(item), digest_size=16).digest()
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def same_value(a: AttributeValue, b: AttributeValue) -> bool:
    """Equality as DynamoDB means it (sets unordered, 1.0 == 1)."""
    return bool(canonical(a) == canonical(b))


def same_item(a: Item, b: Item) -> bool:
    """Two items equal as DynamoDB means it (what decides whether a write changed anything)."""
    return a.keys() == b.keys() and all(same_value(a[k], b[k]) for k in a)


def is_attribute_value(value: object) -> bool:
    """Shallow check that ``value`` looks like a wire attribute value."""
    return isinstance(value, dict) and len(value) == 1 and next(iter(value)) in _TYPES


def size_of(item: Item) -> int:
    """DynamoDB's item size: attribute name lengths plus value sizes (an upper bound for N)."""
    return sum(len(name.encode()) + _value_size(v) for name, v in item.items())


def _value_size(value: AttributeValue) -> int:
    ((kind, inner),) = value.items()
    match kind:
        case "S":
            return len(inner.encode())
        case "N":
            return len(inner) // 2 + 2
        case "B":
            return len(inner)
        case "SS":
            return sum(len(s.encode()) for s in inner)
        case "NS":
            return sum(len(n) // 2 + 2 for n in inner)
        case "BS":
            return sum(len(b) for b in inner)
        case "M":
            return 3 + sum(len(k.encode()) + _value_size(v) + 1 for k, v in inner.items())
        case "L":
            return 3 + sum(_value_size(v) + 1 for v in inner)
        case _:
            return 1
