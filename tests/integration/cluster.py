"""A three-region georep cluster on one embedded backend, for integration tests."""

from __future__ import annotations

import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from service.adapters.backends import EmbeddedBackend
from service.core.places import read_key
from service.core.stored import Stamped, read_item
from service.core.tombstones import store_key
from service.core.version import Version
from service.surfaces.local import REGIONS, LocalReplicaSet, local_replica_set
from service.surfaces.sdk import GeorepTable

__all__ = ["REGIONS", "Cluster", "make_cluster", "pid_of", "wait_for"]


def pid_of(owner: str | None) -> int | None:
    """The pid in a lease owner's worker id (service.engine.leases.new_worker_id:
    host/ns:pid:ulid)."""
    return int(owner.split(":")[1]) if owner else None


def wait_for(done: Callable[[], bool], *, timeout: float, what: str, every: float = 0.05) -> float:
    """Poll ``done`` until it is true; fail with ``what`` after ``timeout`` seconds. Returns
    the seconds it took (for messages; tests wait for states, they do not time them)."""
    started = time.monotonic()
    while not done():
        assert time.monotonic() - started < timeout, f"{what} (waited {timeout:g} s)"
        time.sleep(every)
    return time.monotonic() - started


@dataclass
class Cluster(LocalReplicaSet):
    """A local replica set plus what the tests record: every acknowledged stamped write."""

    acknowledged: dict[str, list[Version]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def env(self) -> dict[str, str]:
        """Environment for a consumer process: the same database as the test's clients."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
        }

    def config_file(
        self, path: Path, *, endpoints: Mapping[str, str] | None = None, replication: str = ""
    ) -> Path:
        """A copy of the cluster's georep.toml at ``path``: the regions in ``endpoints`` reached
        at another URL (a latency proxy), ``replication`` lines added to ``[replication]``."""
        text = self.config_path.read_text()
        for region, url in (endpoints or {}).items():
            block = f'name = "{region}"\nendpoint_url = "{self.backend.endpoint_url}"'
            assert block in text, f"no [[regions]] block for {region}"
            text = text.replace(block, f'name = "{region}"\nendpoint_url = "{url}"')
        # NOTE: [replication] is the file's last section (service/surfaces/local.py writes it so).
        path.write_text(f"{text.rstrip()}\n{replication}\n")
        return path

    def run_consumer(
        self,
        region: str,
        *,
        log: Path,
        config: Path | None = None,
        prefix: Sequence[str] = (),
        metrics: bool = False,
    ) -> subprocess.Popen[bytes]:
        """``georep run --region REGION`` in a child process (after ``prefix``, a command that
        execs it), its output appended to ``log``; with ``metrics``, on a free metrics port
        (`metrics_url` reads it from the log)."""
        command = [
            *prefix,
            sys.executable,
            *("-m", "service.surfaces.cli", "run", "--region", region),
            *("-c", str(config or self.config_path)),
            *(("--metrics-port", "0") if metrics else ()),
        ]
        with log.open("ab") as out:
            return subprocess.Popen(
                command, env={**os.environ, **self.env()}, stdout=out, stderr=subprocess.STDOUT
            )

    def put_each(self, region: str, keys: Sequence[str], *, tag: str) -> None:
        """One stamped put per key through the SDK (value ``<tag>-<key>``), each recorded as
        acknowledged."""
        sdk = GeorepTable(self.client(region), config=self.config, region=region)
        for key in keys:
            version = sdk.put({"pk": {"S": key}, "v": {"S": f"{tag}-{key}"}})
            with self.lock:
                self.acknowledged.setdefault(key, []).append(version)

    def count(self, region: str, *, tag: str) -> int:
        """How many of ``region``'s items hold a value written with ``tag`` (`put_each`)."""
        return sum(
            1
            for item in self.scan(region).values()
            if item.get("v", {}).get("S", "").startswith(f"{tag}-")
        )

    def lease_owners(self, region: str) -> dict[str, str | None]:
        """The shard leases in ``region``'s checkpoint table: shard item key -> owner (none
        before a consumer created the table)."""
        client = self.client(region)
        table = self.config.replication.checkpoint_table
        try:
            items = client.scan(TableName=table, ConsistentRead=True)["Items"]
        except client.exceptions.ResourceNotFoundException:
            return {}
        return {
            item["shard"]["S"]: item.get("owner", {}).get("S")
            for item in items
            if item["shard"]["S"].startswith("lease/")
        }

    def identical(self) -> bool:
        first, *rest = (self.scan(r) for r in REGIONS)
        return all(first == other for other in rest)

    def write_load(
        self,
        *,
        region: str,
        keys: int,
        writes: int,
        seed: int,
        raw_share: float,
        stop: threading.Event | None = None,
        pause: float = 0.0,
    ) -> None:
        """Concurrent writer: stamped puts/deletes through the SDK and raw boto3 puts, on keys
        ``k0``..``k<keys - 1>``. With ``stop``: each write first waits ``pause`` seconds for
        it, and the writer ends when it is set."""
        rng = random.Random(seed)
        client = self.client(region)
        sdk = GeorepTable(client, config=self.config, region=region)
        for n in range(writes):
            if stop is not None and stop.wait(pause):
                return
            key = {"pk": {"S": f"k{rng.randrange(keys)}"}}
            value = {"S": f"{region}-{seed}-{n}"}
            roll = rng.random()
            if roll < raw_share:
                client.put_item(
                    TableName=self.table_name, Item={**key, "v": value, "raw": {"BOOL": True}}
                )
                continue
            version = sdk.delete(key) if roll < raw_share + 0.1 else sdk.put({**key, "v": value})
            if version is not None:
                with self.lock:
                    self.acknowledged.setdefault(key["pk"]["S"], []).append(version)

    def _stored(self, region: str, key: str) -> dict[str, Any] | None:
        """``region``'s tombstone store item for ``key`` (None: none)."""
        store = self.config.replication.tombstone_table
        item: dict[str, Any] | None = (
            self.client(region)
            .get_item(
                TableName=store,
                Key=store_key(self.config.table.name, {"pk": {"S": key}}),
                ConsistentRead=True,
            )
            .get("Item")
        )
        return item

    def current(self, region: str, key: str) -> Any:
        """What ``region`` holds for ``key`` in both places (its table's item, and with the
        tombstone store its store's): the key's current version (``KeyState.current``)."""
        item = self.scan(region).get(key)
        stored = self._stored(region, key) if self.config.replication.tombstone_store else None
        return read_key(item, stored, settings=self.config.settings()).current

    def check_lww_verdict(self, *, final: dict[str, dict[str, Any]] | None = None) -> None:
        """Every acknowledged stamped write is in the final vector (nothing lost), and the
        final version is last-writer-wins-maximal over them (a superseding version always
        has a larger HLC). ``final``: a region's items, if the caller has scanned them."""
        final = final if final is not None else self.scan(REGIONS[0])
        settings = self.config.settings()
        for key, versions in self.acknowledged.items():
            stored = read_item(final.get(key), settings=settings)
            if settings.tombstone_store and final.get(key) is None:
                # Deleted with the tombstone store: the key's version is its store's tombstone.
                stored = read_key(None, self._stored(REGIONS[0], key), settings=settings).current
            assert isinstance(stored, Stamped), f"{key}: final item is not a stamped version"
            meta = stored.version.meta
            for v in versions:
                assert meta.vv.join(v.meta.vv) == meta.vv, f"{key}: write {v.meta.write_id} lost"
                assert meta.lww_key >= v.meta.lww_key, f"{key}: {v.meta.write_id} should win"


def make_cluster(
    backend: EmbeddedBackend,
    tmp_path: Path,
    *,
    resolver: str = "lww",
    resolver_options: str | None = None,
    ttl_live_policy: str = "delete",
    replication: str = "",
) -> Cluster:
    table = f'resolver = "{resolver}"\nttl_live_policy = "{ttl_live_policy}"' + (
        f"\nresolver_options = {resolver_options}" if resolver_options else ""
    )
    base = local_replica_set(
        backend,
        tmp_path,
        prefix="orders",
        table=table,
        replication=f"batch_size = 100\nwrite_concurrency = 8\n{replication}",
    )
    return Cluster(base.backend, base.config_path, base.config, base.credentials, base.table_name)


def regions() -> Iterator[str]:
    yield from REGIONS
