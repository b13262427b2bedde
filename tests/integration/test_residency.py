"""Residency filters and redaction over HTTP: three regions on the moto server, the product's
consumers, writers through the SDK, and ``georep verify`` as a user runs it."""

from __future__ import annotations

import random
import threading
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.engine.wiring import Consumer
from service.surfaces.local import drain, local_replica_set
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster
from tests.integration.test_verify import verify

pytestmark = pytest.mark.integration

INSIDE = ("eu-west-1", "ap-southeast-2")  # the filter's regions, in this test's geography
OUTSIDE = "us-east-1"
RESIDENCY = f"""
[[filters]]
name = "eu-residency"
when = {{ attribute = "residency", equals = "EU" }}
regions = {list(INSIDE)!r}
""".replace("'", '"')
REDACTION = f"""
[[redactions]]
attributes = ["ssn", "dob"]
regions = ["{OUTSIDE}"]
"""


def _cluster(backend: EmbeddedBackend, tmp_path: Path, rules: str) -> Cluster:
    base = local_replica_set(
        backend, tmp_path, prefix="users", table=rules, replication="write_concurrency = 8"
    )
    return Cluster(base.backend, base.config_path, base.config, base.credentials, base.table_name)


def _consumers(cluster: Cluster) -> list[Consumer]:
    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    return consumers


def _deleted(item: dict[str, Any]) -> bool:
    return bool(item["_georep"]["M"]["d"]["BOOL"])


def _shown(item: dict[str, Any] | None) -> dict[str, Any] | None:
    """What an application sees of an item, without the redacted attributes."""
    if item is None or _deleted(item):
        return None
    return {
        k: v for k, v in item.items() if not k.startswith("_georep") and k not in ("ssn", "dob")
    }


def test_a_residency_filter_holds_under_a_concurrent_workload_and_verify_exits_0(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Writers in all three regions put EU and US items (and delete some) on shared keys while
    the consumers run. Meanwhile and after: the region outside the filter holds an EU item
    only where its own writer wrote it; after the streams drain every other item is identical
    everywhere, an EU item shows in both EU regions and in no other region but its writer's,
    and ``georep verify`` exits 0."""
    cluster = _cluster(backend, tmp_path, RESIDENCY)
    consumers = _consumers(cluster)
    stop, writing = threading.Event(), threading.Event()
    violations: list[str] = []

    def write(region: str, seed: int) -> None:
        rng = random.Random(seed)
        sdk = GeorepTable(cluster.client(region), config=cluster.config, region=region)
        for n in range(40):
            key = {"pk": {"S": f"u{rng.randrange(6)}"}}
            if rng.random() < 0.1:
                sdk.delete(key)
                continue
            res = rng.choice(["EU", "EU", "US"])
            sdk.put({**key, "v": {"S": f"{region}-{n}"}, "residency": {"S": res}})
        # An EU user of each region's own: the one written outside stays there.
        home = {"pk": {"S": f"home-{region}"}, "v": {"S": f"{region}-home"}}
        sdk.put({**home, "residency": {"S": "EU"}})

    def watch() -> None:
        while writing.is_set():
            for key, item in cluster.scan(OUTSIDE).items():
                value = item.get("v", {}).get("S", "")
                if item.get("residency") == {"S": "EU"} and not value.startswith(OUTSIDE):
                    violations.append(f"{key}: {item}")

    pollers = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
    writers = [threading.Thread(target=write, args=(r, i)) for i, r in enumerate(REGIONS)]
    writing.set()
    watcher = threading.Thread(target=watch)
    for thread in [*pollers, *writers, watcher]:
        thread.start()
    for thread in writers:
        thread.join()
    writing.clear()
    watcher.join()
    stop.set()
    for thread in pollers:
        thread.join()
    drain(consumers)
    assert 0 == sum(len(c.dead_letters.entries()) for c in consumers)
    for consumer in consumers:
        consumer.close()
    assert [] == violations
    scans = {r: cluster.scan(r) for r in REGIONS}
    assert set(scans[INSIDE[0]]) == set(scans[OUTSIDE]) == set(scans[INSIDE[1]])
    eu = 0
    for key, item in scans[INSIDE[0]].items():
        shown = _shown(item)
        assert shown == _shown(scans[INSIDE[1]][key])
        outside = _shown(scans[OUTSIDE][key])
        if shown is not None and shown["residency"] == {"S": "EU"}:
            eu += 1
            written_outside = shown["v"]["S"].startswith(OUTSIDE)
            assert (shown if written_outside else None) == outside, key
            if not written_outside:
                assert {"pk"} == set(scans[OUTSIDE][key]) - {"_georep"}, "a marker holds no data"
        else:
            assert shown == outside, key
    assert eu >= len(REGIONS), "the workload's own EU users were checked"
    assert "residency" in scans[OUTSIDE][f"home-{OUTSIDE}"], "kept where it was written"
    done = verify(cluster, "--timeout", "10")
    assert 0 == done.returncode, done.stdout + done.stderr


def test_a_redacted_attribute_never_reaches_its_region_and_survives_writes_made_there(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """ssn and dob are redacted from us-east-1. A user written in eu-west-1 reaches us-east-1
    without them; us-east-1 updates the user, and eu-west-1 and ap-southeast-2 keep ssn and
    dob with the update; ap-southeast-2 and us-east-1 then write concurrently: both holders end
    with ap-southeast-2's ssn, every region with the same visible attributes, us-east-1 never
    with ssn or dob, and ``georep verify`` exits 0."""
    cluster = _cluster(backend, tmp_path, REDACTION)
    consumers = _consumers(cluster)
    sdk = {r: GeorepTable(cluster.client(r), config=cluster.config, region=r) for r in REGIONS}
    key = {"pk": {"S": "user#1"}}
    sdk["eu-west-1"].put(
        {**key, "name": {"S": "Ann"}, "ssn": {"S": "123"}, "dob": {"S": "1990-01-01"}}
    )
    drain(consumers)
    assert {"pk", "name", "_georep"} == set(cluster.scan(OUTSIDE)["user#1"])
    sdk[OUTSIDE].update_item(
        Key=key, UpdateExpression="SET city = :c", ExpressionAttributeValues={":c": {"S": "Oslo"}}
    )
    drain(consumers)
    for region in INSIDE:
        item = cluster.scan(region)["user#1"]
        assert ({"S": "123"}, {"S": "Oslo"}) == (item["ssn"], item["city"]), region
    sdk["ap-southeast-2"].update_item(
        Key=key, UpdateExpression="SET ssn = :s", ExpressionAttributeValues={":s": {"S": "456"}}
    )
    sdk[OUTSIDE].update_item(
        Key=key, UpdateExpression="SET city = :c", ExpressionAttributeValues={":c": {"S": "Rome"}}
    )
    drain(consumers)
    for consumer in consumers:
        consumer.close()
    scans = {r: cluster.scan(r)["user#1"] for r in REGIONS}
    assert "ssn" not in scans[OUTSIDE] and "dob" not in scans[OUTSIDE]
    assert {"S": "456"} == scans[INSIDE[0]]["ssn"] == scans[INSIDE[1]]["ssn"]
    assert {"S": "1990-01-01"} == scans[INSIDE[0]]["dob"] == scans[INSIDE[1]]["dob"]
    assert _shown(scans[OUTSIDE]) == _shown(scans[INSIDE[0]]) == _shown(scans[INSIDE[1]])
    done = verify(cluster, "--timeout", "10")
    assert 0 == done.returncode, done.stdout + done.stderr
