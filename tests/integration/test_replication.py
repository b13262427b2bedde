"""Three regions, concurrent writers, real HTTP to an emulator: regions converge."""

from __future__ import annotations

import signal
import subprocess
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest

from bench.latency_proxy import LatencyProxy
from service.adapters.backends import EmbeddedBackend
from service.adapters.metrics import MemoryMetrics
from service.core.stored import Stamped, read_item
from service.engine.wiring import Consumer
from service.surfaces.local import drain
from service.surfaces.sdk import Clock, GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster, pid_of, wait_for

pytestmark = pytest.mark.integration


@pytest.mark.parametrize("store", [False, True], ids=["tombstone-items", "tombstone-store"])
def test_three_regions_with_concurrent_stamped_and_raw_writers_converge(
    backend: EmbeddedBackend, tmp_path: Path, store: bool
) -> None:
    """Writers in every region on overlapping keys, consumers polling meanwhile; after the
    writers stop and the streams drain, every region holds byte-identical items and the
    last-writer-wins verdict holds for every acknowledged stamped write. With the tombstone
    store, a deleted key's version is its store's tombstone (the verdict reads it there)."""
    cluster: Cluster = make_cluster(
        backend, tmp_path, replication=f"tombstone_store = {str(store).lower()}"
    )
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


def _start_consumer(cluster: Cluster, region: str, log_dir: Path) -> subprocess.Popen[bytes]:
    return cluster.run_consumer(region, log=log_dir / f"consumer-{region}.log")


def _wait_converged(cluster: Cluster, *, stable_for: float = 2.0, timeout: float = 180) -> None:
    deadline, since = time.monotonic() + timeout, None
    while True:
        assert time.monotonic() < deadline, "regions did not converge"
        settings = cluster.config.settings()
        ok = cluster.identical() and all(
            isinstance(read_item(item, settings=settings), Stamped)
            for item in cluster.scan(REGIONS[0]).values()
        )
        if not ok:
            since = None
        elif since is None:
            since = time.monotonic()
        elif time.monotonic() - since >= stable_for:
            return
        time.sleep(0.2)


