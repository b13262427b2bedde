"""Configuration mistakes in georep's words (issue 18, point 12): region names checked against
DynamoDB's regions (botocore's partition data) unless an endpoint_url is set, a misspelled
setting answered with the one it resembles, and no Python reprs (``['eu-west-1']``)."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.surfaces.cli import main

MINIMAL = """
[table]
name = "orders"
{table_key} = "pk"

[[regions]]
name = "{first}"
{endpoint}
[[regions]]
name = "us-east-1"
"""


def configured(
    tmp_path: Path, *, first: str, endpoint: str = "", table_key: str = "partition_key"
) -> str:
    path = tmp_path / "georep.toml"
    path.write_text(MINIMAL.format(first=first, endpoint=endpoint, table_key=table_key))
    return str(path)


def one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert [err] == err.splitlines()
    return err


@pytest.mark.parametrize(
    ("name", "says"),
    [
        ("moon-1", "[[regions]] name moon-1 is not a DynamoDB region (for an emulator"),
        ("eu-west1", "[[regions]] name eu-west1 is not a DynamoDB region: did you mean eu-west-1?"),
    ],
)
def test_a_region_name_dynamodb_does_not_have_is_refused_with_exit_2(
    name: str, says: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert 2 == main(["check-rule", "-c", configured(tmp_path, first=name)])
    assert f"georep: {says}" in one_line(capsys)


def test_any_region_name_is_accepted_with_an_endpoint_url(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configured(tmp_path, first="moon-1", endpoint='endpoint_url = "http://127.0.0.1:9"')
    assert 0 == main(["check-rule", "-c", path])


def test_a_misspelled_setting_is_answered_with_the_one_it_resembles(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configured(tmp_path, first="eu-west-1", table_key="partion_key")
    assert 2 == main(["check-rule", "-c", path])
    line = one_line(capsys)
    assert "table.partion_key: not a setting georep knows: did you mean partition_key?" in line
    assert "table.partition_key: is required" in line
    assert "Extra inputs are not permitted" not in line and "Field required" not in line


def test_an_unknown_region_option_is_said_without_python_reprs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = configured(tmp_path, first="eu-west-1")
    assert 2 == main(["dlq", "list", "--region", "eu-west-2", "-c", path])
    assert (
        "georep: region eu-west-2 is not configured in georep.toml: did you mean eu-west-1? "
        "(configured: eu-west-1, us-east-1)"
    ) == one_line(capsys)
