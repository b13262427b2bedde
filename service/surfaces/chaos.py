"""``georep chaos``'s wiring: a chaos target on the embedded backend (with the configured
resolver, the user's own merge rule included) or on the configured deployment.

The engine (``service.engine.chaos``) drives writers, consumers and faults and judges the
result; this module supplies what only a surface may build: georep's SDK for the stamped
writers (with a clock skewed per region, through the SDK's ``clock`` argument) and the replica
set on the moto server.
"""

from __future__ import annotations

import json
import os
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import boto3

from service.adapters.backends import MotoServer
from service.config import Config
from service.core.places import read_key
from service.core.tombstones import STORE_KEY, store_prefix
from service.core.version import META_ATTR, encode_item
from service.engine.chaos.runner import Embedded, Target
from service.engine.chaos.workload import StampedTable
from service.surfaces.local import REGIONS, local_replica_set
from service.surfaces.sdk import Clock, GeorepTable


def skewed_clock(skew_ms: int) -> Clock:
    """georep's SDK clock, ``skew_ms`` milliseconds off the machine's (a region's clock skew)."""
    return Clock(now_ms=lambda: int(time.time() * 1000) + skew_ms)


def _toml(value: object) -> str:
    return ("true" if value else "false") if isinstance(value, bool) else json.dumps(str(value))


def _table_lines(config: Config | None) -> str:
    if config is None:
        return 'resolver = "lww"'
    table = config.table
    lines = [f'resolver = "{table.resolver}"']
    if table.resolver_options:
        # NOTE: TOML spelling: a rule's ``unsafe = true`` is a boolean, not the string "True".
        options = ", ".join(f"{k} = {_toml(v)}" for k, v in table.resolver_options.items())
        lines.append(f"resolver_options = {{ {options} }}")
    return "\n".join(lines)


def tombstone_images(config: Config, client: Any, *, key_prefix: str) -> dict[str, dict[str, Any]]:
    """The deleted keys of the run (``key_prefix``) in the tombstone store ``client``'s region
    holds, each as the item its tombstone was before the store (`encode_item`): what the chaos
    accounting reads for a key a plain read finds absent. A store never created holds none."""
    settings = config.settings()
    request: dict[str, Any] = {
        "TableName": config.replication.tombstone_table,
        "ConsistentRead": True,
        "FilterExpression": "begins_with(#k, :t) AND attribute_exists(#g)",
        "ExpressionAttributeNames": {"#k": STORE_KEY, "#g": META_ATTR},
        "ExpressionAttributeValues": {":t": {"S": store_prefix(config.table.name)}},
    }
    images: dict[str, dict[str, Any]] = {}
    try:
        pages = list(client.get_paginator("scan").paginate(**request))
    except client.exceptions.ResourceNotFoundException:
        return images
    for page in pages:
        for stored in page["Items"]:
            tombstone = read_key(None, stored, settings=settings).tombstone
            if tombstone is None:
                continue
            image = encode_item(tombstone, horizon_ms=settings.horizon_ms)
            key = image[config.table.partition_key]["S"]
            if key.startswith(key_prefix):
                images[key] = image
    return images


@contextmanager
def embedded_target(config: Config | None, workdir: Path) -> Iterator[Target]:
    """A moto server and a replica set in the configured regions (three by default) with the
    configured resolver; the server is stopped on exit."""
    regions = tuple(config.region_names) if config is not None else REGIONS
    with MotoServer() as backend:
        replicas = local_replica_set(
            backend,
            workdir,
            prefix="chaos",
            regions=regions,
            table=_table_lines(config),
            # NOTE: short leases and checkpoints, so a killed holder's shard moves on in
            # seconds even when its lease is not judged gone at once.
            replication="lease_seconds = 6\nwrite_concurrency = 8"
            + (
                # the configured choice, whichever it is (absent: the default, the store)
                f"\ntombstone_store = {str(config.replication.tombstone_store).lower()}"
                if config is not None
                else ""
            ),
        )
        session = replicas.session()
        clients = {
            r: session.client("dynamodb", region_name=r, endpoint_url=backend.endpoint_url)
            for r in regions
        }

        def stamped(region: str, skew_ms: int) -> StampedTable:
            return GeorepTable(
                clients[region], config=replicas.config, region=region, clock=skewed_clock(skew_ms)
            )

        python_path = os.pathsep.join(filter(None, [os.getcwd(), os.environ.get("PYTHONPATH")]))
        yield Target(
            regions=regions,
            table_names={r: replicas.table_name for r in regions},
            resolver=replicas.config.table.resolver,
            client=clients.__getitem__,
            stamped=stamped,
            embedded=Embedded(
                config_path=replicas.config_path,
                endpoint_url=backend.endpoint_url,
                env={
                    "AWS_ACCESS_KEY_ID": replicas.credentials["aws_access_key_id"],
                    "AWS_SECRET_ACCESS_KEY": replicas.credentials["aws_secret_access_key"],
                    "PYTHONPATH": python_path,
                },
                workdir=workdir,
            ),
            conflict_table=replicas.config.replication.conflict_table,
            checkpoint_table=replicas.config.replication.checkpoint_table,
            dead_letter_table=replicas.config.replication.dead_letter_table,
            tombstones=(
                (lambda r: tombstone_images(replicas.config, clients[r], key_prefix=""))
                if replicas.config.replication.tombstone_store
                else None
            ),
        )


def deployment_target(config: Config) -> Target:
    """The configured deployment as it is (its consumers run already): the run writes keys
    under ``georep-chaos/<run id>/`` only, and deletes them at the end."""
    clients: dict[str, Any] = {}
    for region in config.regions:
        clients[region.name] = boto3.client(
            "dynamodb", region_name=region.name, endpoint_url=region.endpoint_url
        )

    def stamped(region: str, skew_ms: int) -> StampedTable:
        return GeorepTable(
            clients[region], config=config, region=region, clock=skewed_clock(skew_ms)
        )

    prefix = f"georep-chaos/{uuid.uuid4().hex[:12]}/"
    return Target(
        regions=tuple(config.region_names),
        table_names={r: config.table_name(r) for r in config.region_names},
        resolver=config.table.resolver,
        client=clients.__getitem__,
        stamped=stamped,
        key_prefix=prefix,
        partition_key=config.table.partition_key,
        tombstones=(
            (lambda r: tombstone_images(config, clients[r], key_prefix=prefix))
            if config.replication.tombstone_store
            else None
        ),
    )
