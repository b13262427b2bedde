"""Two `georep run` processes for one region: one holds the stream's shard (moto's stream has
one), the other stands by; each record is replicated once; when the holder stops (SIGTERM:
it releases its lease) or dies (SIGKILL: its lease runs out), the standby takes over and
nothing written meanwhile is lost."""

from __future__ import annotations

import re
import signal
import subprocess
import urllib.request
from collections import Counter
from pathlib import Path

import pytest

from service.adapters.backends import EmbeddedBackend
from tests.integration.cluster import REGIONS, Cluster, make_cluster, pid_of, wait_for
from tests.integration.streams import read_stream

pytestmark = pytest.mark.integration

SOURCE = REGIONS[0]
DESTINATIONS = [r for r in REGIONS if r != SOURCE]
ELSEWHERE = "georep-elsewhere"


def _other_host() -> list[str]:
    """A command prefix that runs a process under another host name (a user and UTS
    namespace), so that this host's consumers cannot tell it died
    (service.engine.leases.process_gone)
    and must wait for its lease to run out; empty if this machine cannot do that."""
    probe = ["unshare", "-r", "-u", "true"]
    try:
        if subprocess.run(probe, capture_output=True, timeout=10).returncode != 0:
            return []
    except (OSError, subprocess.TimeoutExpired):
        return []
    return ["unshare", "-r", "-u", "sh", "-c", f'hostname {ELSEWHERE} && exec "$@"', "sh"]


def _holders(cluster: Cluster) -> set[int | None]:
    return {pid_of(owner) for owner in cluster.lease_owners(SOURCE).values()}


def _records_read(log: Path) -> float:
    """The consumer's ``records_read`` counter, from its /metrics (port in its log)."""
    found = re.search(r"metrics on (http://\S+/metrics)", log.read_text())
    assert found, f"no metrics port in {log.name}"
    with urllib.request.urlopen(found.group(1), timeout=10) as response:
        text = response.read().decode()
    return sum(
        float(line.rsplit(" ", 1)[1])
        for line in text.splitlines()
        if line.startswith("georep_records_read_total{")
    )


def _stream_records_per_key(cluster: Cluster, region: str, *, expected: int) -> Counter[str]:
    client = cluster.client(region)
    arn = client.describe_table(TableName=cluster.table_name)["Table"]["LatestStreamArn"]
    streams = cluster.session().client(
        "dynamodbstreams", region_name=region, endpoint_url=cluster.backend.endpoint_url
    )
    records = read_stream(streams, arn, expected=expected)
    return Counter(r["dynamodb"]["Keys"]["pk"]["S"] for r in records)


@pytest.mark.parametrize("stop", ["SIGTERM", "SIGKILL"])
def test_two_consumers_of_one_region_replicate_once_and_the_standby_takes_over(
    backend: EmbeddedBackend, tmp_path: Path, stop: str
) -> None:
    """(a) With two consumers of one region running, each write is read by one of them only
    (their records_read counters) and applied once per destination (one stream record per key
    in each destination). (b) SIGTERM: the holder releases its lease on the way out and the
    standby takes over at its next lease tick (lease_seconds = 30: a holder that did not
    release would keep the shard for 20 s more than the wait allows). (c) SIGKILL of a holder
    running under another host name: the standby takes over once the lease runs out
    (lease_seconds = 2). Either way every write made after the stop reaches every region."""
    cluster = make_cluster(backend, tmp_path)
    lease_seconds = 30 if stop == "SIGTERM" else 2
    config = cluster.config_file(
        tmp_path / "r.toml", replication=f"lease_seconds = {lease_seconds}"
    )
    prefix = _other_host() if stop == "SIGKILL" else []
    logs = {name: tmp_path / f"{name}.log" for name in ("holder", "standby")}
    procs: dict[str, subprocess.Popen[bytes]] = {}
    try:
        procs["holder"] = cluster.run_consumer(
            SOURCE, log=logs["holder"], config=config, prefix=prefix, metrics=True
        )
        wait_for(
            lambda: {procs["holder"].pid} == _holders(cluster),
            timeout=30,
            what="the first consumer took no lease",
        )
        procs["standby"] = cluster.run_consumer(
            SOURCE, log=logs["standby"], config=config, metrics=True
        )
        wait_for(
            lambda: "replicating" in logs["standby"].read_text(),
            timeout=30,
            what="the second consumer did not start",
        )

        # (a) one reader, one write per destination and key
        before = [f"a{n:02d}" for n in range(40)]
        cluster.put_each(SOURCE, before, tag="a")
        wait_for(
            lambda: all(cluster.count(r, tag="a") == len(before) for r in DESTINATIONS),
            timeout=30,
            what="writes made with both consumers running were not replicated",
        )
        assert {procs["holder"].pid} == _holders(cluster)
        if prefix:  # the standby cannot see the holder die: it must wait for the lease
            owners = cluster.lease_owners(SOURCE).values()
            assert [ELSEWHERE] == sorted({(o or "").split(":")[0].split("/")[0] for o in owners})
        assert [len(before), 0] == [_records_read(logs[n]) for n in ("holder", "standby")]
        for region in DESTINATIONS:
            per_key = _stream_records_per_key(cluster, region, expected=len(before))
            assert dict.fromkeys(before, 1) == dict(per_key)

        procs["holder"].send_signal(getattr(signal, stop))
        status = procs["holder"].wait(timeout=30)
        assert (0 if stop == "SIGTERM" else -signal.SIGKILL) == status
        if stop == "SIGTERM":  # released on the way out (or already taken by the standby)
            assert _holders(cluster) <= {None, procs["standby"].pid}

        # (b), (c): the standby takes over; nothing written after the stop is lost
        after = [f"b{n:02d}" for n in range(40)]
        cluster.put_each(SOURCE, after, tag="b")
        took = wait_for(
            lambda: all(cluster.count(r, tag="b") == len(after) for r in DESTINATIONS),
            timeout=18 if stop == "SIGTERM" else 30,
            what=f"the standby did not take over after the holder's {stop}",
        )
        assert {procs["standby"].pid} == _holders(cluster)
        print(f"{stop}: writes after the stop replicated {took:.1f} s later (prefix {prefix[:3]})")
    finally:
        for proc in procs.values():
            if proc.poll() is None:
                proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
    assert cluster.identical()
    for region in REGIONS:
        cluster.check_lww_verdict(final=cluster.scan(region))
