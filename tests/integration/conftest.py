"""Fixtures that run the embedded moto server over HTTP, and always stop it.

- ``moto_server``: the process owner. One per test module, not per session: moto never trims
  its streams and keeps every table of every account, so a server that lived through the whole
  suite would only grow (docs/backends.md, "Memory"). Start-up takes under a second.
- ``backend``: an isolated view of that process: fresh, empty databases in every region for
  every test, without a restart.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from service.adapters.backends import EmbeddedBackend, MotoServer

_startup_seconds: list[float] = []


@pytest.fixture(scope="module")
def moto_server() -> Iterator[MotoServer]:
    with MotoServer() as backend:
        _startup_seconds.append(backend.process.startup_seconds or 0.0)
        yield backend


@pytest.fixture
def backend(moto_server: MotoServer) -> Iterator[EmbeddedBackend]:
    view = moto_server.isolated().start()
    try:
        yield view
    finally:
        view.stop()


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter) -> None:
    """Print how long the servers took to start, so slow machines show up in CI logs."""
    if _startup_seconds:
        terminalreporter.write_line(
            f"moto server started {len(_startup_seconds)} times, "
            f"at most {max(_startup_seconds):.2f} s"
        )
