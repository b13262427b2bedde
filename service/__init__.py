"""georep: multi-active, conflict-resolving replication for Amazon DynamoDB.

The pure core lives in ``service.core``; ports and adapters around it in ``service``.
"""

from service.core.adopt import Adopt, Drop, Forward, Restore, translate
from service.core.apply import Annotate, Decision, Defer, Skip, Write, decide, merge
from service.core.records import parse_record
from service.core.stamp import stamp
from service.core.stored import Settings, read_item
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
    "Defer",
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
