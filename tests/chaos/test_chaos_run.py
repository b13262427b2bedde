"""A short ``georep chaos`` run (about a minute): three regions, writers stamped and raw, the
consumers as processes, and every fault the embedded backend allows but one (below). It must
end with every region byte-identical and no acknowledged write lost."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from service.engine.chaos.runner import FAULTS
from service.surfaces.cli import main

pytestmark = pytest.mark.integration

SHORT_RUN_FAULTS = list(FAULTS)
SEED = int(os.environ.get("CHAOS_SEED", "20261206"))


def test_a_short_chaos_run_loses_nothing_and_converges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Judged on lost = 0, divergent = 0 and unexpected = 0 after quiescence only (never on
    timings); the schedule has at least one kill, so the run did restart consumers."""
    code = main(
        [
            "chaos",
            *("-c", str(tmp_path / "absent.toml")),  # no configuration: 3 regions, lww
            *("--duration", os.environ.get("CHAOS_DURATION", "30")),
            *("--writers", "1", "--keys", "4", "--rate", "4"),
            *("--faults", ",".join(SHORT_RUN_FAULTS)),
            *("--seed", str(SEED)),
            "--json",
        ]
    )
    document = json.loads(capsys.readouterr().out)
    summary = document["summary"]
    print(json.dumps(summary, indent=2))  # shown by pytest when the test fails
    assert [] == document["lost"]
    assert [] == document["divergent"]
    assert [] == document["unexpected"]
    assert 0 == code
    assert summary["writes_acknowledged"] > 0
    assert summary["restarts"] >= 1
