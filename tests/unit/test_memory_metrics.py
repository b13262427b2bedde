"""The in-memory metrics sink stays bounded however long a command runs (issue 16, finding 4:
`georep backfill` kept every lag sample, two floats per item, never freed)."""

from __future__ import annotations

import doctest
import math
import tracemalloc

from hypothesis import given
from hypothesis import strategies as st

import service.adapters.metrics
from service.adapters.metrics import LogHistogram, MemoryMetrics


def test_memory_metrics_hold_a_bounded_amount_however_many_lags_they_observe() -> None:
    """200,000 observations (a backfill of 100,000 items to two destinations) must not be
    kept one by one: a list of them alone would be 1.6 MB of pointers plus the floats."""
    metrics = MemoryMetrics()
    labels = {"source": "eu-west-1", "destination": "us-east-1"}
    metrics.observe("replication_lag_seconds", labels, 0.5)  # the first allocations
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for i in range(200_000):
            metrics.observe("replication_lag_seconds", labels, (i % 5_000) / 1_000)
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    assert grown < 200_000, f"{grown} bytes for 200,000 observations"
    assert 200_001 == metrics.histogram("replication_lag_seconds").count


@given(
    st.lists(st.floats(min_value=1e-5, max_value=1e5), min_size=1, max_size=300),
    st.floats(min_value=0, max_value=1),
)
def test_a_histogram_quantile_is_within_one_percent_of_the_exact_one(
    values: list[float], q: float
) -> None:
    histogram = LogHistogram()
    for value in values:
        histogram.add(value)
    exact = sorted(values)[math.floor(q * (len(values) - 1))]
    assert math.isclose(exact, histogram.quantile(q), rel_tol=0.0101)
    assert (min(values), max(values), len(values)) == (
        histogram.min,
        histogram.max,
        histogram.count,
    )
    assert math.isclose(sum(values), histogram.sum)


def test_a_histogram_of_negative_and_tiny_lags_answers_within_their_range() -> None:
    """A lag under clock skew can be negative: it is counted, and quantiles stay in range."""
    histogram = LogHistogram()
    for value in (-0.2, -0.1, 0.0, 1e-9):
        histogram.add(value)
    assert -0.2 == histogram.quantile(0)
    assert -0.2 <= histogram.quantile(1) <= 1e-9
    assert 0.0 == LogHistogram().quantile(0.99)


def test_the_metrics_module_examples_hold() -> None:
    assert 0 == doctest.testmod(service.adapters.metrics).failed
