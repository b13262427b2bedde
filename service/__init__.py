"""georep: multi-active, conflict-resolving replication for Amazon DynamoDB.

The pure core lives in ``service.core``; ports and adapters around it in ``service``.
"""

from service.core.apply import (
    Adopt,
    Annotate,
    Decision,
    Drop,
    Forward,
    Restore,
    Settings,
    Skip,
    Write,
    decide,
    merge,
    read_item,
    stamp,
    translate,
)
from service.core.records import parse_record
from service.core.version import META_ATTR, TTL_ATTR, Meta, Order, Version, VersionVector
from service.errors import (
    ConsumerHaltedError,
    EventError,
    GeorepError,
    ItemTooLargeError,
    LawViolation,
    MetadataError,
    RecordError,
    RequestRejectedError,
    RuleError,
    UnknownRegionError,
)

__all__ = [
    "META_ATTR",
    "TTL_ATTR",
    "Adopt",
    "Annotate",
    "ConsumerHaltedError",
    "Decision",
    "Drop",
    "EventError",
    "Forward",
    "GeorepError",
    "ItemTooLargeError",
    "LawViolation",
    "Meta",
    "MetadataError",
    "Order",
    "RecordError",
    "RequestRejectedError",
    "Restore",
    "RuleError",
    "Settings",
    "Skip",
    "UnknownRegionError",
    "Version",
    "VersionVector",
    "Write",
    "decide",
    "merge",
    "parse_record",
    "read_item",
    "stamp",
    "translate",
]
