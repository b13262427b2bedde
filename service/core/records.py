"""Stream records (the shape DynamoDB Streams and Lambda deliver) -> core :class:`Change`."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from typing import Any

from service.core.adopt import Change
from service.core.values import is_attribute_value
from service.errors import RecordError

_EVENTS = ("INSERT", "MODIFY", "REMOVE")
_TTL_PRINCIPAL = "dynamodb.amazonaws.com"


def _image(record: Mapping[str, Any], name: str, *, deep: bool = False) -> dict[str, Any] | None:
    """An image as a dict. ``deep`` checks every attribute value's shape; otherwise values are
    checked where they are used (digests and writes reject malformed values)."""
    image = record.get(name)
    if image is None:
        return None
    if type(image) is not dict or (
        deep and not all(type(k) is str and is_attribute_value(v) for k, v in image.items())
    ):
        raise RecordError(f"record field dynamodb.{name} is not a DynamoDB item")
    return image


def _approx_ms(value: object) -> int:
    # boto3 parses the field into a datetime; Lambda events carry epoch seconds.
    if isinstance(value, dt.datetime):
        return int(value.timestamp() * 1000)
    if isinstance(value, int | float) and not isinstance(value, bool):
        return int(value * 1000)
    raise RecordError(f"ApproximateCreationDateTime must be a time, got {value!r}")


def parse_record(record: Mapping[str, Any]) -> Change:
    """Parse one record. Binary values must already be bytes (decode Lambda's base64 first).

    Raises RecordError naming the field for anything that is not a DynamoDB stream record.
    """
    if not isinstance(record, Mapping):
        raise RecordError(f"a stream record must be an object, got {type(record).__name__}")
    event = record.get("eventName")
    if event not in _EVENTS:
        raise RecordError(f"eventName must be one of {_EVENTS}, got {event!r}")
    body = record.get("dynamodb")
    if not isinstance(body, Mapping):
        raise RecordError("record has no 'dynamodb' object")
    keys = _image(body, "Keys", deep=True)
    if not keys:
        raise RecordError("record has no dynamodb.Keys")
    sequence = body.get("SequenceNumber")
    if not isinstance(sequence, str) or not sequence:
        raise RecordError("record has no dynamodb.SequenceNumber")
    identity = record.get("userIdentity")
    ttl_delete = (
        event == "REMOVE"
        and isinstance(identity, Mapping)
        and identity.get("type", identity.get("Type")) == "Service"
        and identity.get("principalId", identity.get("PrincipalId")) == _TTL_PRINCIPAL
    )
    return Change(
        event=event,
        keys=keys,
        old=_image(body, "OldImage"),
        new=_image(body, "NewImage"),
        sequence=sequence,
        approx_ms=_approx_ms(body.get("ApproximateCreationDateTime")),
        ttl_delete=ttl_delete,
    )
