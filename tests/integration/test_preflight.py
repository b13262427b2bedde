"""``georep run`` and the Lambda cold start refuse tables that cannot work, over real HTTP.

Each test makes a two-region replica set on the emulator: a correct table in the first region
(``create_replica_table``, as a deployment would) and, in the second, a table made with plain
boto3 that is wrong in one way. The refusal must be one line naming the region, the table and
the fix, with exit code 2 and no traceback.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.config import Config as BotoConfig

from service.adapters.backends import EmbeddedBackend, create_replica_table
from service.adapters.dynamo import ensure_store_table
from service.config import load_config
from service.core.version import TTL_ATTR
from service.engine.wiring import clients_for
from service.errors import GeorepError
from service.surfaces import lambda_handler
from service.surfaces.local import local_replica_set
from service.surfaces.sdk import GeorepTable
from tests.integration.test_lambda_handler import closed_port

pytestmark = pytest.mark.integration

GOOD, BAD = "eu-west-1", "us-east-1"
ROOT = Path(__file__).resolve().parents[2]
GEOREP_RUN = (sys.executable, "-m", "service.surfaces.cli", "run", "--region", GOOD)

MakeTable = Callable[[Any, str], None]


def _create(
    client: Any,
    name: str,
    *,
    keys: tuple[tuple[str, str, str], ...] = (("pk", "HASH", "S"),),
    stream: str | None = "NEW_AND_OLD_IMAGES",
    ttl: str | None = TTL_ATTR,
) -> None:
    """A table made by hand, the way a user might have made it."""
    options: dict[str, Any] = {}
    if stream is not None:
        options["StreamSpecification"] = {"StreamEnabled": True, "StreamViewType": stream}
    client.create_table(
        TableName=name,
        KeySchema=[{"AttributeName": a, "KeyType": k} for a, k, _ in keys],
        AttributeDefinitions=[{"AttributeName": a, "AttributeType": t} for a, _, t in keys],
        BillingMode="PAY_PER_REQUEST",
        **options,
    )
    if ttl is not None:
        client.update_time_to_live(
            TableName=name, TimeToLiveSpecification={"Enabled": True, "AttributeName": ttl}
        )


BAD_TABLES: dict[str, tuple[MakeTable, str]] = {
    "stream-new-image": (
        lambda c, n: _create(c, n, stream="NEW_IMAGE"),
        "stream view type is NEW_IMAGE, georep needs NEW_AND_OLD_IMAGES",
    ),
    "stream-off": (lambda c, n: _create(c, n, stream=None), "its stream is off"),
    "ttl-off": (lambda c, n: _create(c, n, ttl=None), "TTL is off, georep needs it on"),
    "ttl-on-another-attribute": (
        lambda c, n: _create(c, n, ttl="expires_at"),
        "TTL is on attribute 'expires_at', georep needs it on '_georep_ttl'",
    ),
    "partition-key-type": (
        lambda c, n: _create(c, n, keys=(("pk", "HASH", "N"),)),
        'key pk has type N, the configuration says S: set [table] partition_key_type = "N"',
    ),
    "sort-key-not-configured": (
        lambda c, n: _create(c, n, keys=(("pk", "HASH", "S"), ("sk", "RANGE", "S"))),
        "key schema is pk (partition key, S) + sk (sort key, S), the configuration says "
        "pk (partition key, S)",
    ),
    "missing": (lambda c, n: None, "the table does not exist"),
}


def client(backend: EmbeddedBackend, region: str) -> Any:
    """A plain boto3 client, as ``georep run`` and the Lambda make theirs (on moto, clients
    from ``backend.client`` live in an account of their own)."""
    session = boto3.Session(**backend.credentials_for(region))
    return session.client("dynamodb", region_name=region, endpoint_url=backend.endpoint_url)


def proper(c: Any, name: str) -> None:
    create_replica_table(c, table_name=name, partition_key="pk", ttl_attribute=TTL_ATTR)


def replica_set(
    backend: EmbeddedBackend,
    directory: Path,
    *,
    bad: MakeTable,
    good: MakeTable = proper,
    table_options: str = "",
) -> Path:
    """georep.toml for GOOD and BAD; ``good``'s table in GOOD, ``bad``'s in BAD."""
    name = f"preflight-{uuid.uuid4().hex[:8]}"
    path = directory / "georep.toml"
    regions = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{backend.endpoint_url}"\n\n'
        for r in (GOOD, BAD)
    )
    path.write_text(
        f'[table]\nname = "{name}"\npartition_key = "pk"\n{table_options}\n\n{regions}'
        f'[replication]\ncheckpoint_table = "{name}-checkpoints"\n'
        f'dead_letter_table = "{name}-dead-letters"\n'
    )
    good(client(backend, GOOD), name)
    bad(client(backend, BAD), name)
    return path


def environment(backend: EmbeddedBackend) -> dict[str, str]:
    credentials = backend.credentials_for(GOOD)
    return {
        **{k: v for k, v in os.environ.items() if not k.startswith("AWS_")},
        "PYTHONPATH": str(ROOT),
        "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
        "AWS_EC2_METADATA_DISABLED": "true",
    }


def run_until_idle(
    backend: EmbeddedBackend, path: Path, *, timeout: float
) -> subprocess.CompletedProcess[str]:
    """``georep run`` for GOOD until its stream has been idle for 0.5 s (or it refuses)."""
    return subprocess.run(
        [*GEOREP_RUN, "-c", str(path), "--exit-when-idle", "0.5"],
        cwd=ROOT,
        env=environment(backend),
        capture_output=True,
        text=True,
        timeout=timeout,
    )


@pytest.mark.parametrize("bad", sorted(BAD_TABLES))
def test_georep_run_refuses_a_table_that_cannot_work_with_one_line_and_exit_2(
    bad: str, backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """Wrong stream view type, no stream, no TTL, TTL on another attribute, a key type or a
    key schema that differs from the configuration, or no table at all: ``georep run`` exits 2
    before replicating, with one line naming the region, the table and the fix."""
    make_bad, needle = BAD_TABLES[bad]
    path = replica_set(backend, tmp_path, bad=make_bad)
    table = load_config(path).table.name

    done = run_until_idle(backend, path, timeout=120)

    assert "Traceback" not in done.stderr
    assert 2 == done.returncode, done.stderr
    assert [done.stderr.strip()] == done.stderr.strip().splitlines()
    assert done.stderr.startswith(f"georep: region {BAD}, table {table}: ")
    assert needle in done.stderr
    assert "" == done.stdout  # nothing started


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    lambda_handler.reset()
    yield monkeypatch
    lambda_handler.reset()


def test_the_lambda_cold_start_refuses_a_destination_whose_stream_lacks_old_images(
    backend: EmbeddedBackend, tmp_path: Path, lambda_env: pytest.MonkeyPatch
) -> None:
    """A destination table streaming NEW_IMAGE only is refused when the function's container
    starts, naming the region, the table and the fix, before any record is replicated."""
    path = replica_set(backend, tmp_path, bad=BAD_TABLES["stream-new-image"][0])
    for name, value in environment(backend).items():
        if name.startswith("AWS_"):
            lambda_env.setenv(name, value)
    lambda_env.setenv("GEOREP_CONFIG", str(path))
    lambda_env.setenv("GEOREP_REGION", GOOD)

    with pytest.raises(GeorepError) as refused:
        lambda_handler.app()

    message = str(refused.value)
    assert message.startswith(f"region {BAD}, table {load_config(path).table.name}: ")
    assert "NEW_AND_OLD_IMAGES" in message
    assert "\n" not in message


def test_tables_made_as_configured_pass_including_a_numeric_partition_key(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """A replica set made by ``local_replica_set`` passes; so do tables whose partition key is
    a number when the configuration says ``partition_key_type = "N"`` (the key types used to
    be accepted and never used)."""
    from service.engine.preflight import check_tables  # here: the refusal tests run on any version

    made = local_replica_set(backend, tmp_path, regions=(GOOD, BAD))
    clients = clients_for(made.config, "dynamodb", session=made.session())
    assert {} == check_tables(made.config, clients=clients)

    numeric = tmp_path / "numeric"
    numeric.mkdir()

    def number_key(c: Any, name: str) -> None:
        _create(c, name, keys=(("pk", "HASH", "N"),))

    path = replica_set(
        backend, numeric, good=number_key, bad=number_key, table_options='partition_key_type = "N"'
    )
    config = load_config(path)
    assert {} == check_tables(
        config, clients=clients_for(config, "dynamodb", session=made.session())
    )


def test_a_region_that_cannot_be_reached_is_skipped_with_a_warning_not_refused(
    backend: EmbeddedBackend, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """A destination that is down at start-up must not stop replication to the others (the
    replication path retries writes to it): its check is skipped, loudly."""
    from service.engine.preflight import check_tables

    path = replica_set(backend, tmp_path, bad=proper)
    closed = f"http://127.0.0.1:{closed_port()}"
    text = path.read_text()
    head, tail = text.split(f'name = "{BAD}"\n', 1)
    path.write_text(f'{head}name = "{BAD}"\n' + tail.replace(backend.endpoint_url, closed, 1))
    config = load_config(path)
    session = boto3.Session(**backend.credentials_for(GOOD))
    once = BotoConfig(retries={"max_attempts": 1}, connect_timeout=2)

    unchecked = check_tables(
        config, clients=clients_for(config, "dynamodb", session=session, boto_config=once)
    )

    assert [BAD] == list(unchecked)
    assert "Could not connect" in unchecked[BAD]
    assert f"could not check region {BAD}, table {config.table.name}" in caplog.text


def run_while(backend: EmbeddedBackend, path: Path, during: Callable[[], None]) -> str:
    """``georep run`` for GOOD as a process: once it says it is replicating, ``during()``,
    then SIGTERM; its stderr, after it exited 0."""
    process = subprocess.Popen(
        [*GEOREP_RUN, "-c", str(path)],
        cwd=ROOT,
        env=environment(backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert process.stdout is not None
        assert "replicating" in process.stdout.readline()  # started, its own tables made
        during()
        process.send_signal(signal.SIGTERM)
        _, err = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert 0 == process.returncode, err
    return err


def test_georep_run_says_once_which_regions_lack_the_tombstone_store_and_replicates(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """With the tombstone store, a consumer creates its own region's store at start, not the
    other regions': until one exists, every insert and delete bound there fails its first
    read and is retried. ``georep run`` says so once at start, naming the region and the fix
    (found when the store's default was flipped in a scratch tree: the Replicator's first
    read of a missing store failed per record), then replicates as usual."""
    path = replica_set(backend, tmp_path, bad=proper)
    text = path.read_text()
    store = f"stores-{uuid.uuid4().hex[:8]}"
    path.write_text(
        text.replace(
            "[replication]\n",
            f'[replication]\ntombstone_store = true\ntombstone_table = "{store}"\n',
        )
    )

    config = load_config(path)

    def insert_waits_for_the_store() -> None:
        sdk = GeorepTable(client(backend, GOOD), config=config, region=GOOD)
        sdk.put({"pk": {"S": "k1"}, "v": {"S": "x"}})  # an insert bound for BAD: waits
        time.sleep(2)
        assert "Item" not in client(backend, BAD).get_item(
            TableName=config.table.name, Key={"pk": {"S": "k1"}}
        )
        ensure_store_table(client(backend, BAD), table_name=store)
        deadline = time.monotonic() + 60
        while "Item" not in client(backend, BAD).get_item(
            TableName=config.table.name, Key={"pk": {"S": "k1"}}
        ):
            assert time.monotonic() < deadline, "the insert did not arrive once the store did"
            time.sleep(0.2)

    err = run_while(backend, path, insert_waits_for_the_store)
    said = [line for line in err.splitlines() if "tombstone store" in line]
    assert [
        f"georep: region {BAD}: the tombstone store {store} does not exist yet; inserts and "
        "deletes bound there wait (retried) until it does: run georep init, or start that "
        "region's consumer (it creates its own)"
    ] == said
    assert store in client(backend, GOOD).list_tables()["TableNames"]  # its own, created


def test_georep_run_says_the_store_is_off_where_residency_rules_keep_it_off(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """The tombstone store is on by default but does not carry residency rules yet: with a
    ``[[filters]]`` and no ``tombstone_store`` in the file it is off, and ``georep run`` says
    so once at start, naming the table, then replicates as before (tombstone items)."""
    path = replica_set(backend, tmp_path, bad=proper)
    path.write_text(
        path.read_text()
        + f'\n[[filters]]\nname = "eu-only"\nwhen = {{ attribute = "r", equals = "EU" }}\n'
        f'regions = ["{GOOD}"]\n'
    )
    table = load_config(path).table.name

    err = run_while(backend, path, lambda: None)
    said = [line for line in err.splitlines() if "tombstone store" in line]
    assert [
        f"georep: the tombstone store is off (residency rules on {table}): a deleted key stays "
        "in the table as a tombstone item until the horizon (docs/decisions.md)"
    ] == said


def test_georep_run_exit_when_idle_applies_what_is_there_then_exits(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """``--exit-when-idle S``: the consumer replicates what the stream holds, then exits 0 once
    nothing has been read or applied for S seconds. It never exited before session 36: an
    idle shard is read again every idle backoff, and the empty read in flight reset the idle
    clock every time."""
    path = replica_set(backend, tmp_path, bad=proper)
    config = load_config(path)
    for region in (GOOD, BAD):  # as georep init makes them
        ensure_store_table(client(backend, region), table_name=config.replication.tombstone_table)
    GeorepTable(client(backend, GOOD), config=config, region=GOOD).put(
        {"pk": {"S": "k1"}, "v": {"S": "x"}}
    )

    done = run_until_idle(backend, path, timeout=60)

    assert 0 == done.returncode, done.stderr
    assert "replicating" in done.stdout and "stopped after checkpointing" in done.stdout
    assert "Item" in client(backend, BAD).get_item(
        TableName=config.table.name, Key={"pk": {"S": "k1"}}, ConsistentRead=True
    )
