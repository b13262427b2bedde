"""The standalone consumer's Prometheus endpoint serves georep's counters and histograms."""

from __future__ import annotations

import urllib.request

from prometheus_client import CollectorRegistry

from service.adapters.metrics import PrometheusMetrics, serve


def test_counters_and_lag_histograms_are_exposed_in_prometheus_text() -> None:
    registry = CollectorRegistry()
    metrics = PrometheusMetrics(registry)
    metrics.incr("records_read", {"region": "eu-west-1"}, 3)
    metrics.observe(
        "replication_lag_seconds", {"source": "eu-west-1", "destination": "us-east-1"}, 0.2
    )
    from prometheus_client import generate_latest

    text = generate_latest(registry).decode()
    assert 'georep_records_read_total{region="eu-west-1"} 3.0' in text
    assert "georep_replication_lag_seconds_bucket" in text


def test_the_metrics_endpoint_answers_on_loopback() -> None:
    metrics = PrometheusMetrics()
    metrics.incr("probe_hits", {"region": "r"})
    server = serve(0)
    try:
        url = f"http://127.0.0.1:{server.server_port}/metrics"
        with urllib.request.urlopen(url, timeout=5) as response:
            assert 200 == response.status
            assert "georep_probe_hits_total" in response.read().decode()
    finally:
        server.shutdown()
        server.server_close()
