"""``georep verify`` as a user runs it: a subprocess against the moto server, exit codes and
printed output asserted."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import pytest

from bench.latency_proxy import LatencyProxy
from service.adapters.backends import EmbeddedBackend
from service.adapters.checkpoints import DynamoCheckpoints, DynamoCheckpointTable
from service.adapters.metrics import MemoryMetrics
from service.config import Config, load_config
from service.core.stored import Stamped, read_item
from service.engine.wiring import Consumer
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def verify(cluster: Cluster, *args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [
            sys.executable,
            "-m",
            "service.surfaces.cli",
            "verify",
            "-c",
            str(cluster.config_path),
            *args,
        ],
        env={**os.environ, **cluster.env(), "COLUMNS": "250"},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def verify_json(cluster: Cluster, *args: str) -> tuple[int, dict[str, Any]]:
    done = verify(cluster, "--json", *args)
    assert "Traceback" not in done.stderr, done.stderr
    return done.returncode, json.loads(done.stdout)


def consumers_of(cluster: Cluster, config: Config | None = None) -> list[Consumer]:
    consumers = [
        Consumer(
            config or cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics()
        )
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    return consumers


def all_stamped(cluster: Cluster) -> bool:
    settings = cluster.config.settings()
    return all(
        isinstance(read_item(item, settings=settings), Stamped)
        for region in REGIONS
        for item in cluster.scan(region).values()
    )


def test_a_raw_edit_behind_replications_back_is_divergent_and_repair_mends_it(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """With consumers stopped, a raw edit that copies the metadata back makes one region
    differ: verify reports it (exit 1) with what each region holds; --repair mends it (exit 0)
    and a second verify exits 0. The consumers then read the edit's record and adopt it:
    the regions stay identical (repair and the late adoption converge)."""
    cluster = make_cluster(backend, tmp_path)
    consumers = consumers_of(cluster)
    sdk = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    for n in range(5):
        sdk.put({"pk": {"S": f"k{n}"}, "v": {"S": f"v{n}"}})
    drain(consumers)
    assert cluster.identical()

    # Behind replication's back: a read-modify-write in one region that copies _georep.
    client = cluster.client(REGIONS[1])
    item = client.get_item(TableName=cluster.table_name, Key={"pk": {"S": "k1"}})["Item"]
    client.put_item(TableName=cluster.table_name, Item={**item, "v": {"S": "edited by hand"}})

    code, report = verify_json(cluster, "--timeout", "1.5")
    assert 1 == code
    summary = report["summary"]
    assert ("divergent", 1, 5, 4) == (
        summary["result"],
        summary["divergent_found"],
        summary["items_compared"],
        summary["identical"],
    )
    rows = {row["region"]: row for row in report["rows"]}
    assert {("k1", "divergent")} == {(row["key"]["pk"], row["status"]) for row in report["rows"]}
    assert "raw" == rows[REGIONS[1]]["holds"] and rows[REGIONS[1]]["version"].endswith("(copied)")
    assert "stamped" == rows[REGIONS[0]]["holds"] == rows[REGIONS[2]]["holds"]
    assert REGIONS[0] == rows[REGIONS[0]]["origin"]
    assert rows[REGIONS[0]]["digest"] != rows[REGIONS[1]]["digest"]

    done = verify(cluster, "--repair", "--timeout", "1.5")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "repaired: 1" in done.stdout and "result: repaired" in done.stdout
    assert "k1" in done.stdout and "raw" in done.stdout  # what the regions held before
    assert cluster.identical() and all_stamped(cluster)
    assert {"S": "edited by hand"} == cluster.scan(REGIONS[2])["k1"]["v"]

    done = verify(cluster, "--timeout", "1.5")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "result: identical" in done.stdout and "divergent found: 0" in done.stdout

    drain(consumers)  # the edit's own record is adopted now, after the repair
    for consumer in consumers:
        consumer.close()
    assert cluster.identical() and all_stamped(cluster)
    assert {"S": "edited by hand"} == cluster.scan(REGIONS[0])["k1"]["v"]


def test_verify_during_a_live_workload_reports_pending_never_divergent(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Stamped and raw writers in every region on a few shared keys, consumers running, and
    verify started while they write (they go on for 4 s after it starts, so its scans meet
    writes in flight): what differs is pending, it settles once the writers stop, and verify
    exits 0 without a single divergent key."""
    cluster = make_cluster(backend, tmp_path)
    # NOTE: the consumers write to regions 60 ms away, so that replication is not done before
    # verify's scans get there (on loopback the window applies a write within milliseconds).
    moto = urlsplit(backend.endpoint_url)
    assert moto.hostname is not None and moto.port is not None
    proxy = LatencyProxy(moto.hostname, moto.port, delay_s=0.060).start()
    far = cluster.config_file(tmp_path / "far.toml", endpoints={r: proxy.url for r in REGIONS})
    consumers = consumers_of(cluster, load_config(far))
    stop, stop_writing = threading.Event(), threading.Event()

    def write(region: str, seed: int) -> None:
        while not stop_writing.is_set():
            cluster.write_load(region=region, keys=6, writes=5, seed=seed, raw_share=0.25)
            seed += len(REGIONS)

    pollers = [threading.Thread(target=c.run, kwargs={"stop": stop}) for c in consumers]
    writers = [threading.Thread(target=write, args=(r, 30 + i)) for i, r in enumerate(REGIONS)]
    for thread in pollers + writers:
        thread.start()
    try:
        command = [
            sys.executable,
            "-m",
            "service.surfaces.cli",
            "verify",
            "--json",
            "--timeout",
            "60",
        ]
        process = subprocess.Popen(
            [*command, "-c", str(cluster.config_path)],
            env={**os.environ, **cluster.env()},
            cwd=ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        time.sleep(4.0)
        stop_writing.set()
        for thread in writers:
            thread.join()
        out, err = process.communicate(timeout=120)
    finally:
        stop_writing.set()
        stop.set()
        for thread in pollers:
            thread.join()
    drain(consumers)
    for consumer in consumers:
        consumer.close()
    proxy.stop()
    summary = json.loads(out)["summary"]
    assert (0, 0, 0) == (
        process.returncode,
        summary["divergent_found"],
        summary["still_pending"],
    ), out + err
    assert "identical" == summary["result"]
    assert 0 < summary["pending"] == summary["settled"]  # the scans met writes in flight
    assert cluster.identical()


def test_a_clean_full_repair_pass_clears_needs_repair_markers_and_no_other_pass_does(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """A region's stream lost records (trimmed): its marker is set and a write made there
    never reached the others. A --key pass does not clear the marker; a full --repair pass that
    left an unrepairable key (tampered metadata) does not either; once that is fixed by hand,
    a clean full --repair pass does."""
    cluster = make_cluster(backend, tmp_path)
    consumers = consumers_of(cluster)
    GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0]).put(
        {"pk": {"S": "k0"}, "v": {"S": "v0"}}
    )
    GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0]).put(
        {"pk": {"S": "k2"}, "v": {"S": "v2"}}
    )
    drain(consumers)
    for consumer in consumers:
        consumer.close()

    lossy = cluster.client(REGIONS[1])
    arn = lossy.describe_table(TableName=cluster.table_name)["Table"]["LatestStreamArn"]
    checkpoint_table = cluster.config.replication.checkpoint_table
    DynamoCheckpoints(lossy, table_name=checkpoint_table, stream_arn=arn).mark_needs_repair(
        "shard-000001 trimmed before it was read"
    )
    markers = DynamoCheckpointTable(
        lossy, table_name=checkpoint_table, replica_table=cluster.table_name
    )
    # The write whose record was trimmed: in its region only.
    GeorepTable(lossy, config=cluster.config, region=REGIONS[1]).put(
        {"pk": {"S": "k1"}, "v": {"S": "lost record"}}
    )
    # And metadata no one can read, in another region.
    other = cluster.client(REGIONS[2])
    good = other.get_item(TableName=cluster.table_name, Key={"pk": {"S": "k2"}})["Item"]
    other.put_item(TableName=cluster.table_name, Item={**good, "_georep": {"M": {"s": {"N": "1"}}}})

    code, report = verify_json(cluster, "--repair", "--key", "k0", "--timeout", "1")
    assert (0, 0) == (code, report["summary"]["markers_cleared"])
    assert 1 == len(markers.repair_markers())

    code, report = verify_json(cluster, "--repair", "--timeout", "1")
    assert 1 == code
    statuses = {(row["key"]["pk"], row["status"]) for row in report["rows"]}
    assert {("k1", "repaired"), ("k2", "unrepairable")} == statuses
    assert (1, 0) == (
        report["summary"]["needs_repair_markers"],
        report["summary"]["markers_cleared"],
    )
    assert 1 == len(markers.repair_markers())
    assert {"S": "lost record"} == cluster.scan(REGIONS[0])["k1"]["v"]

    other.put_item(TableName=cluster.table_name, Item=good)  # fixed by hand
    code, report = verify_json(cluster, "--repair", "--timeout", "1")
    assert (0, 1) == (code, report["summary"]["markers_cleared"]), report
    assert [] == markers.repair_markers()
    assert cluster.identical()


