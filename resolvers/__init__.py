"""Conflict resolvers: one module per resolver, one Protocol, one registry.

>>> from resolvers import build
>>> build("lww").name
'lww'

``check`` (the law checker) is imported on first use: it imports Hypothesis, which costs about
0.1 s and is only needed at configuration time, never on a Lambda cold start.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

# NOTE: the field helper ``lww()`` is not re-exported here: ``resolvers.lww`` is the
# whole-item LWW module. Import it as ``from resolvers.fields import lww``.
from resolvers._protocol import Resolution, Resolver
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

if TYPE_CHECKING:
    from resolvers.checker import check

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


def __getattr__(name: str) -> object:
    # NOTE: PEP 562 lazy attribute, so that `import resolvers` does not import Hypothesis.
    if name == "check":
        from resolvers.checker import check

        return check
    raise AttributeError(f"module 'resolvers' has no attribute {name!r}")
