"""``georep run`` refuses what cannot work with one line on stderr and exit code 2.

Nothing here reaches the network: every endpoint is a closed loopback port and the process
has no AWS credentials, so a refusal that came too late would fail on those instead.
"""

from __future__ import annotations

import os
import socket
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path

import pytest

from service.surfaces.cli import main

ROOT = Path(__file__).resolve().parents[2]

CONFIG = """
[table]
name = "orders"
partition_key = "pk"
{table}

[[regions]]
name = "eu-west-1"
endpoint_url = "http://127.0.0.1:{port}"

[[regions]]
name = "us-east-1"
endpoint_url = "http://127.0.0.1:{port}"

[replication]
{replication}
"""


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def write_config(directory: Path, *, table: str = "", replication: str = "") -> Path:
    path = directory / "georep.toml"
    path.write_text(CONFIG.format(table=table, replication=replication, port=closed_port()))
    return path


def no_aws_environment(directory: Path) -> dict[str, str]:
    """The environment without credentials: no AWS_* variables, empty config and credentials
    files, no instance metadata lookups."""
    empty = directory / "empty-aws-file"
    empty.write_text("")
    env = {k: v for k, v in os.environ.items() if not k.startswith("AWS_")}
    return {
        **env,
        "AWS_CONFIG_FILE": str(empty),
        "AWS_SHARED_CREDENTIALS_FILE": str(empty),
        "AWS_EC2_METADATA_DISABLED": "true",
    }


@pytest.fixture
def no_aws(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in [k for k in os.environ if k.startswith("AWS_")]:
        monkeypatch.delenv(name)
    for name, value in no_aws_environment(tmp_path).items():
        if name.startswith("AWS_"):
            monkeypatch.setenv(name, value)


def _not_utf8(directory: Path) -> Path:
    path = write_config(directory)
    path.write_bytes(path.read_text().replace('"orders"', '"ordères"').encode("latin-1"))
    return path


@pytest.mark.parametrize(
    ("make_config", "needle"),
    [
        pytest.param(lambda d: d, "is a folder, not a file", id="config-path-is-a-folder"),
        pytest.param(_not_utf8, "is not UTF-8 text", id="config-not-utf8"),
        pytest.param(
            lambda d: write_config(
                d, table='resolver = "version-counter"\nresolver_options = { attribute = 5 }'
            ),
            "option 'attribute' must be the name of a numeric attribute",
            id="version-counter-attribute-not-a-string",
        ),
        pytest.param(
            lambda d: write_config(
                d, replication="idle_backoff_seconds = 2.0\nmax_idle_backoff_seconds = 1.0"
            ),
            "idle_backoff_seconds (2.0) is above max_idle_backoff_seconds (1.0)",
            id="idle-backoff-above-maximum",
        ),
    ],
)
def test_georep_run_refuses_a_bad_configuration_with_one_line_and_exit_2(
    make_config: Callable[[Path], Path],
    needle: str,
    tmp_path: Path,
    no_aws: None,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A folder, a non-UTF-8 file, a version-counter attribute that is not a name and an idle
    backoff above its maximum are refused before anything is started."""
    path = make_config(tmp_path)

    code = main(["run", "--region", "eu-west-1", "-c", str(path), "--exit-when-idle", "0.1"])

    err = capsys.readouterr().err
    assert 2 == code
    assert [err.strip()] == err.strip().splitlines()
    assert err.startswith("georep: ")
    assert needle in err


def test_georep_run_without_aws_credentials_exits_2_with_one_line(tmp_path: Path) -> None:
    """No credentials anywhere (no AWS_* variables, empty config files, no instance metadata):
    one line saying so and how to provide them, exit 2, no traceback. The endpoint is a closed
    port, so nothing would be reached even if a request were sent."""
    path = write_config(tmp_path)

    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.surfaces.cli",
            "run",
            "--region",
            "eu-west-1",
            "-c",
            str(path),
        ],
        cwd=ROOT,
        env={**no_aws_environment(tmp_path), "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )

    assert "Traceback" not in done.stderr
    assert 2 == done.returncode
    assert [done.stderr.strip()] == done.stderr.strip().splitlines()
    assert done.stderr.startswith("georep: no usable AWS credentials")
    assert "AWS_ACCESS_KEY_ID" in done.stderr


def test_georep_config_names_the_configuration_the_cli_reads(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """Issue 18, point 6: the no-config error says GEOREP_CONFIG works; it does, -c wins."""
    path = write_config(tmp_path)
    monkeypatch.chdir(tmp_path / "..")
    monkeypatch.setenv("GEOREP_CONFIG", str(path))

    assert 0 == main(["check-rule"])  # lww: built in, nothing to check, no network
    assert "resolver 'lww' is built in" in capsys.readouterr().out

    monkeypatch.setenv("GEOREP_CONFIG", str(tmp_path / "elsewhere.toml"))
    assert 2 == main(["check-rule"])
    assert f"{tmp_path / 'elsewhere.toml'}: no such file" in capsys.readouterr().err
    assert 0 == main(["check-rule", "-c", str(path)])


def test_migrate_tombstones_refuses_without_the_tombstone_store(
    tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """There is nowhere to move tombstones to: one line naming the setting, exit 2, before
    any region is reached."""
    path = write_config(tmp_path, replication="tombstone_store = false")

    assert 2 == main(["migrate-tombstones", "-c", str(path)])
    err = capsys.readouterr().err
    assert 1 == len(err.strip().splitlines())
    assert "tombstone_store = true" in err


def test_the_tombstone_store_with_residency_rules_is_refused_by_every_command(
    tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    """With residency rules the store is not proven yet (docs/decisions.md): the
    configuration is refused with the way out, exit 2, before any region is reached."""
    path = write_config(tmp_path, replication="tombstone_store = true")
    path.write_text(
        path.read_text()
        + '\n[[filters]]\nname = "eu"\nwhen = { attribute = "r", equals = "EU" }\n'
        + 'regions = ["eu-west-1"]\n'
    )
    for command in (["migrate-tombstones"], ["verify"], ["run", "--region", "eu-west-1"]):
        assert 2 == main([*command, "-c", str(path)]), command
        err = capsys.readouterr().err
        assert "not supported with residency rules" in err, (command, err)


def test_migrate_tombstones_refuses_an_unknown_region_and_a_bad_segment_count(
    tmp_path: Path, no_aws: None, capsys: pytest.CaptureFixture[str]
) -> None:
    path = write_config(tmp_path, replication="tombstone_store = true")

    assert 2 == main(["migrate-tombstones", "-c", str(path), "--region", "mars-1"])
    assert "mars-1" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_:
        main(["migrate-tombstones", "-c", str(path), "--segments", "0"])
    assert 2 == exit_.value.code
