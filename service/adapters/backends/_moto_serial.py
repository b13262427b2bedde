"""A moto server that handles one request at a time.

Run as ``python -m service.adapters.backends._moto_serial --port P [--host H] [--verbose]``.

Why: ``moto_server`` serves requests on threads and moto's DynamoDB backend takes no lock, so
conditional writes are not atomic under concurrent requests (8 racing clients produced two
winners of one condition and 400 successful optimistic-lock updates ending at version 393; see
docs/backends.md). A replicator's correctness rests on conditional writes, so this launcher
builds the same WSGI application that ``moto_server`` builds
(``DomainDispatcherApplication(create_backend_app)`` with ``MotoRequestHandler``) and wraps it
in one lock. Connections are still accepted and parsed on threads, and request bodies are read
before taking the lock, so a slow client does not hold up the others.

It also keeps HTTP/1.1 connections open between requests (`KeepAliveHandler`), which
werkzeug's development server does not: without it every request costs a TCP connect, and
through bench/latency_proxy.py a connect costs a round trip of the simulated link.

This module imports moto, Flask and werkzeug, which come with the ``moto[server]`` extra; it
runs only in the child process that `service.adapters.backends.MotoServer` starts.
"""

from __future__ import annotations

import argparse
import errno
import io
import logging
import signal
import socket
import sys
import threading
from collections.abc import Iterable, Sequence
from types import FrameType
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from _typeshed.wsgi import StartResponse, WSGIApplication, WSGIEnvironment
    from werkzeug.serving import WSGIRequestHandler

    _HandlerBase = WSGIRequestHandler
else:
    _HandlerBase = object  # werkzeug's handler is mixed in at run time, in main()


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


class KeepAliveHandler(_HandlerBase):
    """HTTP/1.1 keep-alive for werkzeug's request handler (mix in before it).

    werkzeug (2.1 and later) sends ``Connection: close`` with every response, because
    http.server cannot skip a request body the application left unread; and after each response
    it reads and discards whatever the socket holds (waiting up to 10 ms), which on a kept-alive
    connection would swallow the client's next request. So: a body of known length is read in
    full before the application runs, the discarding read is pointed at an empty stream, and
    ``Connection: close`` is sent only when the body is chunked or the client asked for it.
    Measured on one PutItem loop: 1 connection for 50 requests instead of 50 (bench/wan.py
    reports the connections its proxy relayed per destination write).
    """

    protocol_version = "HTTP/1.1"
    # NOTE: the status line and headers go out in one write and the body in another; with
    # Nagle's algorithm on, a kept-alive connection holds the body until the client ACKs the
    # headers, which it delays: 400 PutItem/s fell to 150 from 8 threads. (A closed connection
    # flushed at once.)
    disable_nagle_algorithm = True
    # NOTE: an idle kept-alive connection holds a server thread; a client that vanished
    # without closing releases it after this many seconds (clients reconnect transparently).
    timeout = 120
    _keep_alive = False
    _saved: tuple[Any, Any] | None = None

    def make_environ(self) -> WSGIEnvironment:
        environ = super().make_environ()
        self._keep_alive = False
        if "chunked" in self.headers.get("Transfer-Encoding", "").lower():
            return environ  # werkzeug dechunks it as the application reads: close after
        try:
            length = int(self.headers.get("Content-Length") or 0)
        except ValueError:
            return environ
        environ["wsgi.input"] = io.BytesIO(self.rfile.read(length) if length > 0 else b"")
        # The request is consumed: werkzeug's discarding read (which selects on
        # self.connection and reads self.rfile) finds an empty stream at once. Restored in
        # run_wsgi, before the next request line is read.
        self._saved = (self.rfile, self.connection)
        self.rfile, self.connection = io.BytesIO(), _at_eof()
        self._keep_alive = True
        return environ

    def run_wsgi(self) -> None:
        try:
            super().run_wsgi()
        finally:
            if self._saved is not None:
                self.rfile, self.connection = self._saved
                self._saved = None

    def send_header(self, keyword: str, value: str) -> None:
        # http.server's own send_header closes after the response when it sees this header.
        closing = keyword.lower() == "connection" and value.lower() == "close"
        if closing and self._keep_alive and not self.close_connection:
            return
        super().send_header(keyword, value)


_EOF_LOCK = threading.Lock()
_EOF_SOCKET: list[socket.socket] = []


def _at_eof() -> socket.socket:
    """A socket that is always readable and always at end of stream (its peer is closed)."""
    with _EOF_LOCK:
        if not _EOF_SOCKET:
            ours, peer = socket.socketpair()
            peer.close()
            _EOF_SOCKET.append(ours)
        return _EOF_SOCKET[0]


def _stop_on_sigterm(signum: int, frame: FrameType | None) -> None:
    # NOTE: werkzeug's run_simple closes its socket cleanly on KeyboardInterrupt only.
    raise KeyboardInterrupt


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m service.adapters.backends._moto_serial")
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
    from werkzeug.serving import make_server

    from service.adapters.backends import _moto_transactions

    _moto_transactions.install()  # all or nothing, no copy of a table (deviation 6)
    if not args.verbose:
        # werkzeug keeps a level that is already set; request lines would only fill the log.
        logging.getLogger("werkzeug").setLevel(logging.WARNING)
    signal.signal(signal.SIGTERM, _stop_on_sigterm)

    app = SerialisedApp(DomainDispatcherApplication(create_backend_app))
    handler = type("MotoKeepAliveHandler", (KeepAliveHandler, MotoRequestHandler), {})
    try:
        # NOTE: bound before it is announced: a busy port is one line and exit 2, not an
        # announcement and then a traceback (issue 18). The words keep "address already in
        # use", which ManagedProcess reads to retry on another port.
        # NOTE: bound here, not by werkzeug, which prints its own advice and exits 1.
        listening = socket.create_server((args.host, args.port))
    except OSError as error:
        reason = "address already in use" if error.errno == errno.EADDRINUSE else str(error)
        print(
            f"georep: cannot serve on {args.host}:{args.port}: {reason} (is another server "
            "running there? choose another --port)",
            file=sys.stderr,
            flush=True,
        )
        return 2
    server = make_server(
        args.host,
        args.port,
        app,
        threaded=True,
        request_handler=handler,
        fd=listening.fileno(),
    )
    print(f"georep: serialised moto server on http://{args.host}:{args.port}", flush=True)
    server.serve_forever()  # werkzeug's: returns on KeyboardInterrupt, the socket closed
    return 0


if __name__ == "__main__":
    sys.exit(main())
