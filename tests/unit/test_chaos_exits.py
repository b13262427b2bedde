"""A consumer that exits by itself fails a chaos run (session 37): a `georep run` that gave up
under an injected fault (a store read during a partition of its own region) replicated nothing
more, and the run only said that some keys never converged. `ConsumerProcesses.exited` names
it, and the report's verdict counts it."""

from __future__ import annotations

import time
from pathlib import Path

from service.engine.chaos.processes import ConsumerProcesses


def test_a_consumer_that_exits_by_itself_is_named_and_one_killed_by_the_run_is_not(
    tmp_path: Path,
) -> None:
    processes = ConsumerProcesses(config=tmp_path / "absent.toml", logs=tmp_path / "logs", env={})
    processes.start("eu-west-1")  # no configuration file: exits 2 at once
    killed = processes.start("us-east-1")
    processes.kill("us-east-1", pid=killed.pid)
    deadline = time.monotonic() + 60
    while not processes.exited() and time.monotonic() < deadline:
        time.sleep(0.1)
    try:
        assert ["eu-west-1 (exit code 2)"] == processes.exited()
    finally:
        processes.stop(grace=5)
