"""``georep chaos --deployment``: the workload against a deployment georep runs already (here,
consumers on threads over a moto server), on keys under a prefix of its own, deleted after."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from service.adapters.backends import MotoServer
from service.core.chaos import is_tombstone
from service.engine.chaos.runner import Plan, run, scan
from service.engine.wiring import Consumer
from service.surfaces.chaos import deployment_target
from service.surfaces.local import local_replica_set

pytestmark = pytest.mark.integration


def test_a_run_against_a_deployment_writes_under_its_prefix_and_deletes_its_keys(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    with MotoServer() as backend:
        replicas = local_replica_set(
            backend, tmp_path, prefix="deployed", regions=("eu-west-1", "us-east-1")
        )
        for name, value in replicas.credentials.items():
            monkeypatch.setenv(name.upper(), value)
        replicas.client("eu-west-1").put_item(
            TableName=replicas.table_name, Item={"pk": {"S": "user-data"}}
        )
        consumers = [Consumer(replicas.config, region=r) for r in replicas.config.region_names]
        stop = threading.Event()
        threads = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
        for c in consumers:
            c.setup()
        for t in threads:
            t.start()
        try:
            target = deployment_target(replicas.config)
            report = run(
                target,
                Plan(duration=4, writers=1, keys=2, faults=frozenset({"skew"}), seed=3),
                progress=None,
            )
        finally:
            stop.set()
            for t in threads:
                t.join()
            for c in consumers:
                c.close()
        assert report.ok, report.verdict
        assert report.writes_acknowledged > 0
        assert report.faults == {}  # nothing is injected into a deployment but the skew
        mine = scan(target, "eu-west-1")
        assert mine and all(is_tombstone(item) for item in mine.values())
        assert "user-data" in replicas.scan("eu-west-1")  # the run touched nothing else
