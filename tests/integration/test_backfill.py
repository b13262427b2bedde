"""``georep backfill`` as a user runs it, over the embedded moto server: the onboarding path
(a populated table without a stream, ``init``, consumers, ``backfill --from``) stopped half
way twice (SIGTERM, then SIGKILL) and resumed, with live writers on overlapping keys."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.core import hlc
from service.core.stored import Raw, Stamped, read_item
from service.core.version import META_ATTR, data_of
from service.engine.backfill import DynamoProgress, Saved, job_prefix
from service.engine.wiring import Consumer
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster
from tests.unit.test_cli_refusals import ROOT, no_aws_environment, write_config

pytestmark = pytest.mark.integration

SOURCE = REGIONS[0]
# Enough pages that both stops land mid-table (each waits for 2 pages of saved progress) and
# the last run has hundreds left; the moto server answers ~300 requests/s, so every item
# costs make test time (2,000 items took 120 s).
RAW_ITEMS = 240  # with the store every backfilled insert is a transaction per destination
STAMPED_ITEMS = 50  # written through the SDK before the stream existed: never replicated
LIVE_KEYS = 60  # the live writers' keys, k0..k59: raw items of the backfill too
PAGE = 20


def _typed(i: int) -> dict[str, dict[str, Any]]:
    """One value of every DynamoDB type, different for each ``i``."""
    return {
        "s": {"S": f"héllo {i} ✓"},
        "n": {"N": f"-{i}.25"},
        "b": {"B": bytes([i % 256, 0, 255])},
        "t": {"BOOL": i % 2 == 0},
        "nul": {"NULL": True},
        "m": {"M": {"i": {"N": str(i)}}},
        "l": {"L": [{"S": "x"}, {"N": str(i)}]},
        "ss": {"SS": ["a", f"s{i}"]},
        "ns": {"NS": ["1", str(i + 2)]},
        "bs": {"BS": [b"\x00", bytes([i % 256, 1])]},
    }


def every_type(i: int) -> dict[str, Any]:
    """Item ``k<i>``: one in ten holds every DynamoDB type and the hard cases (38 digits,
    nesting, empty strings and containers, every byte value); the others hold three types
    in turn, so every type is in hundreds of items. (moto's Scan and stream records cost
    about a millisecond per attribute value, and the test must stay short.)"""
    typed = _typed(i)
    if i % 10:
        names = list(typed)
        chosen = {names[i % 10], names[(i + 3) % 10], names[(i + 7) % 10]}
        return {"pk": {"S": f"k{i}"}, **{name: typed[name] for name in chosen}}
    return {
        "pk": {"S": f"k{i}"},
        **typed,
        "n38": {"N": "12345678901234567890123456789012345678"},
        "bytes": {"B": bytes(range(256))},
        "nested": {"M": {"empty": {"S": ""}, "l": {"L": [{"NULL": True}, {"M": {}}, {"L": []}]}}},
        "sets": {"L": [{"BS": [b"\xff"]}, {"NS": ["0.5"]}, {"SS": [""]}]},
    }


def georep(cluster: Cluster, *args: str) -> list[str]:
    return [sys.executable, "-m", "service.surfaces.cli", *args, "-c", str(cluster.config_path)]


def run(cluster: Cluster, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        georep(cluster, *args),
        env={**os.environ, **cluster.env()},
        capture_output=True,
        text=True,
        timeout=300,
    )


def start(cluster: Cluster, *args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        georep(cluster, *args),
        env={**os.environ, **cluster.env()},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def progress_of(cluster: Cluster) -> DynamoProgress:
    prefix = job_prefix(table=cluster.table_name, source=SOURCE, destinations=REGIONS[1:])
    return DynamoProgress(
        cluster.client(SOURCE),
        table_name=cluster.config.replication.checkpoint_table,
        prefix=prefix,
    )


def saved_scanned(saved: Saved) -> int:
    return sum(p.scanned for segments in saved.segments.values() for p in segments.values())


def wait_for(condition: Callable[[], bool], *, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.25)


def replace_with_an_unstreamed_table(cluster: Cluster) -> None:
    """The source region's table as a user brings it: populated, no stream, no TTL."""
    client = cluster.client(SOURCE)
    client.delete_table(TableName=cluster.table_name)
    client.get_waiter("table_not_exists").wait(TableName=cluster.table_name)
    client.create_table(
        TableName=cluster.table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    client.get_waiter("table_exists").wait(TableName=cluster.table_name)


def populate(cluster: Cluster, items: list[dict[str, Any]]) -> None:
    client = cluster.client(SOURCE)
    for start_at in range(0, len(items), 25):
        chunk = items[start_at : start_at + 25]
        requests = {cluster.table_name: [{"PutRequest": {"Item": item}} for item in chunk]}
        while requests:
            requests = client.batch_write_item(RequestItems=requests).get("UnprocessedItems")


def test_a_backfill_stopped_twice_and_resumed_beside_live_writers_leaves_every_region_identical(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """240 raw items of every type, 50 stamped before the stream existed and one raw
    read-modify-write of a stamped item, in a table without a stream. backfill refuses before
    init; then init, consumers, live writers in every region on 60 of the keys (stamped puts
    and deletes, raw puts). The backfill is stopped by SIGTERM (exit 1, one line saying how to
    resume, progress kept) and by SIGKILL, and each rerun resumes where the stored progress
    says rather than restarting. In the end every region is byte-identical, every item a
    version, every acknowledged stamped write kept, every untouched item holds exactly its
    original data, and a rerun says the job is already complete."""
    cluster = make_cluster(backend, tmp_path)
    replace_with_an_unstreamed_table(cluster)
    originals = [every_type(i) for i in range(RAW_ITEMS)]
    populate(cluster, originals)
    sdk = GeorepTable(cluster.client(SOURCE), config=cluster.config, region=SOURCE)
    stamped = [sdk.put(every_type(i)) for i in range(RAW_ITEMS, RAW_ITEMS + STAMPED_ITEMS)]
    rmw = {**every_type(RAW_ITEMS), "s": {"S": "changed by a raw read-modify-write"}}
    rmw[META_ATTR] = cluster.client(SOURCE).get_item(
        TableName=cluster.table_name, Key={"pk": {"S": f"k{RAW_ITEMS}"}}
    )["Item"][META_ATTR]
    cluster.client(SOURCE).put_item(TableName=cluster.table_name, Item=rmw)
    total = RAW_ITEMS + STAMPED_ITEMS

    refused = run(cluster, "backfill", "--from", SOURCE)
    assert 2 == refused.returncode
    assert [f"region {SOURCE}"] == [
        line.split(",")[0].removeprefix("georep: ") for line in refused.stderr.splitlines()
    ]
    assert "stream is off" in refused.stderr
    assert 0 == run(cluster, "init").returncode

    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    stop_consumers, stop_writers = threading.Event(), threading.Event()
    threads = [threading.Thread(target=c.run, kwargs={"stop": stop_consumers}) for c in consumers]
    threads += [
        threading.Thread(
            target=cluster.write_load,
            kwargs={
                "region": region,
                "keys": LIVE_KEYS,
                "writes": 100_000,
                "seed": 100 + n,
                "raw_share": 0.3,
                "stop": stop_writers,
                "pause": 0.5,
            },
        )
        for n, region in enumerate(REGIONS)
    ]
    for thread in threads:
        thread.start()
    store = progress_of(cluster)
    started_ms = int(time.time() * 1000)
    try:
        slow = ("backfill", "--from", SOURCE, "--page-size", str(PAGE), "--max-wcu", "60")
        first = start(cluster, *slow)
        wait_for(lambda: saved_scanned(store.load()) >= 2 * PAGE, what="saved progress")
        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
        assert 1 == first.returncode
        # stderr: the progress display, then one line saying what to do
        said = [line for line in err.splitlines() if line.startswith("georep: ")]
        assert "georep: stopping: finishing the items in flight and saving progress" == said[0]
        assert 2 == len(said), err  # the stop acknowledged, then what to do
        assert "run the same command again to resume" in err.splitlines()[-1]
        after_first = saved_scanned(store.load())
        assert 0 < after_first < total

        second = start(cluster, *slow)
        wait_for(
            lambda: saved_scanned(store.load()) >= after_first + 2 * PAGE,
            what="progress by the second run",
        )
        second.send_signal(signal.SIGKILL)
        second.wait(timeout=30)
        saved = store.load()
        after_second = saved_scanned(saved)
        assert saved.done is None
        assert after_first < after_second < total
        other = run(cluster, "backfill", "--from", SOURCE, "--segments", "2")
        assert 2 == other.returncode
        assert ["--segments 4"] == [
            line[line.index("--segments") :][:12] for line in other.stderr.splitlines()
        ]

        last = run(cluster, "backfill", "--from", SOURCE, "--page-size", str(PAGE), "--json")
        assert 0 == last.returncode, last.stderr
        summary = json.loads(last.stdout)["summary"]
        assert ("complete", after_second) == (summary["status"], summary["resumed_from"])
        # Resumed, not restarted: the last run scanned only what the second left. The live
        # writers' deletes take keys out of the table (the tombstone store), so up to
        # LIVE_KEYS fewer; a restart would scan at least total - LIVE_KEYS again.
        assert total - LIVE_KEYS <= after_second + summary["scanned"] <= total
        assert 0 == summary["failed"]
    finally:
        stop_writers.set()
        stop_consumers.set()
        for thread in threads:
            thread.join()
    drain(consumers)
    for consumer in consumers:
        consumer.close()

    regions = {region: cluster.scan(region) for region in REGIONS}
    first_region, *others = regions.values()
    # Every key but the live writers' is there; those their deletes left deleted are absent.
    assert total - LIVE_KEYS <= len(first_region) <= total
    assert all(first_region == other for other in others)
    settings = cluster.config.settings()
    stored = {pk: read_item(item, settings=settings) for pk, item in first_region.items()}
    assert {} == {pk: s for pk, s in stored.items() if not isinstance(s, Stamped)}
    cluster.check_lww_verdict(final=first_region)
    assert 0 == sum(len(c.dead_letters.entries()) for c in consumers)
    for original in originals[LIVE_KEYS:]:
        item = first_region[original["pk"]["S"]]
        assert original == data_of(item)
        # stamped as of the stream's start, before the backfill began
        assert hlc.wall_ms(stored[original["pk"]["S"]].version.meta.hlc) < started_ms  # type: ignore[union-attr]
    for version in stamped[1:]:  # delivered as they were, not stamped again
        assert version.meta == stored[version.data["pk"]["S"]].version.meta  # type: ignore[union-attr]
    assert isinstance(read_item(rmw, settings=settings), Raw)
    assert data_of(rmw) == data_of(first_region[f"k{RAW_ITEMS}"])

    again = run(cluster, "backfill", "--from", SOURCE)
    assert 0 == again.returncode
    assert "already complete" in again.stdout


def test_a_finished_backfill_says_so_and_restart_runs_it_again(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Without consumers running: the backfill alone brings every item to the destinations it
    is given (``--to``), a second run says it is already complete and exits 0, and
    ``--restart`` goes over the table again, finding everything delivered."""
    cluster = make_cluster(backend, tmp_path)
    populate(cluster, [every_type(i) for i in range(40)])
    target = REGIONS[2]
    done = run(cluster, "backfill", "--from", SOURCE, "--to", target, "--json")
    assert 0 == done.returncode, done.stderr
    assert (40, 40, 40) == tuple(
        json.loads(done.stdout)["summary"][k] for k in ("scanned", "stamped", "delivered")
    )
    assert cluster.scan(SOURCE) == cluster.scan(target)
    assert {} == cluster.scan(REGIONS[1])  # not a destination; its consumer is not running

    again = run(cluster, "backfill", "--from", SOURCE, "--to", target)
    assert 0 == again.returncode
    assert [f"georep: backfill {SOURCE} -> {target} is already complete (40 items, finished"] == [
        line.split(" 20")[0] for line in again.stdout.splitlines()
    ]

    restarted = run(cluster, "backfill", "--from", SOURCE, "--to", target, "--restart", "--json")
    assert 0 == restarted.returncode
    summary = json.loads(restarted.stdout)["summary"]
    assert (40, 0, 0, 40) == tuple(
        summary[k] for k in ("scanned", "stamped", "delivered", "skipped")
    )


@pytest.mark.parametrize(
    ("options", "message"),
    [
        (("--from", "eu-west-1", "--to", "eu-west-1"), "--to includes eu-west-1, the region"),
        (("--from", "mars-north-1"), "region mars-north-1 is not configured"),
        (("--from", "eu-west-1", "--to", "us-east-1,nowhere"), "region nowhere is not"),
        (("--from", "eu-west-1", "--to", ","), "--to names no region"),
    ],
)
def test_a_usage_error_exits_2_with_one_line_before_reaching_aws(
    tmp_path: Path, options: tuple[str, ...], message: str
) -> None:
    """Regions that are not configured, or a destination that is the source, are refused
    with one line and exit 2 before any request (the endpoint is a closed port and there are
    no credentials)."""
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "service.surfaces.cli",
            "backfill",
            *options,
            "-c",
            str(write_config(tmp_path)),
        ],
        env={**no_aws_environment(tmp_path), "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert 2 == done.returncode
    assert [done.stderr.strip()] == done.stderr.strip().splitlines()
    assert done.stderr.startswith("georep: ") and message in done.stderr
    assert "" == done.stdout


def test_ctrl_c_stops_a_rate_limited_backfill_of_a_one_page_table_and_says_how_to_resume(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Issue 18, point 2: 600 items fit one 1 MB Scan page, and at --max-wcu 20 the page is
    a minute of writes: Ctrl-C was not acknowledged and the run went on to 601/601, exit 0.
    Now a page holds 100 items and a stop leaves the items not started: SIGINT is
    acknowledged, the run ends interrupted (exit 1) with items left, and the hint after a
    --restart run says to run it again without --restart (which would start over again)."""
    cluster = make_cluster(backend, tmp_path)
    populate(cluster, [{"pk": {"S": f"k{i}"}, "v": {"N": str(i)}} for i in range(600)])
    destination = cluster.client(REGIONS[1])

    def delivered() -> int:
        return int(destination.scan(TableName=cluster.table_name, Select="COUNT")["Count"])

    slow = ("backfill", "--from", SOURCE, "--max-wcu", "20", "--segments", "1")
    for extra in ((), ("--restart",)):
        before = delivered()
        process = start(cluster, *slow, *extra, "--json")
        wait_for(lambda before=before: delivered() > before, what="a delivered item")
        process.send_signal(signal.SIGINT)
        out, err = process.communicate(timeout=120)
        summary = json.loads(out)["summary"]
        assert (1, "interrupted") == (process.returncode, summary["status"]), err
        assert summary["scanned"] < 600
        said = [line for line in err.splitlines() if line.startswith("georep: ")]
        assert "georep: stopping: finishing the items in flight and saving progress" == said[0]
        if extra:
            assert said[-1].endswith(
                "run it again without --restart (georep backfill --from eu-west-1 --max-wcu 20 "
                f"--segments 1 --json -c {cluster.config_path}) to resume"
            ), said
        else:
            assert said[-1].endswith("run the same command again to resume"), said
