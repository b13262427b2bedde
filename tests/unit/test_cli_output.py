"""What the CLI prints, piped (issue 18, points 5 and 7): tables that never cut an id, a key or
an error; one log format; connection pools that fit the requests in flight."""

from __future__ import annotations

import argparse
import re
import subprocess
import sys
from pathlib import Path

import pytest

from service.config import parse_config
from service.engine.wiring import clients_for
from service.surfaces.commands._common import Key, report

ROOT = Path(__file__).resolve().parents[2]


def test_a_piped_table_keeps_whole_ids_keys_and_errors_on_one_line(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """Piped, ``5f3df7…``, ``eu-wes…`` and an error folded into a column of single words made
    ``georep status | cat`` useless; a row is one line now, every value whole."""
    letter = "5f3df7aa-0d1e-4c55-9a3e-6b1f0c2d9e88"
    error = "region ap-southeast-2, table orders: cannot reach http://127.0.0.1:9 (refused)"
    rows = [
        (letter, "ap-southeast-2", Key({"pk": "cart#1234567890", "sk": 42}), error, None),
    ] * 3
    report(
        argparse.Namespace(json=False),
        title="dead letters",
        columns=("id", "region", "key", "reason", "replays"),
        rows=rows,
        summary={"regions": ["eu-west-1", "ap-southeast-2"], "letters": 3},
    )
    out = capsys.readouterr().out
    assert "…" not in out
    row_lines = [line for line in out.splitlines() if letter in line]
    assert 3 == len(row_lines)
    for line in row_lines:
        for whole in ("ap-southeast-2", "pk=cart#1234567890 sk=42", error, " - "):
            assert whole in line
    assert "regions: eu-west-1, ap-southeast-2" in out.splitlines()


def test_logs_and_python_warnings_share_one_format() -> None:
    code = (
        "import logging, warnings\n"
        "from service.surfaces.commands._common import configure_logging\n"
        "configure_logging(verbose=False, debug=False)\n"
        "logging.getLogger('urllib3.connectionpool').warning('pool is fine')\n"
        "warnings.warn('a deprecation', DeprecationWarning, stacklevel=1)\n"
        "warnings.warn('a user warning', stacklevel=1)\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "always", "-c", code],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=True,
    )
    lines = done.stderr.strip().splitlines()
    # The process id: the consumers of one region (a holder and its standby, `georep chaos`)
    # often write to one log.
    pattern = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ \[\d+\] WARNING [a-z0-9_.]+: ")
    assert 3 == len(lines), done.stderr
    assert [] == [line for line in lines if not pattern.match(line)]


def test_each_regions_connection_pool_fits_every_write_in_flight() -> None:
    """Issue 18, point 7: 42 "Connection pool is full" warnings in 8 s of catching up: the
    own region's client carried every destination's conflict-log writes on a pool sized for
    one destination."""
    config = parse_config(
        {
            "table": {"name": "orders", "partition_key": "pk"},
            "regions": [{"name": n} for n in ("eu-west-1", "us-east-1", "ap-southeast-2")],
            "replication": {"write_concurrency": 64},
        }
    )
    for region, client in clients_for(config, "dynamodb").items():
        assert client.meta.config.max_pool_connections >= 3 * 64, region
