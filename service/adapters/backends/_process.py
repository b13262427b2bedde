"""One emulator process on a free loopback port: start it, wait until it answers, stop it for sure.

Both backends are long-lived child processes that tests share, so the failure modes that matter
are a port taken between choosing and binding it, a process that dies at start-up (the caller
needs its output to know why), and a process that outlives the test run. Each is handled here
once for both backends.
"""

from __future__ import annotations

import atexit
import os
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Final

from botocore.exceptions import BotoCoreError, ClientError

from service.adapters.backends._errors import BackendError, BackendStartError

LOOPBACK: Final = "127.0.0.1"
_POLL_INTERVAL_S: Final = 0.05
_STOP_GRACE_S: Final = 5.0
_PORT_ATTEMPTS: Final = 3
_PORT_CLASH_MARKERS: Final = ("address already in use", "bindexception", "errno 98")

Probe = Callable[[str], None]
"""Called with the endpoint URL; returns when the server answers, raises while it does not."""


def free_loopback_port() -> int:
    """A port that was free on 127.0.0.1 a moment ago (the caller must tolerate a clash)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
        probe.bind((LOOPBACK, 0))
        port: int = probe.getsockname()[1]
        return port


def port_is_open(port: int, *, host: str = LOOPBACK) -> bool:
    """True if something accepts TCP connections on (host, port)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as client:
        client.settimeout(1.0)
        return client.connect_ex((host, port)) == 0


class ManagedProcess:
    """A child server process bound to a free loopback port.

    `start` retries with a new port if the chosen one was taken meanwhile, and raises
    `BackendStartError` with the tail of the process's output if it dies or does not answer
    `probe` before `start_timeout` seconds. `stop` terminates, then kills; it also runs at
    interpreter exit so an aborted test session leaves no server behind.
    """

    def __init__(
        self,
        *,
        name: str,
        command: Callable[[int], Sequence[str]],
        probe: Probe,
        start_timeout: float,
        env: Mapping[str, str] | None = None,
        cwd: Path | None = None,
    ) -> None:
        self._name = name
        self._command = command
        self._probe = probe
        self._start_timeout = start_timeout
        self._env = dict(env) if env is not None else None
        self._cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None
        self._port: int | None = None
        self.startup_seconds: float | None = None
        """Wall time from launching the process to its first good answer, for reports."""

    @property
    def port(self) -> int:
        if self._port is None:
            raise BackendError(f"{self._name} is not started")
        return self._port

    @property
    def endpoint_url(self) -> str:
        return f"http://{LOOPBACK}:{self.port}"

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    @property
    def running(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def start(self) -> None:
        """Launch and wait until ready; a no-op if already running."""
        if self.running:
            return
        self.stop()  # clear what a dead earlier process left behind
        started = time.monotonic()
        for attempt in range(1, _PORT_ATTEMPTS + 1):
            port = free_loopback_port()
            self._launch(port)
            atexit.register(self.stop)
            try:
                self._wait_until_ready(port)
            except _PortClash:
                self.stop()
                if attempt == _PORT_ATTEMPTS:
                    raise BackendStartError(
                        f"{self._name}: {_PORT_ATTEMPTS} free ports were all taken before "
                        "the server could bind them"
                    ) from None
                continue
            except BaseException:
                self.stop()
                raise
            self.startup_seconds = time.monotonic() - started
            return

    def stop(self) -> None:
        """Terminate (then kill) the process and release its log; safe to call twice."""
        atexit.unregister(self.stop)
        process, self._process = self._process, None
        if process is not None and process.poll() is None:
            process.terminate()
            try:
                process.wait(timeout=_STOP_GRACE_S)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait(timeout=_STOP_GRACE_S)
        if self._log is not None:
            self._log.close()
            self._log = None
        self._port = None

    def output_tail(self, max_bytes: int = 4000) -> str:
        """The last `max_bytes` of the process's stdout and stderr, interleaved."""
        if self._log is None:
            return ""
        # NOTE: the log is opened O_APPEND, so moving our offset never disturbs the child's
        # writes, which always land at the end.
        self._log.flush()
        size = os.fstat(self._log.fileno()).st_size
        self._log.seek(max(0, size - max_bytes))
        return self._log.read().decode("utf-8", errors="replace")

    def _launch(self, port: int) -> None:
        # The log lives as long as the process (closed in stop), so no `with` block here.
        self._log = tempfile.TemporaryFile(mode="a+b", prefix=f"georep-{self._name}-")  # noqa: SIM115
        try:
            self._process = subprocess.Popen(
                list(self._command(port)),
                stdin=subprocess.DEVNULL,
                stdout=self._log,
                stderr=subprocess.STDOUT,
                env=self._env,
                cwd=self._cwd,
                close_fds=True,
            )
        except OSError as error:
            self._log.close()
            self._log = None
            raise BackendStartError(f"{self._name}: cannot launch the process: {error}") from error
        self._port = port

    def _wait_until_ready(self, port: int) -> None:
        endpoint = f"http://{LOOPBACK}:{port}"
        deadline = time.monotonic() + self._start_timeout
        last_error: Exception | None = None
        while True:
            process = self._process
            assert process is not None
            code = process.poll()
            if code is not None:
                tail = self.output_tail()
                if any(marker in tail.lower() for marker in _PORT_CLASH_MARKERS):
                    raise _PortClash
                raise BackendStartError(
                    f"{self._name} exited with status {code} during start-up; "
                    f"its last output:\n{tail}"
                )
            # NOTE: if another program took the port and answers like DynamoDB, the probe
            # cannot tell; the window is the child's start-up (under 3 s) on an ephemeral port,
            # and a clash with a non-listening socket (the usual case) fails the bind instead,
            # which the port retry above handles.
            try:
                self._probe(endpoint)
            except (BotoCoreError, ClientError, OSError) as error:
                last_error = error
            else:
                return
            if time.monotonic() >= deadline:
                raise BackendStartError(
                    f"{self._name} did not answer on {endpoint} within {self._start_timeout:.0f} s "
                    f"(last probe error: {last_error}); its last output:\n{self.output_tail()}"
                )
            time.sleep(_POLL_INTERVAL_S)


class _PortClash(Exception):
    """The chosen port was taken between choosing it and the server binding it."""
