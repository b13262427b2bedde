"""Two tables in one configuration (``[[tables]]``), real HTTP to the moto server: different key
schemas (a sort key; a numeric partition key) and different resolvers (last-writer-wins;
version counters) replicate through one ``georep run``-style process per region (the real
consumers, one per table), under concurrent stamped and raw writers in every region.

Every region ends byte-identical per table (plain boto3 scans), and what georep keeps per
table stays per table: checkpoints and leases, dead letters (each names its table; a replay
writes back to that table), metrics labels, verify's rows.
"""

from __future__ import annotations

import copy
import itertools
import json
import random
import threading
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.deadletter import DynamoDeadLetters
from service.adapters.metrics import MemoryMetrics
from service.config import Config, load_config
from service.core.version import META_ATTR
from service.engine.wiring import RegionConsumers
from service.errors import EventError
from service.surfaces import lambda_handler
from service.surfaces.cli import main
from service.surfaces.local import REGIONS, drain
from service.surfaces.sdk import GeorepTable
from tests.integration.test_lambda_handler import stream_event

pytestmark = pytest.mark.integration

FIRST, SECOND, THIRD = REGIONS


@dataclass
class TwoTables:
    backend: EmbeddedBackend
    path: Path
    config: Config
    session: boto3.Session
    orders: str  # configured names
    counters: str

    def client(self, region: str) -> Any:
        return self.session.client(
            "dynamodb", region_name=region, endpoint_url=self.backend.endpoint_url
        )

    def physical(self, table: str, region: str) -> str:
        return self.config.for_table(table).table_name(region)

    def scan(self, table: str, region: str) -> list[dict[str, Any]]:
        """Every item of ``table`` in ``region`` (plain boto3, consistent reads), in key order."""
        client = self.client(region)
        items = [
            item
            for page in client.get_paginator("scan").paginate(
                TableName=self.physical(table, region), ConsistentRead=True
            )
            for item in page["Items"]
        ]
        keys = self.config.for_table(table).key_attributes
        return sorted(items, key=lambda i: json.dumps([i[k] for k in keys], sort_keys=True))

    def deleted_keys(self, table: str, region: str) -> int:
        """How many of ``table``'s keys ``region`` holds as a tombstone in its tombstone store
        and not in the table (deleted: absent from the table, the default)."""
        client = self.client(region)
        held = {
            json.dumps([item[k] for k in self.config.for_table(table).key_attributes])
            for item in self.scan(table, region)
        }
        prefix = f"{table}|"
        tombstones = 0
        for page in client.get_paginator("scan").paginate(
            TableName=self.config.replication.tombstone_table, ConsistentRead=True
        ):
            for item in page["Items"]:
                if item["k"]["S"].startswith(prefix) and META_ATTR in item:
                    key = json.loads(item["k"]["S"].removeprefix(prefix))
                    wire = [dict([key[k]]) for k in self.config.for_table(table).key_attributes]
                    tombstones += json.dumps(wire) not in held
        return tombstones

    def sdk(self, table: str, region: str) -> GeorepTable:
        return GeorepTable(self.client(region), config=self.config, region=region, table=table)

    def consumers(self, metrics: MemoryMetrics) -> list[RegionConsumers]:
        return [
            RegionConsumers(self.config, region=r, session=self.session, metrics=metrics)
            for r in REGIONS
        ]


