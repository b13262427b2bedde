"""The public surface is pinned: a change to it is a decision, not an accident."""

from __future__ import annotations

import resolvers
import service


def test_service_exports_exactly_its_public_names() -> None:
    expected = {
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
    }
    assert expected == set(service.__all__)
    assert all(hasattr(service, name) for name in service.__all__)


def test_resolvers_exports_the_protocol_the_registry_and_every_resolver() -> None:
    for name in (
        "Resolver",
        "Resolution",
        "LastWriterWins",
        "VersionCounter",
        "UserRule",
        "FieldRules",
        "build",
        "check",
        "field_rules",
        "union",
        "maximum",
        "minimum",
        "pn_counter",
        "prefer_region",
    ):
        assert name in resolvers.__all__, name
    assert all(hasattr(resolvers, name) for name in resolvers.__all__)


def test_the_sdk_exports_both_forms_and_nothing_else() -> None:
    """What applications import from ``service.sdk`` (README, "Writing through georep")."""
    import service.sdk

    expected = {
        "BatchWriteError",
        "Clock",
        "GeorepTable",
        "Paginator",
        "ResourceTable",
        "application_data",
    }
    assert expected == set(service.sdk.__all__)
    assert all(hasattr(service.sdk, name) for name in service.sdk.__all__)
