"""A three-region georep cluster on one embedded backend, for integration tests."""

from __future__ import annotations

import random
import threading
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import boto3

from service.backends import EmbeddedBackend, create_replica_table
from service.config import Config, load_config
from service.core.apply import Stamped, read_item
from service.core.version import TTL_ATTR, Version
from service.sdk import GeorepTable

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


@dataclass
class Cluster:
    backend: EmbeddedBackend
    config_path: Path
    config: Config
    credentials: dict[str, str]
    table_name: str
    acknowledged: dict[str, list[Version]] = field(default_factory=dict)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def session(self) -> boto3.Session:
        return boto3.Session(**self.credentials)

    def client(self, region: str) -> Any:
        return self.session().client(
            "dynamodb", region_name=region, endpoint_url=self.backend.endpoint_url
        )

    def env(self) -> dict[str, str]:
        """Environment for a consumer process: the same database as the test's clients."""
        return {
            "AWS_ACCESS_KEY_ID": self.credentials["aws_access_key_id"],
            "AWS_SECRET_ACCESS_KEY": self.credentials["aws_secret_access_key"],
        }

    def scan(self, region: str) -> dict[str, dict[str, Any]]:
        client = self.client(region)
        items: dict[str, dict[str, Any]] = {}
        for page in client.get_paginator("scan").paginate(
            TableName=self.table_name, ConsistentRead=True
        ):
            for item in page["Items"]:
                items[item["pk"]["S"]] = item
        return items

    def identical(self) -> bool:
        first, *rest = (self.scan(r) for r in REGIONS)
        return all(first == other for other in rest)

    def write_load(
        self, *, region: str, keys: int, writes: int, seed: int, raw_share: float
    ) -> None:
        """Concurrent writer: stamped puts/deletes through the SDK and raw boto3 puts."""
        rng = random.Random(seed)
        client = self.client(region)
        sdk = GeorepTable(client, config=self.config, region=region)
        for n in range(writes):
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

    def check_lww_verdict(self) -> None:
        """Every acknowledged stamped write is in the final vector (nothing lost), and the
        final version is last-writer-wins-maximal over them (a superseding version always
        has a larger HLC)."""
        final = self.scan(REGIONS[0])
        settings = self.config.settings()
        for key, versions in self.acknowledged.items():
            stored = read_item(final.get(key), settings=settings)
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
) -> Cluster:
    table_name = f"orders-{uuid.uuid4().hex[:8]}"
    credentials = dict(backend.credentials_for(REGIONS[0]))
    endpoints = "\n".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{backend.endpoint_url}"\n' for r in REGIONS
    )
    path = tmp_path / "georep.toml"
    path.write_text(
        f'[table]\nname = "{table_name}"\npartition_key = "pk"\nresolver = "{resolver}"\n'
        + (f"resolver_options = {resolver_options}\n" if resolver_options else "")
        + "\n"
        f"{endpoints}\n[replication]\nbatch_size = 100\nwrite_concurrency = 8\n"
        f'checkpoint_table = "ckpt-{table_name}"\ndead_letter_table = "dlq-{table_name}"\n'
    )
    cluster = Cluster(backend, path, load_config(path), credentials, table_name)
    for region in REGIONS:
        create_replica_table(
            cluster.client(region),
            table_name=table_name,
            partition_key="pk",
            ttl_attribute=TTL_ATTR,
        )
    return cluster


def regions() -> Iterator[str]:
    yield from REGIONS
