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
    with pytest.raises(ConfigError, match="georep init"):
        load_config(tmp_path / "missing.toml")
    bad = tmp_path / "bad.toml"
    bad.write_text("[table\nname=")
    with pytest.raises(ConfigError, match="not valid TOML"):
        load_config(bad)
