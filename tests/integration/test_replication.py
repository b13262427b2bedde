"""Three regions, concurrent writers, real HTTP to an emulator: regions converge."""

from __future__ import annotations

import threading
import time
from pathlib import Path

import pytest

from service.backends import EmbeddedBackend
from service.consumer import Consumer
from service.pipeline import MemoryMetrics
from tests.integration.cluster import REGIONS, Cluster, make_cluster

pytestmark = pytest.mark.integration


def drain(consumers: list[Consumer], *, quiet_rounds: int = 3, timeout: float = 120) -> None:
    """Poll every region until no stream has anything left for a few rounds."""
    deadline, quiet = time.monotonic() + timeout, 0
    while quiet < quiet_rounds:
        assert time.monotonic() < deadline, "streams did not drain"
        quiet = quiet + 1 if sum(c.poll_once() for c in consumers) == 0 else 0


def test_three_regions_with_concurrent_stamped_and_raw_writers_converge(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Writers in every region on overlapping keys, consumers polling meanwhile; after the
    writers stop and the streams drain, every region holds byte-identical items and the
    last-writer-wins verdict holds for every acknowledged stamped write."""
    cluster: Cluster = make_cluster(backend, tmp_path)
    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    stop = threading.Event()
    pollers = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
    writers = [
        threading.Thread(
            target=cluster.write_load,
            kwargs={"region": r, "keys": 4, "writes": 60, "seed": i, "raw_share": 0.2},
        )
        for i, r in enumerate(REGIONS)
    ]
    for thread in pollers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    stop.set()
    for thread in pollers:
        thread.join()
    drain(consumers)
    for consumer in consumers:
        consumer.close()
    assert cluster.identical()
    cluster.check_lww_verdict()
    assert 0 == sum(len(c.dead_letters.entries()) for c in consumers)
