"""bench/latency_proxy.py: a delay each way, per connection, kept in order, never serialised."""

from __future__ import annotations

import socket
import socketserver
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor

import pytest

from bench.latency_proxy import LatencyProxy

DELAY = 0.1


class _Echo(socketserver.BaseRequestHandler):
    def handle(self) -> None:
        while data := self.request.recv(65536):
            self.request.sendall(data)


@pytest.fixture
def echo_port() -> Iterator[int]:
    server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), _Echo)
    server.daemon_threads = True
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


def _round_trip(port: int, payload: bytes) -> float:
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        started = time.perf_counter()
        conn.sendall(payload)
        received = b""
        while len(received) < len(payload):
            received += conn.recv(65536)
        assert payload == received
        return time.perf_counter() - started


def test_a_round_trip_takes_at_least_twice_the_delay_and_a_new_connection_one_more(
    echo_port: int,
) -> None:
    """Without the handshake model a round trip costs 2 delays; with it, a first request on a
    new connection costs 4 (the connect's round trip, then the request's)."""
    with LatencyProxy("127.0.0.1", echo_port, DELAY, handshake=False) as proxy:
        plain = _round_trip(proxy.port, b"ping")
    with LatencyProxy("127.0.0.1", echo_port, DELAY) as proxy:
        first = _round_trip(proxy.port, b"ping")
    assert 2 * DELAY <= plain < 3 * DELAY
    assert 4 * DELAY <= first < 5 * DELAY


def test_two_concurrent_connections_overlap(echo_port: int) -> None:
    """Two connections' round trips run at once: together they take about one round trip."""
    with LatencyProxy("127.0.0.1", echo_port, DELAY, handshake=False) as proxy:
        started = time.perf_counter()
        with ThreadPoolExecutor(2) as pool:
            each = list(pool.map(lambda i: _round_trip(proxy.port, b"x" * (i + 1)), range(2)))
        total = time.perf_counter() - started
        assert 2 == proxy.connections
    assert all(2 * DELAY <= t for t in each)
    assert total < 3 * DELAY


def test_chunks_keep_their_order_and_are_pipelined_not_delayed_one_after_another(
    echo_port: int,
) -> None:
    """Five chunks sent 20 ms apart come back in order, the last about one round trip after
    it was sent (a bandwidth-style relay would take five round trips)."""
    with (
        LatencyProxy("127.0.0.1", echo_port, DELAY, handshake=False) as proxy,
        socket.create_connection(("127.0.0.1", proxy.port), timeout=5) as conn,
    ):
        started = time.perf_counter()
        for i in range(5):
            conn.sendall(f"<{i}>".encode())
            time.sleep(0.02)
        received = b""
        while len(received) < 15:
            received += conn.recv(65536)
        total = time.perf_counter() - started
    assert b"<0><1><2><3><4>" == received
    assert 2 * DELAY + 0.08 <= total < 3 * DELAY + 0.08
