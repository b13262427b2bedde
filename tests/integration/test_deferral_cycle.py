"""Two regions each waiting on the other's adoption, over real HTTP to the embedded server
(session 37, docs/decisions.md "A deferred delivery waits in its lane"): the cycle that kept
the chaos runs with the tombstone store from ever converging.

Each region's stream holds, in order, a version of one key that the other region must defer
(it holds a raw write made there after the key's delete, not adopted yet), then a raw write of
the other key made after its delete, whose adoption the other region's version waits for. A
consumer that stops reading a shard at a deferred record and reads it again from its
checkpoint one batch at a time (``batch_size = 1`` here, 100 by default: a chaos run's streams
outgrow it) never reaches its own raw write, in either region: a deadlock. A patient consumer
keeps reading past the waiting record, adopts, and both regions converge."""

from __future__ import annotations

from pathlib import Path

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.engine.wiring import Consumer
from service.surfaces.local import drain, local_replica_set
from service.surfaces.sdk import GeorepTable

pytestmark = pytest.mark.integration

EU, US = "eu-west-1", "us-east-1"
A, B = {"pk": {"S": "a"}}, {"pk": {"S": "b"}}
FILLERS = 20


def test_two_regions_waiting_on_each_others_adoption_both_converge(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    made = local_replica_set(backend, tmp_path, regions=(EU, US), replication="batch_size = 1")
    metrics = [MemoryMetrics() for _ in (EU, US)]
    consumers = [
        Consumer(made.config, region=r, session=made.session(), metrics=m)
        for r, m in zip((EU, US), metrics, strict=True)
    ]
    for consumer in consumers:
        consumer.setup()
    sdk = {r: GeorepTable(made.client(r), config=made.config, region=r) for r in (EU, US)}
    try:
        for key in (A, B):
            sdk[EU].put({**key, "v": {"S": "first"}})
        drain(consumers)
        for key in (A, B):
            assert sdk[EU].delete(key) is not None
        drain(consumers)
        assert {} == made.scan(EU) == made.scan(US)

        # Nothing consumed from here on: each stream gets a version the other region defers,
        # other writes (more than the shard reads while the version waits), then the raw
        # write (after the delete) that the other region's version waits for.
        sdk[EU].put({**A, "v": {"S": "eu's a"}})
        sdk[US].put({**B, "v": {"S": "us's b"}})
        for region in (EU, US):
            for n in range(FILLERS):
                sdk[region].put({"pk": {"S": f"{region}-{n}"}, "v": {"S": "filler"}})
        made.client(EU).put_item(TableName=made.table_name, Item={**B, "v": {"S": "raw b"}})
        made.client(US).put_item(TableName=made.table_name, Item={**A, "v": {"S": "raw a"}})

        drain(consumers, timeout=60)
        waited = sum(m.total("deferred_behind_raw") for m in metrics)
    finally:
        for consumer in consumers:
            consumer.close()
    eu, us = made.scan(EU), made.scan(US)
    assert eu == us
    assert {"a", "b"} <= set(eu) and 2 + 2 * FILLERS == len(eu)
    assert waited > 0  # each version did wait on the other region's adoption
