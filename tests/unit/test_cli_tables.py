"""``--table`` on the commands that work on one table or several: with several tables configured
a command that needs one refuses to guess (exit 2, one line naming the tables), an unknown
table is exit 2, and every such command says so in its help.

Nothing here reaches the network: the endpoints are a closed loopback port, so a refusal that
came after the first request would fail on that instead (exit 1, "cannot reach").
"""

from __future__ import annotations

import socket
from pathlib import Path

import pytest

from service.surfaces.cli import main

TWO_TABLES = """
[[tables]]
name = "orders"
partition_key = "pk"
sort_key = "sk"
sort_key_type = "N"

[[tables]]
name = "counters"
partition_key = "id"
partition_key_type = "N"
resolver = "version-counter"
resolver_options = {{ attribute = "version" }}
name_in = {{ "us-east-1" = "counters-us" }}

[[regions]]
name = "eu-west-1"
endpoint_url = "http://127.0.0.1:{port}"

[[regions]]
name = "us-east-1"
endpoint_url = "http://127.0.0.1:{port}"
"""


@pytest.fixture
def config(tmp_path: Path) -> Path:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    path = tmp_path / "georep.toml"
    path.write_text(TWO_TABLES.format(port=port))
    return path


@pytest.mark.parametrize(
    "argv",
    [
        ["backfill", "--from", "eu-west-1"],
        ["verify", "--key", "o1", "--sort-key", "1"],
        ["conflicts", "list", "--key", "o1", "--sort-key", "1"],
        ["check-rule"],
        ["chaos", "--duration", "1"],
    ],
    ids=["backfill", "verify --key", "conflicts --key", "check-rule", "chaos"],
)
def test_a_command_on_one_table_asks_which_when_several_are_configured(
    argv: list[str], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "-c", str(config)])

    err = capsys.readouterr().err
    assert 2 == code, err
    assert (
        "georep: georep.toml configures 2 tables (orders, counters): say which one with "
        "--table NAME"
    ) in err
    assert 1 == len(err.strip().splitlines())


@pytest.mark.parametrize(
    "argv",
    [
        ["verify", "--table", "order"],
        ["backfill", "--from", "eu-west-1", "--table", "order"],
        ["status", "--table", "order"],
        ["conflicts", "list", "--table", "order"],
        ["dlq", "list", "--region", "eu-west-1", "--table", "order"],
        ["chaos", "--table", "order"],
    ],
    ids=["verify", "backfill", "status", "conflicts", "dlq", "chaos"],
)
def test_an_unknown_table_is_a_usage_error_with_the_configured_ones(
    argv: list[str], config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*argv, "-c", str(config)])

    err = capsys.readouterr().err
    assert 2 == code, err
    assert (
        "table 'order' is not configured in georep.toml: did you mean orders? "
        "(configured: orders, counters)"
    ) in err


def test_a_key_of_the_table_named_is_typed_by_that_tables_schema(
    config: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """``--key`` is read with the named table's keys: counters' partition key is a number
    and it has no sort key."""
    code = main(["verify", "--table", "counters", "--key", "one", "-c", str(config)])
    assert (2, "georep: --key must be a number for this table, got 'one'\n") == (
        code,
        capsys.readouterr().err,
    )
    code = main(
        ["verify", "--table", "counters", "--key", "1", "--sort-key", "2", "-c", str(config)]
    )
    assert 2 == code
    assert "table counters has no sort key" in capsys.readouterr().err


@pytest.mark.parametrize(
    "argv",
    [
        ["verify"],
        ["backfill"],
        ["status"],
        ["conflicts", "list"],
        ["chaos"],
        ["dlq", "list"],
        ["dlq", "replay"],
        ["check-rule"],
    ],
)
def test_every_command_that_works_per_table_documents_its_table_option(
    argv: list[str], capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as done:
        main([*argv, "--help"])

    assert 0 == done.value.code
    assert "--table NAME" in capsys.readouterr().out
