"""A moto server that handles one request at a time.

Run as ``python -m service.backends._moto_serial --port P [--host H] [--verbose]``.

Why: ``moto_server`` serves requests on threads and moto's DynamoDB backend takes no lock, so
conditional writes are not atomic under concurrent requests (8 racing clients produced two
winners of one condition and 400 successful optimistic-lock updates ending at version 393; see
docs/backends.md). A replicator's correctness rests on conditional writes, so this launcher
builds the same WSGI application that ``moto_server`` builds
(``DomainDispatcherApplication(create_backend_app)`` with ``MotoRequestHandler``) and wraps it
in one lock. Connections are still accepted and parsed on threads, and request bodies are read
before taking the lock, so a slow client does not hold up the others.

This module imports moto, Flask and werkzeug, which come with the ``moto[server]`` extra; it
runs only in the child process that `service.backends.MotoServer` starts.
"""

from __future__ import annotations

import argparse
import io
import logging
import signal
import sys
import threading
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment


class SerialisedApp:
    """A WSGI application that lets exactly one request at a time into the wrapped one.

    The whole response body is produced inside the lock, because a WSGI application may do its
    work lazily while the server iterates the body.
    """

    def __init__(self, app: WSGIApplication) -> None:
        self._app = app
        self._lock = threading.Lock()

    def __call__(self, environ: WSGIEnvironment, start_response: StartResponse) -> Iterable[bytes]:
        _buffer_body(environ)
        with self._lock:
            chunks = self._app(environ, start_response)
            try:
                body = b"".join(chunks)
            finally:
                close = getattr(chunks, "close", None)
                if close is not None:
                    close()
        return [body]


def _buffer_body(environ: WSGIEnvironment) -> None:
    """Read a request body of known length now, outside the lock."""
    try:
        length = int(environ.get("CONTENT_LENGTH") or 0)
    except ValueError:
        return
    if length > 0:
        environ["wsgi.input"] = io.BytesIO(environ["wsgi.input"].read(length))


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # NOTE: werkzeug's run_simple closes its socket cleanly on KeyboardInterrupt only.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.backends._moto_serial")
    parser.add_argument("--host", default="127.0.0.1", help="address to bind (default loopback)")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--verbose", action="store_true", help="log every request")
    args = parser.parse_args(argv)

    # Imported here so that importing this module (e.g. by mypy or a test) costs nothing.
    from moto.moto_server.werkzeug_app import (
        DomainDispatcherApplication,
        MotoRequestHandler,
        create_backend_app,
    )
    from werkzeug.serving import run_simple

    if not args.verbose:
        # werkzeug keeps a level that is already set; request lines would only fill the log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    app = SerialisedApp(DomainDispatcherApplication(create_backend_app))
    print(f"georep: serialised moto server on http://{args.host}:{args.port}", flush=True)
    run_simple(
        args.host,
        args.port,
        app,
        threaded=True,
        request_handler=MotoRequestHandler,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