def test_verify_refuses_a_sort_key_the_table_does_not_have(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    cluster = make_cluster(backend, tmp_path)
    done = verify(cluster, "--key", "k0", "--sort-key", "1")
    assert 2 == done.returncode
    assert "has no sort key" in done.stderr and 1 == len(done.stderr.strip().splitlines())


def test_verify_of_a_key_in_no_region_exits_1_saying_not_found(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Issue 18, point 1: a typo (a key no region holds) said "result: clean", "identical: 1",
    exit 0. It is one line on stderr and exit 1; a key every region holds is still exit 0."""
    cluster = make_cluster(backend, tmp_path)
    consumers = consumers_of(cluster)
    GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0]).put(
        {"pk": {"S": "cart#1"}, "v": {"S": "v"}}
    )
    drain(consumers)
    for consumer in consumers:
        consumer.close()

    done = verify(cluster, "--key", "nope#404")
    assert 1 == done.returncode, done.stdout + done.stderr
    assert [f"georep: key nope#404 not found in any region ({', '.join(REGIONS)})"] == (
        done.stderr.strip().splitlines()
    )
    assert "result: not found" in done.stdout
    code, report = verify_json(cluster, "--key", "nope#404")
    assert (1, "not found") == (code, report["summary"]["result"])
    assert (0, "identical") == (
        verify(cluster, "--key", "cart#1").returncode,
        verify_json(cluster, "--key", "cart#1")[1]["summary"]["result"],
    )


def test_verify_show_prints_each_regions_value_and_which_attributes_differ(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Issue 18, point 11: "both regions hold {book, lamp}" can be seen with georep: --key
    --show prints what every region holds; a divergent key's rows (full pass, --show) hold each
    region's data and the attributes that differ. The summary's word agrees with its counts:
    after a repair it says repaired, never clean next to divergent: 1."""
    cluster = make_cluster(backend, tmp_path)
    consumers = consumers_of(cluster)
    GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0]).put(
        {"pk": {"S": "cart#1"}, "items": {"SS": ["lamp", "book"]}, "quantity": {"N": "1"}}
    )
    drain(consumers)
    for consumer in consumers:
        consumer.close()

    code, report = verify_json(cluster, "--key", "cart#1", "--show")
    assert 0 == code
    held = {"items": ["book", "lamp"], "pk": "cart#1", "quantity": 1}
    assert [{"region": r, "differs_in": [], "value": held} for r in REGIONS] == report["values"]
    shown = verify(cluster, "--key", "cart#1", "--show")
    assert 0 == shown.returncode and "book, lamp" not in shown.stdout
    assert '"items": ["book", "lamp"]' in shown.stdout

    client = cluster.client(REGIONS[1])
    item = client.get_item(TableName=cluster.table_name, Key={"pk": {"S": "cart#1"}})["Item"]
    client.put_item(TableName=cluster.table_name, Item={**item, "quantity": {"N": "7"}})
    code, report = verify_json(cluster, "--show", "--timeout", "1")
    assert 1 == code
    values = {row["region"]: (row["differs_in"], row["value"]) for row in report["rows"]}
    assert (["quantity"], {**held, "quantity": 7}) == values[REGIONS[1]]
    assert (["quantity"], held) == values[REGIONS[0]]

    code, report = verify_json(cluster, "--repair", "--timeout", "1")
    summary = report["summary"]
    assert (0, "repaired", 1, 1, 0) == (
        code,
        summary["result"],
        summary["divergent_found"],
        summary["repaired"],
        summary["divergent_left"],
    )
