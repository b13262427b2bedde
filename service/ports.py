"""The narrow ports through which the service does I/O.

The in-memory model (service/memory.py) and the DynamoDB adapter implement the same ones.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from service.core.apply import Precondition


@dataclass(frozen=True)
class WriteResult:
    """``ok``: the write happened. Otherwise the precondition failed and ``current`` is the
    item as it is now (DynamoDB's ReturnValuesOnConditionCheckFailure=ALL_OLD)."""

    ok: bool
    current: Mapping[str, Any] | None


class Table(Protocol):
    """One region's replica table."""

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None: ...

    def write(
        self,
        key: Mapping[str, Any],
        item: Mapping[str, Any] | None,
        precondition: Precondition,
    ) -> WriteResult: ...

    def annotate(
        self,
        key: Mapping[str, Any],
        meta: Mapping[str, Any],
        precondition: Precondition,
    ) -> WriteResult:
        """Set only the item's ``_georep`` attribute to ``meta`` (UpdateItem), leaving its
        data as it is, if ``precondition`` holds."""
        ...
