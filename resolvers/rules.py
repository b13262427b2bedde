"""User merge rules: plain Python functions over two sides, wrapped as a Resolver.

A rule is a callable ``(a: Side, b: Side) -> Mapping[str, Any] | Tombstone``. Sides carry
Python values (boto3's ``TypeDeserializer``), the deleted flag and the version's metadata, so a
rule may read the HLC, origin or write id. Returning :data:`TOMBSTONE` means "deleted".

The merged version carries the identity of the last-writer-wins maximum of the two sides; the
rule decides only the data. A rule must obey the laws in ``resolvers/_protocol.py``;
``resolvers.check`` tests them and the registry runs it before a rule is accepted.

Example (``myapp/rules.py``, configured as ``rule: "myapp.rules:newest"``)::

    def newest(a: Side, b: Side) -> Mapping[str, Any] | Tombstone:
        winner = max(a, b, key=lambda s: s.meta.lww_key)
        return TOMBSTONE if winner.deleted else winner.data
"""

from __future__ import annotations

import importlib
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from importlib.metadata import entry_points
from typing import Any, Final, final

from boto3.dynamodb.types import TypeDeserializer, TypeSerializer

from resolvers._protocol import Resolution, Resolver
from service.core.values import AttributeValue, canonical
from service.core.version import Meta, Version
from service.errors import RuleError

ENTRY_POINT_GROUP: Final = "georep.rules"


@final
class Tombstone:
    """The type of :data:`TOMBSTONE`: a rule's way of saying "the item is deleted"."""

    _instance: Tombstone | None = None

    def __new__(cls) -> Tombstone:
        if cls._instance is None:
            cls._instance = super().__new__(cls)
        return cls._instance

    def __repr__(self) -> str:
        return "TOMBSTONE"


TOMBSTONE: Final = Tombstone()


@dataclass(frozen=True, slots=True)
class Side:
    """One of the two concurrent versions, as a rule sees it."""

    data: Mapping[str, Any]
    deleted: bool
    meta: Meta


Rule = Callable[[Side, Side], "Mapping[str, Any] | Tombstone"]


def _sorted_sets(value: AttributeValue) -> AttributeValue:
    """Sets in a stable order: Python sets iterate in hash order, which differs between
    processes, and every region must write the same bytes."""
    ((kind, inner),) = value.items()
    if kind in ("SS", "NS", "BS"):
        return {kind: sorted(inner, key=lambda e: canonical({kind[0]: e}))}
    if kind == "M":
        return {"M": {k: _sorted_sets(v) for k, v in inner.items()}}
    if kind == "L":
        return {"L": [_sorted_sets(v) for v in inner]}
    return value


def _side(version: Version) -> Side:
    des = TypeDeserializer()
    data: dict[str, Any] = {}
    for name, value in version.data.items():
        data[name] = des.deserialize(dict(value))  # type: ignore[arg-type]  # wire form
    return Side(data=data, deleted=version.meta.deleted, meta=version.meta)


@dataclass(frozen=True)
class UserRule:
    """A user rule as a Resolver: the rule decides the data, LWW decides the carried identity."""

    fn: Rule
    label: str
    name: str = "rules"
    field_stamps: bool = False
    keeps_deleted_data: bool = True

    def resolve(self, a: Version, b: Version) -> Resolution:
        carrier = max(a, b, key=lambda v: v.meta.lww_key).meta
        try:
            result = self.fn(_side(a), _side(b))
        except Exception as exc:
            raise RuleError(f"rule {self.label!r} raised {type(exc).__name__}: {exc}") from exc
        if isinstance(result, Tombstone):
            return Resolution(data={}, deleted=True, carrier=carrier)
        # NOTE: whether the item is deleted follows the last writer (the carrier), not the
        # rule: a delete must order like any other write for the merge to stay associative
        # when tombstones keep their data (docs/design.md, "Deletes under merge rules").
        if not isinstance(result, Mapping):
            raise RuleError(
                f"rule {self.label!r} must return a mapping of attributes or TOMBSTONE, "
                f"got {type(result).__name__}"
            )
        ser = TypeSerializer()
        data: dict[str, AttributeValue] = {}
        for attr, value in result.items():
            try:
                data[str(attr)] = _sorted_sets(ser.serialize(value))
            except Exception as exc:
                raise RuleError(
                    f"rule {self.label!r} returned a value for {attr!r} that DynamoDB cannot "
                    f"store ({type(exc).__name__}: {exc})"
                ) from exc
        return Resolution(data=data, deleted=carrier.deleted, carrier=carrier)


def _import(spec: str) -> object:
    module_name, _, attr_path = spec.partition(":")
    if not module_name or not attr_path:
        raise RuleError(f"rule {spec!r} must look like 'package.module:attribute'")
    try:
        obj: object = importlib.import_module(module_name)
    except ImportError as exc:
        raise RuleError(f"rule {spec!r}: cannot import module {module_name!r} ({exc})") from exc
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError:
            raise RuleError(
                f"rule {spec!r}: {module_name!r} has no attribute {attr_path!r}"
            ) from None
    return obj


def _entry_point(spec: str) -> object:
    found = entry_points(group=ENTRY_POINT_GROUP, name=spec)
    if not found:
        known = sorted(ep.name for ep in entry_points(group=ENTRY_POINT_GROUP))
        raise RuleError(
            f"rule {spec!r} is neither 'package.module:attribute' nor an installed entry point "
            f"in group {ENTRY_POINT_GROUP!r} (installed: {known or 'none'})"
        )
    ep = next(iter(found))
    try:
        return ep.load()
    except Exception as exc:
        raise RuleError(f"rule {spec!r}: entry point {ep.value!r} failed to load ({exc})") from exc


def load_rule(spec: str) -> Resolver:
    """Load a rule from ``"pkg.module:attr"`` or an entry point name in group ``georep.rules``.

    A loaded Resolver (e.g. a ``field_rules(...)`` object) is returned as is; a plain callable
    is wrapped in :class:`UserRule`. Laws are not checked here; see ``resolvers.build``.
    """
    spec = spec.strip()
    if not spec:
        raise RuleError("rule spec is empty; expected 'package.module:attribute'")
    obj = _import(spec) if ":" in spec else _entry_point(spec)
    if not isinstance(obj, type) and isinstance(obj, Resolver):
        return obj
    if not callable(obj):
        raise RuleError(
            f"rule {spec!r} is a {type(obj).__name__}, not a callable (a, b) -> data or a Resolver"
        )
    return UserRule(fn=obj, label=spec)
