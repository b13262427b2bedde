"""A TCP relay that adds a fixed one-way delay: a wide-area link on one machine.

    python bench/latency_proxy.py --target 127.0.0.1:PORT --delay-ms 40 [--port 0]

or, from Python (the relay runs its own event loop on a thread)::

    with LatencyProxy("127.0.0.1", moto_port, delay_s=0.040) as proxy:
        url = f"http://127.0.0.1:{proxy.port}"   # every byte each way arrives 40 ms later

What it models, and what it does not:

- Latency, not bandwidth: every chunk read is stamped with the time it is due (read time plus
  the delay) and queued; a writer per direction sends each chunk when it is due. Chunks read
  10 ms apart arrive 10 ms apart, the delay later; nothing waits for an earlier chunk's delay.
- Order within a connection is kept (due times never decrease); connections are independent
  (each has its own two queues), so a delayed chunk never holds up another connection.
- A new connection costs a round trip before its first byte arrives (``handshake=True``, the
  default): the client's connect to the relay is local and instant, so the relay holds the
  first client bytes until three one-way delays after the accept, as a TCP handshake over the
  link would (SYN, SYN-ACK, then the data). TLS would add one or two round trips more; not
  modelled. A client that opens a connection per request pays this on every request.
- End of stream (a half-close) is relayed with the same delay, after the data before it.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import signal
import sys
import threading
from types import TracebackType
from typing import Self

_CHUNK = 65536
_EOF = b""


class LatencyProxy:
    """Relay ``listen_host:listen_port`` (0: a free port, see `port`) to ``target_host:target_port``
    with ``delay_s`` added to each direction."""

    def __init__(
        self,
        target_host: str,
        target_port: int,
        delay_s: float,
        *,
        listen_host: str = "127.0.0.1",
        listen_port: int = 0,
        handshake: bool = True,
    ) -> None:
        if delay_s < 0:
            raise ValueError(f"delay_s must be >= 0, not {delay_s}")
        self.target_host, self.target_port = target_host, target_port
        self.delay_s, self.handshake = delay_s, handshake
        self.listen_host, self._listen_port = listen_host, listen_port
        self.connections = 0
        """Connections accepted so far (a client that reconnects per request shows here)."""
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._ready = threading.Event()
        self._error: BaseException | None = None

    @property
    def port(self) -> int:
        if self._server is None:
            raise RuntimeError("the proxy is not started")
        port: int = self._server.sockets[0].getsockname()[1]
        return port

    @property
    def url(self) -> str:
        return f"http://{self.listen_host}:{self.port}"

    # -- running on a thread -------------------------------------------------------------------

    def start(self) -> Self:
        """Listen, on an event loop in a daemon thread; returns once the port is bound."""
        if self._thread is not None:
            return self
        self._thread = threading.Thread(target=self._run_thread, name="latency-proxy", daemon=True)
        self._thread.start()
        self._ready.wait()
        if self._error is not None:
            raise self._error
        return self

    def stop(self) -> None:
        """Close the listener and every relayed connection; safe to call twice."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), loop).result(timeout=5)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout=5)
        self._thread = self._loop = None

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def _run_thread(self) -> None:
        loop = asyncio.new_event_loop()
        self._loop = loop
        try:
            loop.run_until_complete(self.listen())
        except BaseException as error:  # handed to start()
            self._error = error
            self._ready.set()
            loop.close()
            return
        self._ready.set()
        try:
            loop.run_forever()
        finally:
            loop.close()

    # -- the relay -----------------------------------------------------------------------------

    async def listen(self) -> asyncio.Server:
        """Start listening on the running loop (for callers that own a loop)."""
        self._server = await asyncio.start_server(self._accept, self.listen_host, self._listen_port)
        return self._server

    async def _close(self) -> None:
        if self._server is not None:
            self._server.close()
        for task in list(self._tasks):
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)

    async def _accept(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        self.connections += 1
        loop = asyncio.get_running_loop()
        accepted = loop.time()
        try:
            try:
                server_r, server_w = await asyncio.open_connection(
                    self.target_host, self.target_port
                )
            except OSError:
                client_w.close()
                return
            # NOTE: the handshake's round trip delays the first client bytes, not the accept:
            # see the module docstring.
            ready_at = accepted + (2 * self.delay_s if self.handshake else 0.0)
            try:
                await asyncio.gather(
                    self._pipe(client_r, server_w, not_before=ready_at),
                    self._pipe(server_r, client_w, not_before=accepted),
                )
            except asyncio.CancelledError:
                return  # stop() closes connections still open (kept alive): not an error
            finally:
                for writer in (client_w, server_w):
                    writer.close()
        finally:
            self._tasks.discard(task)

    async def _pipe(
        self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *, not_before: float
    ) -> None:
        """Copy ``reader`` to ``writer``, each chunk ``delay_s`` after it was read."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes]] = asyncio.Queue()

        async def read() -> None:
            while True:
                try:
                    chunk = await reader.read(_CHUNK)
                except (ConnectionError, OSError):
                    chunk = _EOF
                # Due times never decrease (monotonic clock, fixed delay): order is kept.
                queue.put_nowait((max(loop.time(), not_before) + self.delay_s, chunk))
                if chunk == _EOF:
                    return

        async def write() -> None:
            while True:
                due, chunk = await queue.get()
                wait = due - loop.time()
                if wait > 0:
                    await asyncio.sleep(wait)
                try:
                    if chunk == _EOF:
                        if writer.can_write_eof():
                            writer.write_eof()
                        return
                    writer.write(chunk)
                    await writer.drain()
                except (ConnectionError, OSError):
                    return

        reading = asyncio.create_task(read())
        try:
            await write()
        finally:
            reading.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await reading


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python bench/latency_proxy.py", description=__doc__)
    parser.add_argument("--target", required=True, help="HOST:PORT to relay to")
    parser.add_argument("--delay-ms", type=float, required=True, help="one-way delay")
    parser.add_argument("--port", type=int, default=0, help="port to listen on (0: a free one)")
    parser.add_argument("--host", default="127.0.0.1", help="address to listen on")
    parser.add_argument(
        "--no-handshake", action="store_true", help="new connections cost no extra round trip"
    )
    parser.add_argument(
        "--delay-file",
        default=None,
        help="on SIGHUP, the one-way delay in ms is read again from this file (a bench moves "
        "one set of consumers from 0 to 40 ms without restarting them)",
    )
    args = parser.parse_args(argv)
    host, _, port = args.target.rpartition(":")
    proxy = LatencyProxy(
        host or "127.0.0.1",
        int(port),
        args.delay_ms / 1000,
        listen_host=args.host,
        listen_port=args.port,
        handshake=not args.no_handshake,
    )

    async def serve() -> None:
        await proxy.listen()
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)

        def reload() -> None:
            # Chunks already queued keep their due times; a connection's chunks stay in order
            # (one queue each way), a lower delay only lets the next ones out sooner.
            if args.delay_file:
                with open(args.delay_file) as file:
                    proxy.delay_s = float(file.read()) / 1000
                print(f"latency proxy: {proxy.delay_s * 1000:g} ms each way", flush=True)

        loop.add_signal_handler(signal.SIGHUP, reload)
        # The line a parent process waits for (bench/wan.py reads the port from it).
        print(
            f"latency proxy on {proxy.listen_host}:{proxy.port} -> {args.target}, "
            f"{args.delay_ms:g} ms each way",
            flush=True,
        )
        await stop.wait()
        await proxy._close()
        print(f"latency proxy: {proxy.connections} connections relayed", flush=True)

    asyncio.run(serve())
    return 0


if __name__ == "__main__":
    sys.exit(main())
