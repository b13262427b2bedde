"""What a replica table must look like: its key schema, its stream, its TTL (pure checks).

service/engine/preflight.py runs them against DescribeTable at start-up; the embedded backend
creates tables that pass them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from service.core.version import TTL_ATTR

KeyType = Literal["S", "N", "B"]


STREAM_VIEW_TYPE: Final = "NEW_AND_OLD_IMAGES"


@dataclass(frozen=True)
class Keys:
    """The key schema a replica table must have."""

    partition_key: str
    partition_key_type: KeyType = "S"
    sort_key: str | None = None
    sort_key_type: KeyType = "S"

    def schema(self) -> list[tuple[str, str, str]]:
        """(attribute, HASH/RANGE, type) for each key, partition key first."""
        keys: list[tuple[str, str, str]] = [(self.partition_key, "HASH", self.partition_key_type)]
        if self.sort_key is not None:
            keys.append((self.sort_key, "RANGE", self.sort_key_type))
        return keys


def _show(schema: list[tuple[str, str, str]]) -> str:
    role = {"HASH": "partition key", "RANGE": "sort key"}
    return " + ".join(f"{name} ({role.get(kind, kind)}, {typ})" for name, kind, typ in schema)


def key_problems(table: Mapping[str, Any], *, keys: Keys) -> list[str]:
    """What is wrong with a DescribeTable ``Table``'s key schema, each with its fix."""
    types = {d["AttributeName"]: d["AttributeType"] for d in table.get("AttributeDefinitions", [])}
    actual = [
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
        for k in table.get("KeySchema", [])
    ]
    wanted = keys.schema()
    if actual == wanted:
        return []
    if [(n, k) for n, k, _ in actual] == [(n, k) for n, k, _ in wanted]:
        option = {"HASH": "partition_key_type", "RANGE": "sort_key_type"}
        return [
            f"key {name} has type {typ}, the configuration says {want}: set [table] "
            f'{option[kind]} = "{typ}" (the table\'s key types cannot change)'
            for (name, kind, typ), (_, _, want) in zip(actual, wanted, strict=True)
            if typ != want
        ]
    return [
        f"key schema is {_show(actual)}, the configuration says {_show(wanted)}: set [table] "
        "partition_key and sort_key (and their _type) to the table's keys, or point this "
        "region's [[regions]] table at a table with the configured keys"
    ]


def stream_problems(table: Mapping[str, Any]) -> list[str]:
    """What is wrong with a DescribeTable ``Table``'s stream, with its fix."""
    stream = table.get("StreamSpecification") or {}
    if not stream.get("StreamEnabled"):
        return [
            f"its stream is off: enable it with StreamViewType {STREAM_VIEW_TYPE} "
            "(UpdateTable StreamSpecification)"
        ]
    view = stream.get("StreamViewType")
    if view != STREAM_VIEW_TYPE:
        return [
            f"stream view type is {view}, georep needs {STREAM_VIEW_TYPE} (without old images "
            "every delete is dead-lettered and the regions differ): disable the stream, then "
            f"enable it with {STREAM_VIEW_TYPE} (a stream's view type cannot be changed)"
        ]
    return []


def ttl_problems(ttl: Mapping[str, Any], *, attribute: str = TTL_ATTR) -> list[str]:
    """What is wrong with a DescribeTimeToLive ``TimeToLiveDescription``, with its fix."""
    status = ttl.get("TimeToLiveStatus", "DISABLED")
    current = ttl.get("AttributeName")
    why = "tombstones are never collected otherwise"
    if status in ("ENABLED", "ENABLING"):
        if current == attribute:
            return []
        return [
            f"TTL is on attribute {current!r}, georep needs it on {attribute!r} ({why}; a table "
            f"has one TTL attribute): disable it, then enable it on {attribute}"
        ]
    if status == "DISABLING":
        return [
            f"TTL is being disabled, georep needs it on {attribute!r} ({why}): once it is off "
            f"(up to an hour), enable it on {attribute} (UpdateTimeToLive)"
        ]
    return [
        f"TTL is off, georep needs it on {attribute!r} ({why}): enable it "
        f"(UpdateTimeToLive Enabled=true, AttributeName={attribute})"
    ]


def table_problems(
    table: Mapping[str, Any], ttl: Mapping[str, Any], *, keys: Keys, ttl_attribute: str = TTL_ATTR
) -> list[str]:
    """Everything that keeps a table from being a replica: keys, stream, TTL."""
    return (
        key_problems(table, keys=keys)
        + stream_problems(table)
        + ttl_problems(ttl, attribute=ttl_attribute)
    )
