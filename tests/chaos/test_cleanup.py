"""``georep chaos`` stopped by SIGTERM (or Ctrl-C) stops everything it started: the moto server,
the consumer processes and the proxies; no process is left behind."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

pytestmark = pytest.mark.integration


def _descendants(pid: int) -> set[int]:
    """Every live process below ``pid`` (from /proc: ppid is the 4th field of stat)."""
    parents: dict[int, int] = {}
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                stat = (entry / "stat").read_text()
            except OSError:
                continue
            fields = stat.rsplit(")", 1)[1].split()
            if fields[0] != "Z":
                parents[int(entry.name)] = int(fields[1])
    found, frontier = set(), [pid]
    while frontier:
        parent = frontier.pop()
        children = {p for p, pp in parents.items() if pp == parent}
        found |= children
        frontier.extend(children)
    return found


def _alive(pid: int) -> bool:
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] != "Z"


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_sigterm_ends_a_run_and_leaves_no_process_behind(tmp_path: Path) -> None:
    log = tmp_path / "chaos.err"
    with log.open("wb") as err:
        chaos = subprocess.Popen(
            [
                sys.executable,
                *("-m", "service.surfaces.cli", "chaos", "-c", str(tmp_path / "none.toml")),
                *("--duration", "120", "--writers", "1", "--faults", "latency", "--seed", "1"),
            ],
            stdout=subprocess.DEVNULL,
            stderr=err,
        )
    try:
        deadline = time.monotonic() + 120
        # The first progress line after the start line: the consumers run, the writers write.
        while log.read_text().count("chaos: ") < 2:
            assert chaos.poll() is None, log.read_text()
            assert time.monotonic() < deadline, "the run did not start"
            time.sleep(0.2)
        started = _descendants(chaos.pid)
        assert len(started) >= 4  # the moto server and a consumer per region
        chaos.send_signal(signal.SIGTERM)
        assert 1 == chaos.wait(timeout=60)
        deadline = time.monotonic() + 10
        while any(_alive(p) for p in started) and time.monotonic() < deadline:
            time.sleep(0.1)
        assert set() == {p for p in started if _alive(p)}
    finally:
        if chaos.poll() is None:
            os.kill(chaos.pid, signal.SIGKILL)
            chaos.wait()
