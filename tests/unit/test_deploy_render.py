"""`georep deploy render` refuses what would deploy the wrong thing, with one line, exit 2."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.surfaces.cli import main

TOML = (
    '[table]\nname = "orders"\npartition_key = "pk"\n\n'
    '[[regions]]\nname = "eu-west-1"{e}\n\n[[regions]]\nname = "us-east-1"\n'
)


@pytest.mark.parametrize(
    ("extra", "endpoint", "says"),
    [
        (["--account-id", "1234"], "", "is not a 12-digit AWS account id"),
        (["--account-id", "123456789012"], '\nendpoint_url = "http://127.0.0.1:9"', "endpoint_url"),
        (
            ["--account-id", "123456789012", "--existing", "eu-west-1=arn:nope"],
            "",
            "expected REGION=STREAM_ARN",
        ),
        (
            [
                "--account-id",
                "123456789012",
                "--existing",
                "eu-west-1=arn:aws:dynamodb:eu-west-1:123456789012:table/other/stream/x",
            ],
            "",
            "expected 'orders' in eu-west-1",
        ),
    ],
    ids=["account", "endpoint", "arn-shape", "arn-table"],
)
def test_render_refuses_a_wrong_account_an_emulator_or_a_foreign_stream(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], extra: list[str], endpoint: str, says: str
) -> None:
    config = tmp_path / "georep.toml"
    config.write_text(TOML.format(e=endpoint))

    code = main(["deploy", "render", "-c", str(config), "--out", str(tmp_path / "p"), *extra])

    assert 2 == code
    assert says in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_render_refuses_a_configuration_without_a_conflict_log(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The stack always has the conflict table, and its role may hold only grants it uses."""
    config = tmp_path / "georep.toml"
    config.write_text(TOML.format(e="") + '\n[replication]\nconflict_table = ""\n')

    render = ["deploy", "render", "-c", str(config), "--out", str(tmp_path / "p")]

    code = main([*render, "--account-id", "123456789012"])

    assert 2 == code
    assert "conflict_table" in capsys.readouterr().err
    assert not (tmp_path / "p").exists()


def test_render_reports_in_json_with_snake_case_keys(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, point 10: ``--json`` everywhere a command reports."""
    import json

    config = tmp_path / "georep.toml"
    config.write_text(TOML.format(e=""))
    out = tmp_path / "params"
    argv = ["deploy", "render", "-c", str(config), "--account-id", "123456789012"]
    assert 0 == main([*argv, "--out", str(out), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    assert {"region", "table", "table_is", "parameter_file"} == set(rows[0])
    assert ["eu-west-1", "us-east-1"] == [row["region"] for row in rows]


def test_the_stack_parameters_name_every_regions_tombstone_store_only_with_the_store() -> None:
    """Issue 22: with ``tombstone_store`` on, the stack creates the region's store and grants
    the other regions' (same name in every region), as it is by default; off, both
    parameters are empty."""
    from service.config import parse_config
    from service.surfaces.commands.deploy import parameters

    regions = [{"name": r} for r in ("eu-west-1", "us-east-1", "ap-southeast-2")]
    base = {"table": {"name": "orders", "partition_key": "pk"}, "regions": regions}
    off = parameters(
        parse_config({**base, "replication": {"tombstone_store": False}}),
        region="eu-west-1",
        account_id="123456789012",
    )
    on = parameters(parse_config(base), region="eu-west-1", account_id="123456789012")

    assert ("", "") == (off["TombstoneTableName"], off["PeerTombstoneTableArns"])
    assert "georep-tombstones" == on["TombstoneTableName"]
    assert [
        "arn:aws:dynamodb:us-east-1:123456789012:table/georep-tombstones",
        "arn:aws:dynamodb:ap-southeast-2:123456789012:table/georep-tombstones",
    ] == on["PeerTombstoneTableArns"].split(",")
