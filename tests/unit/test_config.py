"""georep.toml: valid configurations load; invalid ones are refused with one clear message."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.config import ConfigError, load_config, parse_config
from service.errors import GeorepError, LawViolation, UnknownRegionError

MINIMAL = """
[table]
name = "orders"
partition_key = "pk"
resolver = "lww"

[[regions]]
name = "eu-west-1"

[[regions]]
name = "us-east-1"
endpoint_url = "http://127.0.0.1:8000"
"""


def doc(**table: Any) -> dict[str, Any]:
    base: dict[str, Any] = {"name": "orders", "partition_key": "pk", "resolver": "lww"}
    return {"table": {**base, **table}, "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}]}


def test_the_minimal_form_loads(tmp_path: Path) -> None:
    path = tmp_path / "georep.toml"
    path.write_text(MINIMAL)
    config = load_config(path)
    assert ("eu-west-1", "us-east-1") == config.region_names
    assert ("pk",) == config.key_attributes
    assert "lww" == config.settings().resolver.name
    assert "orders" == config.table_name("us-east-1")


def test_a_sort_key_joins_the_key_attributes() -> None:
    assert ("pk", "sk") == parse_config(doc(sort_key="sk")).key_attributes


@pytest.mark.parametrize(
    ("document", "needle"),
    [
        ({"regions": [{"name": "a"}, {"name": "b"}]}, "table"),
        ({"table": {"name": "orders"}, "regions": [{"name": "a"}, {"name": "b"}]}, "partition_key"),
        ({**doc(), "regions": [{"name": "eu-west-1"}, {"name": "eu-west-1"}]}, "listed twice"),
        ({**doc(), "regions": [{"name": "eu-west-1"}]}, "regions"),
        ({**doc(), "surprise": 1}, "surprise"),
        (doc(tombstone_horizon_hours=1), "tombstone_horizon_hours"),
        (doc(sort_key="pk"), "sort_key"),
    ],
)
def test_invalid_configuration_is_one_clear_error_naming_the_field(
    document: dict[str, Any], needle: str
) -> None:
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert needle in str(error.value)


def test_an_unknown_resolver_is_refused() -> None:
    with pytest.raises(GeorepError, match="nope"):
        parse_config(doc(resolver="nope")).settings()


def test_the_explicit_law_check_refuses_a_user_rule_that_breaks_its_laws_unless_unsafe() -> None:
    """``settings(check_laws=True)`` (what ``georep check-rule`` and ``georep run`` do) refuses
    an unlawful rule with the law it breaks and the minimal counterexample."""
    options = {"rule": "tests.property.example_rules:local_wins"}
    with pytest.raises(LawViolation) as refused:
        parse_config(doc(resolver="rules", resolver_options=options)).settings(check_laws=True)
    assert "commutative" == refused.value.law
    assert 2 == len(refused.value.counterexample)  # the two versions merge order decides
    unsafe = parse_config(doc(resolver="rules", resolver_options={**options, "unsafe": True}))
    assert "rules" == unsafe.settings(check_laws=True).resolver.name


def test_an_unknown_region_is_a_typed_error() -> None:
    with pytest.raises(UnknownRegionError, match="mars-north-1"):
        parse_config(doc()).region("mars-north-1")


def test_a_missing_or_broken_file_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[table\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)


def test_a_config_path_that_is_a_folder_is_a_config_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="is a folder, not a file"):
        load_config(tmp_path)


def test_a_config_file_that_is_not_utf8_is_a_config_error(tmp_path: Path) -> None:
    """TOML is UTF-8 whatever the locale: a Latin-1 file is refused, naming the byte."""
    path = tmp_path / "georep.toml"
    path.write_bytes(MINIMAL.replace('"orders"', '"ordères"').encode("latin-1"))
    with pytest.raises(ConfigError, match=r"not UTF-8 text \(byte 0xe8 at offset \d+\)"):
        load_config(path)


@pytest.mark.parametrize("attribute", [5, 1.5, True, "", "  ", ["version"], {"name": "v"}])
def test_a_version_counter_attribute_that_is_not_an_attribute_name_is_refused(
    attribute: object,
) -> None:
    """The counter attribute must be a name; anything else used to fall back silently to the
    update count (the version was never found under a number)."""
    with pytest.raises(ConfigError) as error:
        parse_config(doc(resolver="version-counter", resolver_options={"attribute": attribute}))
    message = str(error.value)
    assert "table.resolver_options" in message
    assert "'attribute' must be the name of a numeric attribute" in message


def test_an_unsafe_flag_that_is_not_a_boolean_is_refused() -> None:
    """``unsafe = "false"`` is truthy: it would have skipped the law check."""
    options = {"rule": "tests.property.example_rules:union_tags", "unsafe": "false"}
    with pytest.raises(ConfigError, match="'unsafe' must be true or false"):
        parse_config(doc(resolver="rules", resolver_options=options))


def test_resolver_options_are_checked_when_the_file_is_parsed() -> None:
    with pytest.raises(ConfigError, match=r"does not take option\(s\) \['attribute'\]"):
        parse_config(doc(resolver="lww", resolver_options={"attribute": "v"}))
    with pytest.raises(ConfigError, match="needs option rule"):
        parse_config(doc(resolver="rules"))
    with pytest.raises(ConfigError, match=r"table\.resolver: unknown resolver 'nope'"):
        parse_config(doc(resolver="nope"))


def test_an_idle_backoff_above_its_maximum_is_refused() -> None:
    document = {**doc(), "replication": {"idle_backoff_seconds": 2, "max_idle_backoff_seconds": 1}}
    with pytest.raises(ConfigError) as error:
        parse_config(document)
    assert "replication: idle_backoff_seconds (2.0) is above max_idle_backoff_seconds (1.0)" in str(
        error.value
    )


def test_an_idle_backoff_equal_to_its_maximum_is_accepted() -> None:
    document = {**doc(), "replication": {"idle_backoff_seconds": 1, "max_idle_backoff_seconds": 1}}
    assert 1.0 == parse_config(document).replication.max_idle_backoff_seconds


def test_conflicts_are_logged_in_georep_conflicts_for_30_days_unless_the_table_is_empty() -> None:
    """The minimal form logs conflicts; an empty ``conflict_table`` (TOML has no null) turns
    the log off; a table name DynamoDB would refuse is refused here."""
    default = parse_config(doc()).replication
    off = parse_config({**doc(), "replication": {"conflict_table": ""}}).replication

    assert ("georep-conflicts", 30) == (default.conflict_table, default.conflict_retention_days)
    assert off.conflict_table is None
    with pytest.raises(ConfigError, match="conflict_table"):
        parse_config({**doc(), "replication": {"conflict_table": "no spaces"}})
    with pytest.raises(ConfigError, match="conflict_retention_days"):
        parse_config({**doc(), "replication": {"conflict_retention_days": 0}})


def test_the_tombstone_store_is_on_by_default_and_off_only_when_asked_or_under_residency() -> None:
    """The minimal form has the store, and the core's settings say so; ``false`` keeps
    tombstones in the table; residency rules, anywhere they can be written (top level,
    ``[table]``, any of ``[[tables]]``), make the default off and say why; the store's table
    name is one DynamoDB accepts."""
    minimal = parse_config(doc())
    assert minimal.settings().tombstone_store and not minimal.store_off_for_residency
    assert "georep-tombstones" == minimal.replication.tombstone_table
    off = parse_config({**doc(), "replication": {"tombstone_store": False}})
    assert not off.settings().tombstone_store and not off.store_off_for_residency
    filters = [{"name": "eu", "when": {"attribute": "r", "equals": "EU"}, "regions": ["eu-west-1"]}]
    redactions = [{"attributes": ["ssn"], "regions": ["us-east-1"]}]
    table = doc()["table"]
    for residency in (
        {**doc(), "filters": filters},
        {**doc(), "redactions": redactions},
        {**doc(), "table": {**table, "redactions": redactions}},
        {
            **{k: v for k, v in doc().items() if k != "table"},
            "tables": [table, {**table, "name": "other", "filters": filters}],
        },
    ):
        config = parse_config(residency)
        assert not config.replication.tombstone_store
        assert config.store_off_for_residency  # names the tables, for `georep run`
    with pytest.raises(ConfigError, match="tombstone_table"):
        parse_config({**doc(), "replication": {"tombstone_table": "no spaces"}})


def test_the_tombstone_store_is_refused_where_it_is_not_proven_yet() -> None:
    """The store converges under every resolver family (the store state machines); with
    residency rules it is not proven yet, so turning it on there is a configuration error
    that names the way out, not a silent risk."""
    store = {"replication": {"tombstone_store": True}}
    rule = {"rule": "tests.property.example_rules:union_tags"}
    for resolver in ("lww", "version-counter"):
        assert parse_config({**doc(resolver=resolver), **store}).settings().tombstone_store
    merging = parse_config({**doc(resolver="rules", resolver_options=rule), **store})
    assert merging.settings().resolver.keeps_deleted_data and merging.settings().tombstone_store
    filters = [{"name": "eu", "when": {"attribute": "r", "equals": "EU"}, "regions": ["eu-west-1"]}]
    with pytest.raises(ConfigError, match="not supported with residency rules"):
        parse_config({**doc(), "filters": filters, **store})
    # Without the store residency rules load as before.
    assert parse_config({**doc(), "filters": filters}).settings().residency is not None
