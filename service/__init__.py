"""georep: multi-active, conflict-resolving replication for Amazon DynamoDB.

The pure core lives in ``service.core``; ports and adapters around it in ``service``.
"""

from service.core.apply import (
    Adopt,
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
    GeorepError,
    ItemTooLargeError,
    LawViolation,
    MetadataError,
    RecordError,
    RuleError,
    UnknownRegionError,
)

__all__ = [
    "META_ATTR",
    "TTL_ATTR",
    "Adopt",
    "Decision",
    "Drop",
    "Forward",
    "GeorepError",
    "ItemTooLargeError",
    "LawViolation",
    "Meta",
    "MetadataError",
    "Order",
    "RecordError",
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