def configure(
    backend: EmbeddedBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    orders: str,
    counters: str,
) -> TwoTables:
    """georep.toml with two tables, their lines given (names drawn here), created by ``georep
    init`` (the process's credentials: the backend's)."""
    run = uuid.uuid4().hex[:8]
    names = {"orders": f"orders-{run}", "counters": f"counters-{run}"}
    blocks = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{backend.endpoint_url}"\n\n' for r in REGIONS
    )
    path = tmp_path / "georep.toml"
    path.write_text(
        f'[[tables]]\nname = "{names["orders"]}"\n{orders.format(**names)}\n\n'
        f'[[tables]]\nname = "{names["counters"]}"\n{counters.format(**names)}\n\n'
        f"{blocks}"
        f'[replication]\ncheckpoint_table = "{run}-checkpoints"\n'
        f'dead_letter_table = "{run}-dead-letters"\nconflict_table = "{run}-conflicts"\n'
        f'tombstone_table = "{run}-tombstones"\nwrite_concurrency = 8\n'
    )
    credentials = backend.credentials_for(FIRST)
    monkeypatch.setenv("AWS_ACCESS_KEY_ID", credentials["aws_access_key_id"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", credentials["aws_secret_access_key"])
    assert 0 == main(["init", "-c", str(path), "--json"])
    return TwoTables(
        backend,
        path,
        load_config(path),
        boto3.Session(**credentials),
        names["orders"],
        names["counters"],
    )


ORDERS = f"""partition_key = "pk"
sort_key = "sk"
sort_key_type = "N"
resolver = "lww"
name_in = {{{{ "{SECOND}" = "{{orders}}-us" }}}}"""

COUNTERS = """partition_key = "id"
partition_key_type = "N"
resolver = "version-counter"
resolver_options = {{ attribute = "version" }}"""


@pytest.fixture
def two_tables(
    backend: EmbeddedBackend, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> TwoTables:
    """orders: pk S + sk N, lww, named otherwise in us-east-1; counters: id N, version-counter."""
    return configure(backend, tmp_path, monkeypatch, orders=ORDERS, counters=COUNTERS)


VERSIONS = itertools.count(1)  # next() is atomic under the GIL


def write_load(setup: TwoTables, *, region: str, seed: int, writes: int) -> None:
    """Stamped puts and deletes through the SDK on a few keys of each table, and raw boto3
    puts on both: orders keyed (pk, sk), counters keyed by a number carrying ``version``."""
    rng = random.Random(seed)
    client = setup.client(region)
    sdks = {t: setup.sdk(t, region) for t in (setup.orders, setup.counters)}
    for n in range(writes):
        value = {"S": f"{region}-{seed}-{n}"}
        if rng.random() < 0.5:
            table = setup.orders
            item = {"pk": {"S": f"o{rng.randrange(3)}"}, "sk": {"N": str(rng.randrange(2))}}
        else:
            table = setup.counters
            # The application counts above every version it replaces, as version counters
            # with an application counter require (docs/design.md, "Still not claimed"): one
            # counter for every writer, so a later write holds a larger one.
            item = {"id": {"N": str(rng.randrange(4))}, "version": {"N": str(next(VERSIONS))}}
        key = {k: item[k] for k in setup.config.for_table(table).key_attributes}
        roll = rng.random()
        if roll < 0.2:  # raw, adopted by the consumer
            client.put_item(
                TableName=setup.physical(table, region),
                Item={**item, "v": value, "raw": {"BOOL": True}},
            )
        elif roll < 0.3:
            sdks[table].delete(key)
        else:
            sdks[table].put({**item, "v": value})


def scan_checkpoints(setup: TwoTables, region: str) -> list[str]:
    table = setup.config.replication.checkpoint_table
    items = setup.client(region).scan(TableName=table, ConsistentRead=True)["Items"]
    return [item["shard"]["S"] for item in items]


def test_two_tables_with_different_keys_and_resolvers_replicate_through_one_consumer_per_region(
    two_tables: TwoTables, capsys: pytest.CaptureFixture[str]
) -> None:
    """Writers in every region on overlapping keys of both tables while one RegionConsumers
    per region (what `georep run --region R` runs) replicates; then every region holds the
    same bytes per table, each table's checkpoints, leases and metrics are its own, a record
    dead-lettered in one table names it, and ``georep verify`` checks both tables."""
    setup = two_tables
    metrics = MemoryMetrics()
    consumers = setup.consumers(metrics)
    assert [2, 2, 2] == [len(rc.consumers) for rc in consumers]
    for rc in consumers:
        rc.setup()
    stop = threading.Event()
    pollers = [threading.Thread(target=rc.run, kwargs={"stop": stop}) for rc in consumers]
    writers = [
        threading.Thread(
            target=write_load, kwargs={"setup": setup, "region": r, "seed": i, "writes": 40}
        )
        for i, r in enumerate(REGIONS)
    ]
    for thread in pollers + writers:
        thread.start()
    for thread in writers:
        thread.join()
    # A record no destination can take, in counters only: its metadata tampered with.
    client = setup.client(FIRST)
    setup.sdk(setup.counters, FIRST).put({"id": {"N": "99"}, "version": {"N": "1"}})
    item = client.get_item(
        TableName=setup.physical(setup.counters, FIRST), Key={"id": {"N": "99"}}
    )["Item"]
    tampered = copy.deepcopy(item[META_ATTR])
    writer = tampered["M"]["o"]["S"]
    tampered["M"]["v"]["M"][writer] = {"N": "-5"}
    client.put_item(
        TableName=setup.physical(setup.counters, FIRST),
        Item={"id": {"N": "98"}, "version": {"N": "1"}, META_ATTR: tampered},
    )
    stop.set()
    for thread in pollers:
        thread.join()
    everyone = [c for rc in consumers for c in rc.consumers]
    drain(everyone)
    for rc in consumers:
        rc.close()

    def replicated(table: str, region: str) -> list[dict[str, Any]]:
        # The tampered item stays where it was written, and only there: dead-lettered.
        return [i for i in setup.scan(table, region) if i.get("id") != {"N": "98"}]

    for table in (setup.orders, setup.counters):
        first = replicated(table, FIRST)
        assert first, f"{table}: nothing replicated"
        for region in (SECOND, THIRD):
            assert first == replicated(table, region), f"{table} differs in {region}"
    # Each table's own stream, followed, checkpointed and leased in each region.
    for region in REGIONS:
        shards = scan_checkpoints(setup, region)
        for table in (setup.orders, setup.counters):
            physical = setup.physical(table, region)
            assert f"table/{physical}|__followed_stream__" in shards
            assert any(f"table/{physical}/stream/" in s and s.startswith("arn:") for s in shards)
            assert any(s.startswith("lease/") and f"table/{physical}/stream/" in s for s in shards)
    labelled = {
        dict(labels).get("table")
        for (name, labels), _ in metrics.counters.items()
        if name == "records_read"
    }
    assert {setup.orders, setup.counters} == labelled
    letters = DynamoDeadLetters(
        client, table_name=setup.config.replication.dead_letter_table
    ).letters()
    assert [("98", setup.counters)] == [
        (x.record["dynamodb"]["Keys"]["id"]["N"], x.table) for x in letters
    ]
    for table, expected in ((setup.orders, 0), (setup.counters, 1)):
        capsys.readouterr()
        code = main(
            ["dlq", "list", "--region", FIRST, "--table", table, "-c", str(setup.path), "--json"]
        )
        rows = json.loads(capsys.readouterr().out)["rows"]
        assert (0, expected) == (code, len(rows))
        assert all(table == row["table"] for row in rows)

    # Status: a row per region and table, each table's own dead letters counted.
    capsys.readouterr()
    main(["status", "-c", str(setup.path), "--json"])
    rows = json.loads(capsys.readouterr().out)["rows"]
    letters_of = {(row["region"], row["table"]): row["dead_letters"] for row in rows}
    assert 6 == len(rows)
    assert (0, 1) == (
        letters_of[(FIRST, setup.physical(setup.orders, FIRST))],
        letters_of[(FIRST, setup.physical(setup.counters, FIRST))],
    )
    assert {setup.physical(setup.orders, SECOND)} == {
        row["table"] for row in rows if row["region"] == SECOND and "orders" in row["table"]
    }

    # Conflicts name their table: --table splits the log between the two.
    listed: dict[str | None, list[str]] = {}
    for table in (None, setup.orders, setup.counters):
        capsys.readouterr()
        chosen = ["--table", table] if table else []
        assert 0 == main(["conflicts", "list", *chosen, "-c", str(setup.path), "--json"])
        rows = json.loads(capsys.readouterr().out)["rows"]
        assert all(table in (None, row["table"]) for row in rows)
        listed[table] = sorted(row["id"] for row in rows)
    assert listed[None], "concurrent writers on a few keys: some merges were logged"
    assert listed[None] == sorted(listed[setup.orders] + listed[setup.counters])

    code = main(["verify", "--timeout", "1", "-c", str(setup.path), "--json"])
    report = json.loads(capsys.readouterr().out)
    # Both tables compared, one after the other; the tampered item, only in the first region,
    # is the one divergence, and its row names its table.
    assert 1 == code, report
    assert [setup.orders, setup.counters] == report["summary"]["tables"]
    compared = sum(
        len(setup.scan(t, FIRST)) + setup.deleted_keys(t, FIRST)
        for t in (setup.orders, setup.counters)
    )
    assert compared == report["summary"]["items_compared"]
    assert {(setup.counters, json.dumps({"id": 98}))} == {
        (row["table"], json.dumps(row["key"])) for row in report["rows"]
    }


def test_a_dead_letter_is_replayed_into_the_table_whose_stream_it_came_from(
    backend: EmbeddedBackend,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A rule that raises dead-letters a conflict of the first table (named otherwise in the
    second region); the letters name that table. Once the rule is fixed, ``dlq replay --all``
    writes each letter into that table, in every region, and the other table is untouched."""
    rule = "tests.integration.rules:explode_on_conflict"
    setup = configure(
        backend,
        tmp_path,
        monkeypatch,
        orders=ORDERS.replace('resolver = "lww"', "")
        + f'\nresolver = "rules"\nresolver_options = {{{{ rule = "{rule}", unsafe = true }}}}',
        counters=COUNTERS,
    )
    carts = setup.orders
    for region in (FIRST, SECOND):
        setup.sdk(carts, region).put({"pk": {"S": "c1"}, "sk": {"N": "1"}, "v": {"S": region}})
    consumers = setup.consumers(MemoryMetrics())
    for rc in consumers:
        rc.setup()
    drain([c for rc in consumers for c in rc.consumers])
    for rc in consumers:
        rc.close()
    assert setup.scan(carts, FIRST) != setup.scan(carts, SECOND)
    for region in (FIRST, SECOND):
        letters = DynamoDeadLetters(
            setup.client(region), table_name=setup.config.replication.dead_letter_table
        ).letters()
        assert [carts] == [x.table for x in letters]

    setup.path.write_text(
        setup.path.read_text()
        .replace("explode_on_conflict", "newest")
        .replace(", unsafe = true", "")
    )
    for region in (FIRST, SECOND):
        capsys.readouterr()
        code = main(["dlq", "replay", "--all", "--region", region, "-c", str(setup.path), "--json"])
        replayed = json.loads(capsys.readouterr().out)
        assert 0 == code, replayed
        assert [("applied", carts)] == [(r["outcome"], r["table"]) for r in replayed["rows"]]
    held = [setup.scan(carts, region) for region in REGIONS]
    assert 1 == len(held[0]) and held[0] == held[1] == held[2]
    assert [[], [], []] == [setup.scan(setup.counters, region) for region in REGIONS]


def lambda_event(setup: TwoTables, table: str, region: str) -> dict[str, Any]:
    """Every record of ``table``'s stream in ``region``, as Lambda delivers them."""
    streams = setup.session.client(
        "dynamodbstreams", region_name=region, endpoint_url=setup.backend.endpoint_url
    )
    return stream_event(
        setup.client(region), streams, table=setup.physical(table, region), region=region
    )


def test_the_lambda_handler_serves_the_table_whose_stream_invoked_it(
    two_tables: TwoTables, monkeypatch: pytest.MonkeyPatch
) -> None:
    """One function for the region (GEOREP_REGION) and two event source mappings: each
    table's events, exactly as Lambda delivers them, go to that table's replicator (orders is
    named otherwise in this region: the ARN's name is mapped back through name_in), and every
    region ends identical per table. An event from a table georep.toml does not configure, or
    mixing two tables' streams, is an EventError naming what it got: never a silent drop."""
    setup = two_tables
    region = SECOND
    setup.sdk(setup.orders, region).put({"pk": {"S": "o1"}, "sk": {"N": "2"}, "v": {"S": "a"}})
    setup.sdk(setup.counters, region).put({"id": {"N": "7"}, "version": {"N": "3"}})
    setup.client(region).put_item(  # raw: adopted where it was written
        TableName=setup.physical(setup.counters, region),
        Item={"id": {"N": "8"}, "version": {"N": "1"}},
    )
    events = {t: lambda_event(setup, t, region) for t in (setup.orders, setup.counters)}
    assert (
        f"table/{setup.orders}-us/stream/" in events[setup.orders]["Records"][0]["eventSourceARN"]
    )
    monkeypatch.setenv("GEOREP_CONFIG", str(setup.path))
    monkeypatch.setenv("GEOREP_REGION", region)
    lambda_handler.reset()
    try:
        for event in events.values():
            assert {"batchItemFailures": []} == lambda_handler.handler(event, None)
        foreign = copy.deepcopy(events[setup.counters])
        for record in foreign["Records"]:
            record["eventSourceARN"] = record["eventSourceARN"].replace(
                f"table/{setup.counters}/", "table/invoices/"
            )
        with pytest.raises(EventError, match="records from the stream of table invoices, which"):
            lambda_handler.handler(foreign, None)
        mixed = {"Records": events[setup.orders]["Records"] + events[setup.counters]["Records"]}
        with pytest.raises(EventError, match="cannot tell which table's stream"):
            lambda_handler.handler(mixed, None)
    finally:
        lambda_handler.reset()

    for table, count in ((setup.orders, 1), (setup.counters, 2)):
        held = [setup.scan(table, r) for r in REGIONS]
        assert count == len(held[0]) and held[0] == held[1] == held[2], table
    assert (
        []
        == DynamoDeadLetters(
            setup.client(region), table_name=setup.config.replication.dead_letter_table
        ).letters()
    )
