"""Conflict resolvers: one module per resolver, one Protocol, one registry.

>>> from resolvers import build
>>> build("lww").name
'lww'
"""

from __future__ import annotations

from resolvers._protocol import Resolution, Resolver
from resolvers.lww import LastWriterWins
from resolvers.version_counter import VersionCounter

__all__ = ["LastWriterWins", "Resolution", "Resolver", "VersionCounter"]
