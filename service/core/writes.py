"""An application's write through the SDK, planned in the core: what the application sees
of the item read, its own condition judged on that, a put, update or delete turned into the
new data, the stamped version, and the one conditional request that writes it. Pure: the
read, the clock, the write id and the request are the SDK's (service/surfaces/sdk.py).

The application sees an item's data without georep's attributes, and a tombstone as no item
(:func:`visible`). Its ConditionExpression is evaluated here against what it sees; when that
is an item, it is also AND-ed into the request (:func:`service.core.conditions.with_application`),
so DynamoDB evaluates it too, on the item as it is when the write lands. When the application
sees no item (absent, or a tombstone), it is not sent: DynamoDB would evaluate it on the
tombstone, which the application never sees, and georep's precondition already pins that
state.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from service.core.apply import precondition_for
from service.core.conditions import condition_for, with_application
from service.core.expressions import Condition, Update, apply_update, holds
from service.core.stamp import stamp, waits_for_adoption
from service.core.stored import Absent, Raw, Settings, Stamped, Stored
from service.core.values import AttributeValue
from service.core.version import RESERVED, Version, encode_item
from service.errors import ExpressionError

Data = dict[str, AttributeValue]


@dataclass(frozen=True)
class Put:
    """Replace the item with ``data`` (application attributes only)."""

    data: Mapping[str, AttributeValue]


@dataclass(frozen=True)
class Change:
    """Apply ``update`` to the item the application sees (an UpdateItem)."""

    key: Mapping[str, AttributeValue]
    update: Update


@dataclass(frozen=True)
class Delete:
    key: Mapping[str, AttributeValue]


Write = Put | Change | Delete


@dataclass(frozen=True)
class ApplicationCondition:
    """The application's ConditionExpression: as given (sent to DynamoDB) and parsed
    (evaluated here)."""

    expression: str
    names: Mapping[str, str] | None
    values: Mapping[str, AttributeValue] | None
    parsed: Condition


@dataclass(frozen=True)
class Refused:
    """The application's condition does not hold on what it sees (``seen``): nothing is
    written (DynamoDB's ConditionalCheckFailedException)."""

    seen: Data | None


@dataclass(frozen=True)
class Nothing:
    """A delete of an item the application does not see: nothing to write."""


@dataclass(frozen=True)
class Planned:
    """Write ``item`` (``version`` encoded) with ``request`` (ConditionExpression,
    ExpressionAttributeNames, ExpressionAttributeValues). ``old`` and ``new`` are what the
    application sees before and after (for ReturnValues)."""

    version: Version
    item: Data
    request: dict[str, Any]
    old: Data | None
    new: Data | None


@dataclass(frozen=True)
class Pending:
    """Nothing written: under merge rules the item holds a raw write georep has not adopted
    yet, and a write over it waits for that adoption (`waits_for_adoption`). ``seen``: the
    item as the application sees it now."""

    seen: Data | None


Plan = Refused | Nothing | Planned | Pending


def visible(current: Stored) -> Data | None:
    """The item as the application sees it: its data, or None when absent or deleted."""
    match current:
        case Stamped(version=version):
            return None if version.meta.deleted else dict(version.data)
        case Raw(data=data):
            return dict(data)
        case Absent():
            return None
    raise AssertionError(current)


def plan(
    current: Stored,
    write: Write,
    *,
    condition: ApplicationCondition | None,
    region: str,
    now_hlc: int,
    write_id: str,
    settings: Settings,
    horizon_ms: int,
) -> Plan:
    """The write of ``write`` over ``current`` (what was read, consistently), or why none.

    >>> from service.core.expressions import parse_update
    >>> from resolvers import LastWriterWins
    >>> settings = Settings(regions=("eu",), key_attributes=("pk",), resolver=LastWriterWins())
    >>> key = {"pk": {"S": "a"}}
    >>> change = Change(key, parse_update("ADD n :one", values={":one": {"N": "1"}}))
    >>> planned = plan(Absent(), change, condition=None, region="eu", now_hlc=1 << 16,
    ...                write_id="01J0000000000000000000000A", settings=settings, horizon_ms=1)
    >>> planned.new, planned.request["ConditionExpression"]
    ({'pk': {'S': 'a'}, 'n': {'N': '1'}}, 'attribute_not_exists(#pk)')
    """
    seen = visible(current)
    if waits_for_adoption(current, settings=settings):
        return Pending(seen)
    if condition is not None and not holds(condition.parsed, seen):
        return Refused(seen)
    data: Data | None
    match write:
        case Put(data=given):
            data = dict(given)
        case Change(key=key, update=update):
            _check_key(key, settings=settings)
            for path in update.targets():
                if path.parts[0] in RESERVED:
                    raise ExpressionError(
                        f"{path.parts[0]} is georep's metadata, not application data: an "
                        "update cannot change it"
                    )
            data = apply_update(seen or dict(key), update, keys=settings.key_attributes)
        case Delete(key=key):
            _check_key(key, settings=settings)
            data = None
    residency = settings.residency
    if data is not None and residency is not None and not residency.holds(region):
        hidden = sorted(residency.redacted & data.keys())
        if hidden:
            # NOTE: refused, not stripped: the application would read back less than it wrote.
            raise ExpressionError(
                f"{', '.join(hidden)} may not be written in {region}: [[redactions]] keep them "
                "out of it; write them in a region that holds them"
            )
    version = stamp(
        current, data, region=region, now_hlc=now_hlc, write_id=write_id, settings=settings
    )
    if version is None:
        return Nothing()
    request = condition_for(precondition_for(current), partition_key=settings.key_attributes[0])
    if condition is not None and seen is not None:
        request = with_application(
            request, expression=condition.expression, names=condition.names, values=condition.values
        )
    return Planned(
        version=version,
        item=encode_item(version, horizon_ms=horizon_ms),
        request=request,
        old=seen,
        new=None if version.meta.deleted else dict(version.data),
    )


def key_of(write: Write, *, settings: Settings) -> Data:
    """The key ``write`` writes under (ExpressionError, as DynamoDB's ValidationException, if
    the item lacks a key attribute or the key is not exactly the table's)."""
    if isinstance(write, Put):
        missing = [name for name in settings.key_attributes if name not in write.data]
        if missing:
            raise ExpressionError(
                f"One of the required keys was not given a value: the item has no {missing}"
            )
        return settings.keys_of(write.data)
    _check_key(write.key, settings=settings)
    return dict(write.key)


def _check_key(key: Mapping[str, AttributeValue], *, settings: Settings) -> None:
    if set(key) != set(settings.key_attributes):
        raise ExpressionError(
            "The provided key element does not match the schema: the key is "
            f"{list(settings.key_attributes)}, got {sorted(key)}"
        )
