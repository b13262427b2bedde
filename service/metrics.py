"""Metrics adapters: Prometheus text over HTTP for the standalone consumer.

(CloudWatch embedded metric format for Lambda lives with the handler.)
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

LAG_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0)


class PrometheusMetrics:
    """``georep_<name>_total`` counters and ``georep_<name>`` histograms, labelled as given."""

    def __init__(self, registry: CollectorRegistry | None = None) -> None:
        from prometheus_client import REGISTRY

        self.registry = registry or REGISTRY
        self._counters: dict[str, Counter] = {}
        self._histograms: dict[str, Histogram] = {}
        self._lock = threading.Lock()

    def incr(self, name: str, labels: Mapping[str, str], value: float = 1) -> None:
        with self._lock:
            counter = self._counters.get(name)
            if counter is None:
                counter = Counter(
                    f"georep_{name}",
                    f"georep {name.replace('_', ' ')}",
                    sorted(labels),
                    registry=self.registry,
                )
                self._counters[name] = counter
        counter.labels(**labels).inc(value)

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        with self._lock:
            histogram = self._histograms.get(name)
            if histogram is None:
                histogram = Histogram(
                    f"georep_{name}",
                    f"georep {name.replace('_', ' ')}",
                    sorted(labels),
                    buckets=LAG_BUCKETS,
                    registry=self.registry,
                )
                self._histograms[name] = histogram
        histogram.labels(**labels).observe(value)


def serve(port: int) -> WSGIServer:
    """Serve /metrics on 127.0.0.1:``port`` (0: a free port). ``.server_port`` is the bound
    port; ``.shutdown()`` stops it."""
    server, _thread = start_http_server(port, addr="127.0.0.1")
    return server
