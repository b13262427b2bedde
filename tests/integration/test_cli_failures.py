"""A missing table, met by every command that needs it, over HTTP against the embedded backend
(issue 18, point 4): exit 2 and the same one line, naming the region and the table and saying
``run georep init`` (verify said raw botocore text with exit 1, status folded it into a table).
The failures that need no server are in tests/unit/test_cli_failures.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.adapters.backends import EmbeddedBackend
from tests.integration.test_cli import REGIONS, _config, georep

pytestmark = pytest.mark.integration

NEEDS_THE_TABLE = {
    "run": ["run", "--region", REGIONS[0]],
    "backfill": ["backfill", "--from", REGIONS[0]],
    "verify": ["verify"],
    "verify --key": ["verify", "--key", "cart#1"],
    "status": ["status"],
    "dlq replay": ["dlq", "replay", "--all", "--region", REGIONS[0]],
}


def test_every_command_says_the_same_line_with_exit_2_for_a_missing_table(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    path, table = _config(backend, tmp_path)
    expected = f"georep: region {REGIONS[0]}, table {table}: does not exist: run georep init"
    found = {}
    for name, argv in NEEDS_THE_TABLE.items():
        done = georep(backend, *argv, "-c", str(path))
        found[name] = (done.returncode, done.stderr.strip().splitlines())
    assert {name: (2, True) for name in NEEDS_THE_TABLE} == {
        name: (code, len(lines) == 1 and lines[0].startswith(expected))
        for name, (code, lines) in found.items()
    }, found
