"""A georep replica set on an embedded backend: one table in every region, a georep.toml
pointing at it, and clients. Shared by ``make demo``, the benchmarks and the integration
tests, so they all set up exactly what a user's deployment would."""

from __future__ import annotations

import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from service.adapters.backends import Credentials, EmbeddedBackend, create_replica_table
from service.adapters.dynamo import ensure_store_table
from service.config import Config, load_config
from service.core.version import TTL_ATTR
from service.engine.wiring import Consumer

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


@dataclass
class LocalReplicaSet:
    backend: EmbeddedBackend
    config_path: Path
    config: Config
    credentials: Credentials
    table_name: str
    # One client per region, made once: a boto3 client takes ~0.3 s to build (its service
    # model), which a test or demo asking for one per read paid every time (issue 24's CI
    # budget). Clients are thread-safe; sessions are not, so each caller of `session` gets its
    # own.
    _clients: dict[str, Any] = field(default_factory=dict, init=False, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, init=False, repr=False)

    def session(self) -> boto3.Session:
        return boto3.Session(
            aws_access_key_id=self.credentials["aws_access_key_id"],
            aws_secret_access_key=self.credentials["aws_secret_access_key"],
        )

    def client(self, region: str) -> Any:
        with self._lock:
            client = self._clients.get(region)
            if client is None:
                client = self._clients[region] = self.session().client(
                    "dynamodb", region_name=region, endpoint_url=self.backend.endpoint_url
                )
            return client

    def scan(self, region: str) -> dict[str, dict[str, Any]]:
        """Every item of ``region``'s table by partition key (consistent reads)."""
        client = self.client(region)
        items: dict[str, dict[str, Any]] = {}
        for page in client.get_paginator("scan").paginate(
            TableName=self.table_name, ConsistentRead=True
        ):
            for item in page["Items"]:
                items[item["pk"]["S"]] = item
        return items


def local_replica_set(
    backend: EmbeddedBackend,
    directory: Path,
    *,
    prefix: str = "georep",
    regions: tuple[str, ...] = REGIONS,
    table: str = "",
    replication: str = "",
) -> LocalReplicaSet:
    """Write ``directory/georep.toml`` and create the replica table in every region, and its
    tombstone store when the configuration has one (the default), as ``georep init`` does.

    ``table`` and ``replication`` are extra TOML lines for the ``[table]`` and
    ``[replication]`` sections (resolver options, batch size...).
    """
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    blocks = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{backend.endpoint_url}"\n\n' for r in regions
    )
    path = directory / "georep.toml"
    store = "" if "tombstone_table" in replication else f'tombstone_table = "{name}-tombstones"\n'
    # Bookkeeping tables named after the replica table: several replica sets can share one
    # emulator database (moto's default account) without sharing checkpoints, dead letters or
    # conflicts.
    path.write_text(
        f'[table]\nname = "{name}"\npartition_key = "pk"\n{table}\n\n{blocks}'
        f'[replication]\ncheckpoint_table = "{name}-checkpoints"\n'
        f'dead_letter_table = "{name}-dead-letters"\n'
        f'conflict_table = "{name}-conflicts"\n{store}{replication}\n'
    )
    replica_set = LocalReplicaSet(
        backend, path, load_config(path), backend.credentials_for(regions[0]), name
    )
    replication_config = replica_set.config.replication
    for region in regions:
        create_replica_table(
            replica_set.client(region), table_name=name, partition_key="pk", ttl_attribute=TTL_ATTR
        )
        if replication_config.tombstone_store:  # as `georep init` does
            ensure_store_table(
                replica_set.client(region), table_name=replication_config.tombstone_table
            )
    return replica_set


def drain(consumers: list[Consumer], *, quiet_rounds: int = 3, timeout: float = 120) -> None:
    """Poll every region until each has read every shard empty ``quiet_rounds`` times running,
    with nothing in flight and no shard waiting to retry a failed batch (its backoff is not
    quiet)."""
    deadline = time.monotonic() + timeout
    for c in consumers:
        c.forget_quiet()  # empty reads from before this call say nothing about writes since
    while True:
        if time.monotonic() > deadline:
            raise TimeoutError(f"streams did not drain within {timeout:.0f} s")
        read = sum(c.poll_once() for c in consumers)
        if read == 0 and all(c.quiet_reads >= quiet_rounds for c in consumers):
            return
        if read == 0:
            time.sleep(0.01)
