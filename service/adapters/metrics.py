"""Metrics adapters: Prometheus text over HTTP for the standalone consumer.

(CloudWatch embedded metric format for Lambda lives with the handler.)
"""

from __future__ import annotations

import threading
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server

from service.ports import Labels, Metrics

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
        counter = self._get(self._counters, Counter, name, labels)
        counter.labels(**labels).inc(value)

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        histogram = self._get(self._histograms, Histogram, name, labels, buckets=LAG_BUCKETS)
        histogram.labels(**labels).observe(value)

    def _get(
        self,
        made: dict[str, Any],
        kind: Any,
        name: str,
        labels: Mapping[str, str],
        **options: Any,
    ) -> Any:
        """The collector for ``name``, created on first use with these label names."""
        with self._lock:
            if name not in made:
                made[name] = kind(
                    f"georep_{name}",
                    f"georep {name.replace('_', ' ')}",
                    sorted(labels),
                    registry=self.registry,
                    **options,
                )
            return made[name]


def serve(port: int) -> WSGIServer:
    """Serve /metrics on 127.0.0.1:``port`` (0: a free port). ``.server_port`` is the bound
    port; ``.shutdown()`` stops it."""
    server, _thread = start_http_server(port, addr="127.0.0.1")
    return server


@dataclass
class MemoryMetrics:
    """Counters and last observations in memory (tests; exported by the adapters)."""

    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    observations: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self.observations[name].append(value)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.counters.items() if n == name)


class TeeMetrics:
    """Every count and observation to each of ``sinks``, in order."""

    def __init__(self, *sinks: Metrics) -> None:
        self.sinks = sinks

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        for sink in self.sinks:
            sink.incr(name, labels, value)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        for sink in self.sinks:
            sink.observe(name, labels, value)
