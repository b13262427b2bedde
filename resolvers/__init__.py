"""Conflict resolvers: one module per resolver, one Protocol, one registry.

>>> from resolvers import build
>>> build("lww").name
'lww'
"""

from __future__ import annotations

# NOTE: the field helper ``lww()`` is not re-exported here: ``resolvers.lww`` is the
# whole-item LWW module. Import it as ``from resolvers.fields import lww``.
from resolvers._protocol import Resolution, Resolver
from resolvers.checker import check
from resolvers.fields import (
    FieldRules,
    field_rules,
    maximum,
    minimum,
    pn_add,
    pn_counter,
    pn_value,
    prefer_region,
    union,
)
from resolvers.lww import LastWriterWins
from resolvers.registry import build
from resolvers.rules import TOMBSTONE, Side, Tombstone, UserRule, load_rule
from resolvers.version_counter import VersionCounter

__all__ = [
    "TOMBSTONE",
    "FieldRules",
    "LastWriterWins",
    "Resolution",
    "Resolver",
    "Side",
    "Tombstone",
    "UserRule",
    "VersionCounter",
    "build",
    "check",
    "field_rules",
    "load_rule",
    "maximum",
    "minimum",
    "pn_add",
    "pn_counter",
    "pn_value",
    "prefer_region",
    "union",
]
