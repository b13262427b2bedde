"""The embedded moto server, counting every request it serves: what bench/store_cost.py bills.

    python bench/counting_moto.py --port P [--host H]

It is `service.adapters.backends._moto_serial` (one request at a time, kept-alive connections)
with one more WSGI layer inside its lock: each DynamoDB or DynamoDB Streams request is recorded
(its operation from ``X-Amz-Target``, the region from the SigV4 credential scope, the request
body, whether it succeeded, the items a read returned, and how long the server worked on it)
before the response goes back. Counting at the server sees every client alike: the SDK in the
benchmark's process, the consumers, and whatever reaches it through bench/latency_proxy.py.

``GET /__bench/take`` returns the records since the last take, as JSON, and forgets them.
`CountingMoto` starts it like `MotoServer` starts the plain one.
"""

from __future__ import annotations

import io
import json
import sys
import threading
import time
from collections.abc import Iterable
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.request import urlopen

if __package__ in (None, ""):  # run as a script: the repository root, for service.*
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from service.adapters.backends import MotoServer
from service.adapters.backends import _moto_serial as serial

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment

TAKE = "/__bench/take"
# Reads whose returned items are billed by size; every other response is dropped unread.
_READS = {"GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan"}


def _region(environ: WSGIEnvironment) -> str:
    """The region of the SigV4 credential scope: ``Credential=KEY/DATE/REGION/SERVICE/...``."""
    auth = environ.get("HTTP_AUTHORIZATION", "")
    _, _, scope = auth.partition("Credential=")
    parts = scope.split("/")
    return parts[2] if len(parts) > 2 else ""


class CountingApp:
    """Records each request, then answers it from ``app`` unchanged."""

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()
        self._records: list[dict[str, Any]] = []

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        if environ.get("PATH_INFO") == TAKE:
            with self._lock:
                taken, self._records = self._records, []
            body = json.dumps(taken).encode()
            start_response("200 OK", [("Content-Type", "application/json")])
            return [body]
        target = environ.get("HTTP_X_AMZ_TARGET", "")
        if not target:
            return self._app(environ, start_response)
        length = int(environ.get("CONTENT_LENGTH") or 0)
        raw = environ["wsgi.input"].read(length) if length > 0 else b""
        environ["wsgi.input"] = io.BytesIO(raw)
        status: list[str] = []

        def capture(line: str, headers: Any, exc_info: Any = None) -> Any:
            status.append(line)
            return start_response(line, headers, exc_info)

        started = time.perf_counter()
        answer = b"".join(self._app(environ, capture))
        elapsed = time.perf_counter() - started
        service, _, op = target.partition(".")
        streams = service.startswith("DynamoDBStreams")
        record: dict[str, Any] = {
            "op": op,
            "service": "streams" if streams else "dynamodb",
            "region": _region(environ),
            "ok": bool(status) and status[0].startswith("200"),
            "seconds": elapsed,
        }
        if not streams:
            try:
                record["body"] = json.loads(raw or b"{}")
                if op in _READS and record["ok"]:
                    response = json.loads(answer or b"{}")
                    record["response"] = {
                        k: response[k] for k in ("Item", "Items", "Responses") if k in response
                    }
            except ValueError:
                pass
        with self._lock:
            self._records.append(record)
        return [answer]


def take(endpoint_url: str) -> list[dict[str, Any]]:
    """The records the server at ``endpoint_url`` kept since the last take."""
    with urlopen(endpoint_url + TAKE, timeout=60) as response:
        records: list[dict[str, Any]] = json.loads(response.read())
        return records


class CountingMoto(MotoServer):
    """`MotoServer`, running this launcher instead of the plain one."""

    def _command(self, port: int) -> list[str]:
        script = str(Path(__file__).resolve())
        return [self._python, script, "--host", "127.0.0.1", "--port", str(port)]


def main() -> int:
    plain = serial.SerialisedApp

    def counting(app: WSGIApplication) -> Any:
        # Inside the one lock: ``seconds`` is the server's work on the request, not its wait.
        return plain(CountingApp(app))

    # NOTE: the launcher builds its application inside main(); its one seam is this name.
    serial.SerialisedApp = counting  # type: ignore[misc,assignment]
    return serial.main(sys.argv[1:])


if __name__ == "__main__":
    sys.exit(main())
