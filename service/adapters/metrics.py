"""Metrics adapters: Prometheus text over HTTP for the standalone consumer.

(CloudWatch embedded metric format for Lambda lives with the handler.)
"""

from __future__ import annotations

import math
import threading
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
        self._histograms: dict[str, LogHistogram] = {}
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


class LogHistogram:
    """Observations of one metric in bounded memory: count, sum, min, max, and quantiles within
    1 % relative error.

    Each value falls in a logarithmic bucket (each 2 % wider than the one below, from 1 µs up),
    so a histogram holds at most about 1,400 buckets between 1 µs and 10 days however many
    values it sees; values at or below 1 µs (and negative ones: a lag under clock skew) share
    bucket 0. Before, every observation was kept in a list: ``georep backfill`` of 100 M items
    held 200 M floats (issue 16, finding 4).

    >>> h = LogHistogram()
    >>> for ms in range(1, 1001):
    ...     h.add(ms / 1000)
    >>> h.count, h.max, abs(h.quantile(0.99) - 0.99) / 0.99 < 0.01
    (1000, 1.0, True)
    """

    FLOOR = 1e-6
    GROWTH = 1.02

    def __init__(self) -> None:
        self.count = 0
        self.sum = 0.0
        self.min = math.inf
        self.max = -math.inf
        self.buckets: dict[int, int] = {}

    def _bucket(self, value: float) -> int:
        if value <= self.FLOOR:
            return 0
        return 1 + int(math.log(value / self.FLOOR) / math.log(self.GROWTH))

    def _value(self, bucket: int) -> float:
        """The middle of ``bucket`` (geometric): within 1 % of every value it holds."""
        if bucket == 0:
            return self.min if self.min <= self.FLOOR else self.FLOOR
        low = self.FLOOR * self.GROWTH ** (bucket - 1)
        return low * math.sqrt(self.GROWTH)

    def add(self, value: float) -> None:
        self.count += 1
        self.sum += value
        self.min, self.max = min(self.min, value), max(self.max, value)
        bucket = self._bucket(value)
        self.buckets[bucket] = self.buckets.get(bucket, 0) + 1

    def quantile(self, q: float) -> float:
        """The ``q``-quantile (0 <= q <= 1) of what was added; 0.0 when nothing was."""
        if not self.count:
            return 0.0
        rank, seen = q * (self.count - 1), 0
        for bucket in sorted(self.buckets):
            seen += self.buckets[bucket]
            if seen > rank:
                return min(max(self._value(bucket), self.min), self.max)
        return self.max


@dataclass
class MemoryMetrics:
    """Counters and histograms in memory, bounded whatever runs through them (tests, the demo,
    backfill and replay): counters are keyed by name and labels, observations summarised by a
    :class:`LogHistogram` per name."""

    counters: dict[tuple[str, tuple[tuple[str, str], ...]], float] = field(default_factory=dict)
    histograms: dict[str, LogHistogram] = field(default_factory=dict)

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        key = (name, tuple(sorted(labels.items())))
        self.counters[key] = self.counters.get(key, 0) + value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        histogram = self.histograms.get(name)
        if histogram is None:
            histogram = self.histograms[name] = LogHistogram()
        histogram.add(value)

    def total(self, name: str) -> float:
        return sum(v for (n, _), v in self.counters.items() if n == name)

    def histogram(self, name: str) -> LogHistogram:
        """What was observed under ``name`` (an empty histogram if nothing was)."""
        return self.histograms.get(name) or LogHistogram()


class LabelledMetrics:
    """Every count and observation to ``inner`` with ``labels`` added: a table's consumer
    labels what it counts with its table (``{"table": "orders"}``), so one process serving
    several tables keeps their series apart."""

    def __init__(self, inner: Metrics, labels: Labels) -> None:
        self.inner, self.labels = inner, dict(labels)

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        self.inner.incr(name, {**labels, **self.labels}, value)

    def observe(self, name: str, labels: Labels, value: float) -> None:
        self.inner.observe(name, {**labels, **self.labels}, value)


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
