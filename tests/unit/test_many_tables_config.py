"""``[[tables]]``: several tables, each with its own keys and resolver, next to the single
``[table]`` form; exactly one of the two, unique names, and each table's name per region."""

from __future__ import annotations

from typing import Any

import pytest

from service.config import ConfigError, parse_config

REGIONS = [{"name": "eu-west-1"}, {"name": "us-east-1"}]
ORDERS = {"name": "orders", "partition_key": "pk", "sort_key": "sk", "sort_key_type": "N"}
COUNTERS = {
    "name": "counters",
    "partition_key": "id",
    "partition_key_type": "N",
    "resolver": "version-counter",
    "resolver_options": {"attribute": "version"},
}


def many(*tables: dict[str, Any], **extra: Any) -> dict[str, Any]:
    return {"tables": list(tables), "regions": REGIONS, **extra}


def test_each_table_keeps_its_own_keys_and_resolver() -> None:
    config = parse_config(many(ORDERS, COUNTERS))

    assert ("orders", "counters") == config.table_names
    orders, counters = config.for_table("orders"), config.for_table("counters")
    assert (("pk", "sk"), "lww") == (orders.key_attributes, orders.settings().resolver.name)
    assert (("id",), "version-counter") == (
        counters.key_attributes,
        counters.settings().resolver.name,
    )
    assert "N" == counters.key_schema().partition_key_type
    assert ("orders", "counters") == tuple(c.table.name for c in config.scoped())


def test_the_single_form_is_one_table_and_scoping_it_changes_nothing() -> None:
    config = parse_config({"table": ORDERS, "regions": REGIONS})

    assert ("orders",) == config.table_names
    assert config is config.for_table(None) is config.for_table("orders")
    assert "orders" == config.table.name


def test_an_unscoped_configuration_of_several_tables_refuses_to_pick_one() -> None:
    """Code that forgot to scope fails loudly instead of serving the first table."""
    config = parse_config(many(ORDERS, COUNTERS))

    with pytest.raises(ConfigError, match=r"configures 2 tables \(orders, counters\): .*--table"):
        _ = config.table
    with pytest.raises(ConfigError, match=r"--table"):
        config.for_table(None)
    with pytest.raises(ConfigError, match=r"table 'order' is not configured.*did you mean orders"):
        config.for_table("order")


@pytest.mark.parametrize(
    ("document", "message"),
    [
        (
            {"table": ORDERS, "tables": [COUNTERS], "regions": REGIONS},
            "give either [table] (one table) or [[tables]] (several), not both",
        ),
        ({"regions": REGIONS}, "no table: add a [table] section (or [[tables]], one per table)"),
        (many(), "tables: List should have at least 1 item"),
        (many(ORDERS, {**COUNTERS, "name": "orders"}), "table(s) ['orders'] listed twice"),
        (
            many(ORDERS, COUNTERS, regions=[{"name": "eu-west-1", "table": "x-eu"}, REGIONS[1]]),
            "[[regions]] table is for the single [table] form (set in ['eu-west-1'])",
        ),
        (
            many({**ORDERS, "name_in": {"mars-1": "orders-mars"}}, COUNTERS),
            "table orders: name_in names region(s) ['mars-1'] that are not in [[regions]]",
        ),
        (
            many({**ORDERS, "name_in": {"us-east-1": "counters"}}, COUNTERS),
            "in us-east-1, several tables are named ['counters']",
        ),
        (
            many({**ORDERS, "name_in": {"us-east-1": "no spaces"}}, COUNTERS),
            "tables.0.name_in.us-east-1: String should match pattern",
        ),
        (many({**ORDERS, "sort_key": "pk"}, COUNTERS), "tables.0.sort_key"),
        (many(ORDERS, {**COUNTERS, "resolver": "nope"}), "tables.1.resolver: unknown resolver"),
        (many({**ORDERS, "nmae_in": {}}, COUNTERS), "did you mean name_in?"),
        ({"tabels": [ORDERS], "regions": REGIONS}, "tabels: not a setting georep knows"),
    ],
)
def test_a_wrong_tables_configuration_is_one_clear_line(
    document: dict[str, Any], message: str
) -> None:
    with pytest.raises(ConfigError) as refused:
        parse_config(document)

    assert message in str(refused.value)
    assert "\n" not in str(refused.value)


def test_a_table_has_its_own_name_in_a_region_where_it_differs() -> None:
    """``name_in`` per table; the single form keeps ``[[regions]] table``, and may use either."""
    config = parse_config(many({**ORDERS, "name_in": {"us-east-1": "orders-us"}}, COUNTERS))
    single = parse_config(
        {"table": ORDERS, "regions": [REGIONS[0], {"name": "us-east-1", "table": "orders-us"}]}
    )
    both = parse_config(
        {
            "table": {**ORDERS, "name_in": {"us-east-1": "orders-us"}},
            "regions": [REGIONS[0], {"name": "us-east-1", "table": "orders-us"}],
        }
    )

    orders = config.for_table("orders")
    assert ("orders", "orders-us") == (
        orders.table_name("eu-west-1"),
        orders.table_name("us-east-1"),
    )
    assert "counters" == config.for_table("counters").table_name("us-east-1")
    assert "orders-us" == single.table_name("us-east-1") == both.table_name("us-east-1")
    assert config.tables[0] == config.table_for("us-east-1", "orders-us")
    assert config.table_for("eu-west-1", "orders-us") is None
    with pytest.raises(ConfigError, match=r"name_in says 'orders-x', .* says 'orders-us'"):
        parse_config(
            {
                "table": {**ORDERS, "name_in": {"us-east-1": "orders-x"}},
                "regions": [REGIONS[0], {"name": "us-east-1", "table": "orders-us"}],
            }
        )


def test_the_sdk_picks_its_table_by_name_and_asks_which_when_several() -> None:
    """``table=`` names a configured table; its name in the region, keys and resolver follow."""
    import boto3

    from service.sdk import GeorepTable

    config = parse_config(many({**ORDERS, "name_in": {"us-east-1": "orders-us"}}, COUNTERS))
    client = boto3.client(  # never called: building a table reads nothing
        "dynamodb", region_name="us-east-1", aws_access_key_id="x", aws_secret_access_key="x"
    )

    orders = GeorepTable(client, config=config, region="us-east-1", table="orders")
    counters = GeorepTable.resource(client, config=config, region="us-east-1", table="counters")
    assert ("orders-us", ("pk", "sk")) == (orders.table_name, orders.settings.key_attributes)
    assert ("counters", "version-counter") == (
        counters.table_name,
        counters.low_level.settings.resolver.name,
    )
    with pytest.raises(ConfigError, match="--table"):
        GeorepTable(client, config=config, region="us-east-1")
