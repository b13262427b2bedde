"""Short ``georep chaos`` runs: three regions, writers stamped and raw, the consumers as
processes, and every fault the embedded backend allows. Each must end with every region
byte-identical and nothing acknowledged lost: under last-writer-wins no write (20 s of
writes), under a merge rule no set element (10 s of writes); each takes about 25 s more to
start and converge (make test's budget; make chaos runs long)."""

from __future__ import annotations

import json
import os
import sys
from pathlib import Path

import pytest

from service.engine.chaos.runner import FAULTS
from service.surfaces.cli import main
from tests.property.example_rules import UNION_TAGS_CONFIG

pytestmark = pytest.mark.integration

SHORT_RUN_FAULTS = list(FAULTS)
SEED = int(os.environ.get("CHAOS_SEED", "20261206"))


def test_a_short_chaos_run_loses_nothing_and_converges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Judged on lost = 0, divergent = 0 and unexpected = 0 after quiescence only (never on
    timings); the schedule has at least one kill, so the run did restart consumers. The
    default configuration: three regions, last-writer-wins, the tombstone store (the two
    liveness bugs that kept such runs from converging in sessions 35-36: docs/design.md,
    "Session 37")."""
    code = main(
        [
            "chaos",
            *("-c", str(tmp_path / "absent.toml")),
            *("--duration", os.environ.get("CHAOS_DURATION", "20")),
            *("--writers", "1", "--keys", "4", "--rate", "4"),
            *("--faults", ",".join(SHORT_RUN_FAULTS)),
            *("--seed", str(SEED)),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    sys.stderr.write(captured.err)  # the consumers' logs of a failed run, shown by pytest
    document = json.loads(captured.out)
    summary = document["summary"]
    print(json.dumps(summary, indent=2))  # shown by pytest when the test fails
    assert [] == document["lost"]
    assert [] == document["divergent"]
    assert [] == document["unexpected"]
    assert 0 == code
    assert summary["writes_acknowledged"] > 0
    assert summary["restarts"] >= 1
    assert 0 == summary["consumer_exits"]


# The example user rule: a union of ``tags``, the rest from the last writer.
MERGE_RULE = UNION_TAGS_CONFIG


def test_a_short_chaos_run_under_a_merge_rule_loses_no_element_and_converges(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Every put adds an element of its own to ``tags`` (an inflation of what it read, the
    merge-rule contract: tests/unit/test_merge_contract.py): each an acknowledged write added
    is in every region's final item (service/core/chaos.py).
    The consumers import the rule from this checkout (the run puts the working directory on
    their PYTHONPATH)."""
    config = tmp_path / "georep.toml"
    # With the tombstone store (the default): the elements a tombstone keeps are in the store,
    # which the run reads (`tombstone_images`).
    config.write_text(MERGE_RULE)
    code = main(
        [
            "chaos",
            *("-c", str(config)),
            *("--duration", os.environ.get("CHAOS_MERGE_DURATION", "10")),
            *("--writers", "1", "--keys", "4", "--rate", "4"),
            *("--faults", ",".join(SHORT_RUN_FAULTS)),
            *("--seed", str(SEED + 1)),
            "--json",
        ]
    )
    captured = capsys.readouterr()
    sys.stderr.write(captured.err)  # the consumers' logs of a failed run, shown by pytest
    document = json.loads(captured.out)
    summary = document["summary"]
    print(json.dumps(summary, indent=2))
    assert [] == document["lost"]
    assert [] == document["divergent"]
    assert [] == document["unexpected"]
    assert 0 == code
    assert "rules" == summary["resolver"]
    assert summary["elements_judged"] > 0
    # Writes under merge rules are inflations (tests/unit/test_merge_contract.py): none drops.
    assert 0 == summary["elements_dropped"]
    assert 0 == summary["consumer_exits"]