def test_a_consumer_killed_mid_run_restarts_from_its_checkpoint_and_nothing_is_lost(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Consumers run as separate OS processes; one is killed with SIGKILL while writers are
    busy and restarted. Regions still converge, and every acknowledged write survives.
    Then replaying a region's stream from scratch (its checkpoints deleted) changes nothing."""
    cluster = make_cluster(backend, tmp_path)
    procs = {r: _start_consumer(cluster, r, tmp_path) for r in REGIONS}
    try:
        writers = [
            threading.Thread(
                target=cluster.write_load,
                kwargs={"region": r, "keys": 5, "writes": 80, "seed": 10 + i, "raw_share": 0.15},
            )
            for i, r in enumerate(REGIONS)
        ]
        for thread in writers:
            thread.start()
        time.sleep(1.0)
        victim = REGIONS[1]
        procs[victim].send_signal(signal.SIGKILL)  # kill -9, mid-run
        procs[victim].wait()
        time.sleep(0.5)
        procs[victim] = _start_consumer(cluster, victim, tmp_path)
        for thread in writers:
            thread.join()
        _wait_converged(cluster)
    finally:
        for proc in procs.values():
            proc.terminate()
        for proc in procs.values():
            proc.wait(timeout=30)
    cluster.check_lww_verdict()

    # Replay from an older checkpoint (here: from the trim horizon): nothing changes.
    before = {r: cluster.scan(r) for r in REGIONS}
    client = cluster.client(REGIONS[0])
    table = cluster.config.replication.checkpoint_table
    for item in client.scan(TableName=table)["Items"]:
        client.delete_item(TableName=table, Key={"shard": item["shard"]})
    replay = Consumer(cluster.config, region=REGIONS[0], session=cluster.session())
    drain([replay])
    replay.close()
    assert before == {r: cluster.scan(r) for r in REGIONS}


def test_a_consumer_killed_with_its_window_full_loses_nothing_and_restarts_at_once(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """kill -9 lands while the window holds hundreds of records read and not yet applied
    everywhere (the two destinations 50 ms away each way, behind a latency proxy): after a
    restart with the same configuration every acknowledged write is in every region and the
    regions are byte-identical. The restart takes the dead process's lease at once
    (process_gone), not after lease_seconds: set to 60 s, a regression times out here."""
    cluster = make_cluster(backend, tmp_path)
    victim = REGIONS[1]
    destinations = [r for r in REGIONS if r != victim]
    keys = [f"k{n:03d}" for n in range(240)]
    cluster.put_each(victim, keys, tag="w")  # all in the stream before the consumer starts
    moto = urlsplit(backend.endpoint_url)
    assert moto.hostname is not None and moto.port is not None

    def applied() -> list[int]:
        return [cluster.count(r, tag="w") for r in destinations]

    with LatencyProxy(moto.hostname, moto.port, delay_s=0.050) as proxy:
        config = cluster.config_file(
            tmp_path / "far.toml",
            endpoints={r: proxy.url for r in destinations},
            replication="lease_seconds = 60",
        )
        log = tmp_path / "victim.log"
        proc = cluster.run_consumer(victim, log=log, config=config)
        try:
            at_kill: list[int] = []

            def some_applied() -> bool:
                at_kill[:] = applied()
                return min(at_kill) >= len(keys) // 10

            wait_for(some_applied, timeout=60, what="the consumer applied nothing")
            proc.send_signal(signal.SIGKILL)
            proc.wait()
            # Some, not all: the kill landed with records in flight to both destinations.
            assert max(at_kill) <= len(keys) * 9 // 10, f"the kill came too late: {at_kill}"
            proc = cluster.run_consumer(victim, log=log, config=config)
            restarted = proc.pid

            def held_by_the_restart() -> bool:
                owners = list(cluster.lease_owners(victim).values())
                return bool(owners) and all(pid_of(o) == restarted for o in owners)

            took = wait_for(
                held_by_the_restart,
                timeout=40,
                what="the restarted consumer did not take the dead one's lease before "
                "lease_seconds (60 s) would have passed: is process_gone consulted?",
            )
            wait_for(
                lambda: applied() == [len(keys)] * len(destinations),
                timeout=120,
                what="the restarted consumer did not apply every record",
            )
        finally:
            proc.terminate()
            proc.wait(timeout=30)
    print(f"killed at {at_kill} of {len(keys)} applied; the restart held the lease in {took:.1f} s")
    assert cluster.identical()
    for region in REGIONS:
        cluster.check_lww_verdict(final=cluster.scan(region))


@pytest.mark.parametrize("second", ["put", "delete"])
def test_over_moto_a_raw_write_succeeds_the_unadopted_raw_write_it_replaced(
    backend: EmbeddedBackend, tmp_path: Path, second: str
) -> None:
    """Review finding 1, general form, over HTTP: a stamped version everywhere, then two
    plain boto3 writes to one key in one region before its consumer runs. The second (a put,
    or a delete) ends in every region, through the consumers' own Replicators, UpdateItem
    annotation included."""
    cluster: Cluster = make_cluster(backend, tmp_path)
    consumers = [
        Consumer(cluster.config, region=r, session=cluster.session(), metrics=MemoryMetrics())
        for r in REGIONS
    ]
    for consumer in consumers:
        consumer.setup()
    home = REGIONS[0]
    client = cluster.client(home)
    key = {"pk": {"S": "k0"}}
    # The stamped write's clock runs 5 s ahead: its version's clock is above the stream's
    # time of both raw writes (as a same-second stamped write's is above a whole second).
    ahead = Clock(now_ms=lambda: int(time.time() * 1000) + 5_000)
    sdk = GeorepTable(client, config=cluster.config, region=home, clock=ahead)
    sdk.put({**key, "v": {"S": "stamped"}})
    drain(consumers)
    client.put_item(TableName=cluster.table_name, Item={**key, "v": {"S": "first"}})
    if second == "put":
        client.put_item(TableName=cluster.table_name, Item={**key, "v": {"S": "second"}})
    else:
        client.delete_item(TableName=cluster.table_name, Key=key)
    drain(consumers)
    for consumer in consumers:
        consumer.close()
    assert cluster.identical()
    stored = cluster.current(home, "k0")  # a delete's tombstone is in the store (the default)
    assert isinstance(stored, Stamped)
    assert all(stored == cluster.current(region, "k0") for region in REGIONS)
    if second == "put":
        assert stored.version.data["v"] == {"S": "second"}
    else:
        assert stored.version.meta.deleted
        assert all("k0" not in cluster.scan(region) for region in REGIONS)
