"""A fault-injecting HTTP proxy between georep's consumers and one region's endpoint.

    with FaultProxy("127.0.0.1", moto_port, seed=7) as proxy:
        proxy.storm(Fault.THROTTLE, probability=0.3, seconds=5)   # for the next 5 s
        proxy.partition(seconds=3)                               # every request dropped
        url = proxy.url                                          # a region's endpoint_url

It understands just enough HTTP/1.1 (one request, one response, keep-alive) to answer a request
itself, the way DynamoDB does when it fails one:

- ``throttle``: HTTP 400 with ``__type``
  ``com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException`` (what DynamoDB
  sends, and what botocore's retry rules and georep's throttling handling look for);
- ``error_500`` / ``error_503``: InternalServerError / ServiceUnavailable (JSON, as DynamoDB);
- ``drop``: the connection closed before the request is forwarded (the write never happened);
- ``lost_response``: the request forwarded and applied, then the connection closed without an
  answer: the client cannot tell whether its write happened and must retry into it;
- ``half_close``: the request applied, then the status line, the headers and half the body
  before the connection closes (a truncated response);
- ``latency``: the request held 0.2 to 1.5 s before it is forwarded;
- a partition: every request dropped until it heals.

Each request is answered by a thread of its own (``ThreadingHTTPServer``), forwarded on a new
connection to the target. Faults are drawn from a seeded random generator, so a run's choices
are reproducible up to the order in which requests arrive.
"""

from __future__ import annotations

import http.client
import json
import random
import socket
import sys
import threading
import time
from collections import Counter
from enum import StrEnum
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Self

THROTTLE_TYPE = "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException"
_ERRORS = {
    500: "com.amazonaws.dynamodb.v20120810#InternalServerError",
    503: "com.amazonaws.dynamodb.v20120810#ServiceUnavailableException",
}
_HOP_BY_HOP = {"connection", "keep-alive", "transfer-encoding", "proxy-connection", "upgrade"}


class Fault(StrEnum):
    THROTTLE = "throttle"
    ERROR_500 = "error_500"
    ERROR_503 = "error_503"
    DROP = "drop"
    LOST_RESPONSE = "lost_response"
    HALF_CLOSE = "half_close"
    LATENCY = "latency"
    PARTITION = "partition"


class FaultProxy:
    """Relay HTTP requests from ``listen_host`` (a free port) to ``target_host:target_port``,
    failing some of them (module docstring). ``injected`` counts the requests each fault hit."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        *,
        seed: int = 0,
        listen_host: str = "127.0.0.1",
        timeout: float = 30.0,
    ) -> None:
        self.target_host, self.target_port, self.timeout = target_host, target_port, timeout
        self.listen_host = listen_host
        self.injected: Counter[Fault] = Counter()
        self.forwarded = 0
        self._rng = random.Random(seed)
        self._lock = threading.Lock()
        self._storms: dict[Fault, tuple[float, float]] = {}  # fault -> (probability, until)
        self._partitioned_until = 0.0
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    # -- control -------------------------------------------------------------------------------

    def storm(self, fault: Fault, *, probability: float, seconds: float) -> None:
        """Fail each request with ``fault`` at ``probability`` for the next ``seconds``."""
        with self._lock:
            self._storms[fault] = (probability, time.monotonic() + seconds)

    def partition(self, *, seconds: float) -> None:
        """Drop every request for the next ``seconds``."""
        with self._lock:
            self._partitioned_until = max(self._partitioned_until, time.monotonic() + seconds)

    def calm(self) -> None:
        """End every storm and partition now."""
        with self._lock:
            self._storms.clear()
            self._partitioned_until = 0.0

    def delay(self) -> float:
        """A latency spike: 0.2 to 1.5 s."""
        with self._lock:
            return 0.2 + 1.3 * self._rng.random()

    def _pick(self) -> Fault | None:
        now = time.monotonic()
        with self._lock:
            if now < self._partitioned_until:
                fault: Fault | None = Fault.PARTITION
            else:
                fault = None
                for kind, (probability, until) in sorted(self._storms.items()):
                    if now < until and self._rng.random() < probability:
                        fault = kind
                        break
            if fault is not None:
                self.injected[fault] += 1
            else:
                self.forwarded += 1
            return fault

    # -- lifecycle -----------------------------------------------------------------------------

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    def start(self) -> Self:
        if self._server is not None:
            return self
        server = _Server((self.listen_host, 0), _Handler)
        server.owner = self
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.1}, daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        server, thread = self._server, self._thread
        if server is None or thread is None:
            return
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)
        self._server = self._thread = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- one request ---------------------------------------------------------------------------

    def forward(
        self, method: str, path: str, headers: list[tuple[str, str]], body: bytes
    ) -> tuple[int, str, list[tuple[str, str]], bytes]:
        connection = http.client.HTTPConnection(
            self.target_host, self.target_port, timeout=self.timeout
        )
        try:
            connection.request(method, path, body=body, headers=dict(headers))
            response = connection.getresponse()
            payload = response.read()
            return response.status, response.reason, response.getheaders(), payload
        finally:
            connection.close()


class _Server(ThreadingHTTPServer):
    owner: FaultProxy

    def handle_error(self, request: object, client_address: object) -> None:
        """A client that hung up before its answer (a consumer killed by the run, a request
        given up during injected latency) is what a network does, not a fault of the proxy:
        no traceback for it on stderr (a 600 s `make chaos` printed 72). Anything else is
        still printed."""
        if isinstance(sys.exc_info()[1], ConnectionError):
            return
        super().handle_error(request, client_address)  # type: ignore[arg-type]


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    @property
    def owner(self) -> FaultProxy:
        return self.server.owner

    def log_message(self, format: str, *args: object) -> None:
        pass  # one line per request on stderr would drown the run's own progress

    def do_POST(self) -> None:
        self._relay()

    def do_GET(self) -> None:
        self._relay()

    def _relay(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fault = self.owner._pick()
        if fault in (Fault.DROP, Fault.PARTITION):
            self._abort()
            return
        if fault is Fault.THROTTLE:
            self._answer(400, "Rate of requests exceeds the allowed throughput.", THROTTLE_TYPE)
            return
        if fault in (Fault.ERROR_500, Fault.ERROR_503):
            status = 500 if fault is Fault.ERROR_500 else 503
            self._answer(status, "injected by georep chaos", _ERRORS[status])
            return
        if fault is Fault.LATENCY:
            time.sleep(self.owner.delay())
        headers = [(k, v) for k, v in self.headers.items() if k.lower() not in _HOP_BY_HOP]
        try:
            status, reason, answer_headers, payload = self.owner.forward(
                self.command, self.path, headers, body
            )
        except OSError:
            self._abort()  # the target is gone (stopping): as a dropped connection
            return
        if fault is Fault.LOST_RESPONSE:
            self._abort()
            return
        self.send_response(status, reason)
        for name, value in answer_headers:
            if name.lower() not in _HOP_BY_HOP and name.lower() != "content-length":
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        if fault is Fault.HALF_CLOSE:
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self._abort()
            return
        self.wfile.write(payload)

    def _answer(self, status: int, message: str, kind: str) -> None:
        payload = json.dumps({"__type": kind, "message": message}).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    def _abort(self) -> None:
        """Close the connection at once, without an answer (a reset, not a graceful close)."""
        self.close_connection = True
        try:
            self.wfile.flush()
            self.connection.setsockopt(
                socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00"
            )
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass
