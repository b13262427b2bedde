"""georep consumers as OS processes (``georep run --region R``), killed with SIGKILL and started
again by the chaos run, and always stopped at the end."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import subprocess
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

_PR_SET_PDEATHSIG = 1


def _die_with_parent() -> None:
    """In the child, before exec: SIGKILL when the chaos run dies, even by SIGKILL (Linux)."""
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGKILL)


@dataclass
class ConsumerProcesses:
    """Every consumer process of a run: ``per_region`` processes for each region (two: a lease
    holder and a standby), their output appended to ``logs/<region>.log``."""

    config: Path
    logs: Path
    env: Mapping[str, str]
    running: dict[str, list[subprocess.Popen[bytes]]] = field(default_factory=dict)
    started: int = 0

    def __post_init__(self) -> None:
        self.logs.mkdir(parents=True, exist_ok=True)

    def start(self, region: str) -> subprocess.Popen[bytes]:
        command = [
            sys.executable,
            *("-m", "service.surfaces.cli", "run", "--region", region),
            *("-c", str(self.config)),
            # INFO too: a shard waiting behind a raw write's adoption says so only at INFO,
            # and a run that fails to converge is diagnosed from these logs.
            "--verbose",
        ]
        with (self.logs / f"{region}.log").open("ab") as out:
            process = subprocess.Popen(
                command,
                env={**os.environ, **self.env},
                stdout=out,
                stderr=subprocess.STDOUT,
                preexec_fn=_die_with_parent if sys.platform == "linux" else None,
            )
        self.running.setdefault(region, []).append(process)
        self.started += 1
        return process

    def kill(self, region: str, *, pid: int | None = None, choice: int = 0) -> int | None:
        """SIGKILL one of ``region``'s processes (``pid`` if it is one of them, else the
        ``choice``-th modulo their number) and reap it, so that its leases count as gone at
        once. Returns its pid, or None if none was running."""
        processes = [p for p in self.running.get(region, []) if p.poll() is None]
        if not processes:
            return None
        victim = next((p for p in processes if p.pid == pid), processes[choice % len(processes)])
        victim.kill()
        victim.wait()
        self.running[region].remove(victim)
        return victim.pid

    def wait_ready(self, *, timeout: float = 120.0) -> None:
        """Wait until every process started so far said it is replicating (its log line), so
        that faults scheduled from now on meet running consumers."""
        deadline = time.monotonic() + timeout
        for region, processes in self.running.items():
            log = self.logs / f"{region}.log"
            while log.read_bytes().count(b"georep: replicating") < len(processes):
                if any(p.poll() is not None for p in processes):
                    raise RuntimeError(f"a consumer of {region} exited at start: see {log}")
                if time.monotonic() > deadline:
                    raise TimeoutError(f"the consumers of {region} did not start: see {log}")
                time.sleep(0.1)

    def exited(self) -> list[str]:
        """Each process that exited by itself (never killed by the run, not stopped yet), as
        ``region (exit code N)``: a consumer must wait out every fault the run injects."""
        return [
            f"{region} (exit code {p.returncode})"
            for region, processes in sorted(self.running.items())
            for p in processes
            if p.poll() is not None
        ]

    def alive(self, region: str) -> int:
        return sum(1 for p in self.running.get(region, []) if p.poll() is None)

    def stop(self, *, grace: float = 15.0) -> None:
        """SIGTERM every process (they checkpoint and exit), SIGKILL what is left after
        ``grace`` seconds; safe to call twice."""
        every = [p for ps in self.running.values() for p in ps]
        for p in every:
            if p.poll() is None:
                p.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + grace
        for p in every:
            try:
                p.wait(timeout=max(0.1, deadline - time.monotonic()))
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
        self.running.clear()
