"""One error path for every command (issue 18, points 3 and 4): the same failure gives the
same exit code and the same one line on stderr, naming the region and the table, whichever
command met it, and fails fast (the preflight's short connect timeout and one retry).

Nothing here needs an emulator: the endpoints are closed loopback ports (nothing listening),
and the credentials are missing or dummies. The missing table, which needs a server that
answers, is in tests/integration/test_cli_failures.py; permission and throttling, which the
embedded backend cannot produce, are classified from botocore's own exceptions below.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from botocore.exceptions import ClientError, ConnectionClosedError, EndpointConnectionError

from service.engine.preflight import PREFLIGHT_CONFIG, RegionError, _transient
from service.surfaces.cli import main
from service.surfaces.failures import classify
from tests.unit.test_cli_refusals import no_aws_environment, write_config

# Every command that reaches AWS, as a person types it.
AWS_COMMANDS = {
    "init": ["init"],
    "run": ["run", "--region", "eu-west-1"],
    "backfill": ["backfill", "--from", "eu-west-1"],
    "verify": ["verify"],
    "verify --key": ["verify", "--key", "cart#1"],
    "status": ["status"],
    "dlq list": ["dlq", "list", "--region", "eu-west-1"],
    "dlq show": ["dlq", "show", "01J", "--region", "eu-west-1"],
    "dlq replay": ["dlq", "replay", "--all", "--region", "eu-west-1"],
    "conflicts list": ["conflicts", "list"],
}
EVERY_COMMAND = {
    **AWS_COMMANDS,
    "check-rule": ["check-rule"],
    "deploy render": ["deploy", "render", "--account-id", "123456789012", "--out", "x"],
}


def _environment(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, **extra: str) -> None:
    for name, value in {**no_aws_environment(tmp_path), **extra}.items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def _one_line(capsys: pytest.CaptureFixture[str]) -> str:
    err = capsys.readouterr().err.strip()
    assert [err] == err.splitlines(), err
    assert err.startswith("georep: "), err
    return err


@pytest.mark.parametrize("command", EVERY_COMMAND)
def test_a_missing_configuration_is_one_line_and_exit_2_for_every_command(
    command: str, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    code = main([*EVERY_COMMAND[command], "-c", str(tmp_path / "georep.toml")])
    assert 2 == code
    assert "georep.toml: no such file" in _one_line(capsys)


@pytest.mark.parametrize("command", AWS_COMMANDS)
def test_missing_credentials_are_one_line_with_the_fix_and_exit_2_for_every_command(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The same line from every command (init and status printed a FAILED row, verify, dlq
    and conflicts the bare "Unable to locate credentials")."""
    _environment(monkeypatch, tmp_path)
    code = main([*AWS_COMMANDS[command], "-c", str(write_config(tmp_path))])
    assert 2 == code
    line = _one_line(capsys)
    assert line.startswith("georep: no usable AWS credentials (Unable to locate credentials)")
    assert "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY" in line


@pytest.mark.parametrize("command", AWS_COMMANDS)
def test_nothing_listening_at_the_endpoint_is_one_line_naming_region_and_table_exit_1(
    command: str,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Nothing listening: one line naming the region, the table and the endpoint, exit 1
    (init printed FAILED rows on stdout after 30 s). status shows the regions it could not
    reach as rows with the same words, and exits 1."""
    _environment(monkeypatch, tmp_path, AWS_ACCESS_KEY_ID="x", AWS_SECRET_ACCESS_KEY="x")
    path = write_config(tmp_path)
    endpoint = next(line for line in path.read_text().splitlines() if "endpoint_url" in line)
    url = endpoint.split('"')[1]

    code = main([*AWS_COMMANDS[command], "-c", str(path)])

    expected = f"region eu-west-1, table orders: cannot reach {url} (connection refused)"
    assert 1 == code
    if command == "status":
        captured = capsys.readouterr()
        assert expected in " ".join(captured.out.split()), captured.out
        assert "" == captured.err
        return
    assert _one_line(capsys).startswith(f"georep: {expected}: is the server running there?")


def test_the_preflight_connects_with_a_short_timeout_and_retries_once() -> None:
    """What keeps an unreachable region under 3 s: connect within 1 s, two attempts in all
    (botocore's own settings; the work keeps the patient BOTO_CONFIG)."""
    assert 1 == PREFLIGHT_CONFIG.connect_timeout
    assert {"mode": "standard", "total_max_attempts": 2} == PREFLIGHT_CONFIG.retries


def _refused(code: str, status: int = 400) -> ClientError:
    response = {
        "Error": {"Code": code, "Message": "nope"},
        "ResponseMetadata": {"HTTPStatusCode": status},
    }
    return ClientError(response, "DescribeTable")  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("cause", "code", "expected"),
    [
        pytest.param(
            _refused("ResourceNotFoundException"),
            2,
            "region eu-west-1, table orders: does not exist: run georep init",
            id="table-missing",
        ),
        pytest.param(
            _refused("AccessDeniedException"),
            2,
            "region eu-west-1, table orders: access denied (nope): grant these credentials "
            "dynamodb:DescribeTable on it",
            id="permission",
        ),
        pytest.param(
            _refused("ProvisionedThroughputExceededException"),
            1,
            "region eu-west-1, table orders: still throttled after retries",
            id="throttled",
        ),
        pytest.param(
            _refused("UnrecognizedClientException"),
            2,
            "AWS rejected the credentials (UnrecognizedClientException): set AWS_PROFILE",
            id="credentials-rejected",
        ),
        pytest.param(
            _refused("InternalServerError", 500),
            1,
            "region eu-west-1, table orders: DescribeTable failed (InternalServerError: nope)",
            id="server-error",
        ),
        pytest.param(
            EndpointConnectionError(endpoint_url="https://dynamodb.eu-west-1.amazonaws.com/"),
            1,
            "region eu-west-1, table orders: cannot reach https://dynamodb.eu-west-1.amazonaws"
            ".com/ (no answer): check the network and any proxy",
            id="no-network-to-aws",
        ),
    ],
)
def test_each_kind_of_failure_in_a_region_has_one_exit_code_and_one_advice(
    cause: Exception, code: int, expected: str
) -> None:
    error = RegionError(
        cause,
        region="eu-west-1",
        table="orders",
        endpoint="https://dynamodb.eu-west-1.amazonaws.com/",
    )
    failure = classify(error)
    assert code == failure.code
    assert failure.line.startswith(expected), failure.line
    assert [failure.line] == failure.line.splitlines()


@pytest.mark.parametrize(
    ("cause", "waited_for"),
    [
        pytest.param(EndpointConnectionError(endpoint_url="http://x"), False, id="nothing-there"),
        pytest.param(ConnectionClosedError(endpoint_url="http://x"), True, id="reset"),
        pytest.param(_refused("ThrottlingException"), True, id="throttled"),
        pytest.param(_refused("ServiceUnavailable", 503), True, id="5xx"),
        pytest.param(_refused("ResourceNotFoundException"), False, id="no-table"),
        pytest.param(_refused("AccessDeniedException"), False, id="denied"),
    ],
)
def test_run_waits_out_what_waiting_may_fix_and_fails_fast_on_the_rest(
    cause: Exception, waited_for: bool
) -> None:
    """`georep run` is long-running: a throttle, a 5xx or a reset at start is said and
    waited out with the consumer's retries (chaos restarts consumers under such faults);
    nothing listening, a missing table or a permission end it at once."""
    assert waited_for == _transient(cause)
