"""The georep command as a new user runs it: subprocesses against the embedded backend, exit
codes and printed output asserted (init, run's graceful stop, demo, errors, -c placement)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.adapters.backends import EmbeddedBackend
from service.config import load_config
from service.surfaces.sdk import GeorepTable

pytestmark = pytest.mark.integration

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


def _config(backend: EmbeddedBackend, tmp_path: Path) -> tuple[Path, str]:
    """A minimal georep.toml for a table name of this test's own (subprocesses reach the
    emulator's default account, shared by the module's tests)."""
    table = f"shop-{uuid.uuid4().hex[:8]}"
    blocks = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{backend.endpoint_url}"\n\n' for r in REGIONS
    )
    path = tmp_path / "georep.toml"
    path.write_text(  # the minimal form, plus georep's own tables named for this test
        f'[table]\nname = "{table}"\npartition_key = "pk"\nresolver = "lww"\n\n{blocks}'
        f'[replication]\ncheckpoint_table = "{table}-checkpoints"\n'
        f'dead_letter_table = "{table}-dead-letters"\n'
        f'conflict_table = "{table}-conflicts"\n'
    )
    return path, table


def _client(backend: EmbeddedBackend, region: str) -> Any:
    """A client as the subprocesses make one: credentials and endpoint, nothing else."""
    credentials = backend.credentials_for(REGIONS[0])
    return boto3.Session(**credentials).client(
        "dynamodb", region_name=region, endpoint_url=backend.endpoint_url
    )


def _env(backend: EmbeddedBackend) -> dict[str, str]:
    credentials = backend.credentials_for(REGIONS[0])
    return {
        **os.environ,
        "AWS_ACCESS_KEY_ID": credentials["aws_access_key_id"],
        "AWS_SECRET_ACCESS_KEY": credentials["aws_secret_access_key"],
    }


def georep(
    backend: EmbeddedBackend, *args: str, timeout: float = 120
) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "service.surfaces.cli", *args],
        env=_env(backend),
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


def test_init_creates_every_table_then_changes_nothing(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    path, table = _config(backend, tmp_path)
    first = georep(backend, "init", "-c", str(path))
    assert 0 == first.returncode, first.stderr
    assert 3 == first.stdout.count("created")
    # -c before the command, and --json: a second run finds everything ready
    second = georep(backend, "-c", str(path), "init", "--json")
    assert 0 == second.returncode, second.stderr
    document = json.loads(second.stdout)
    assert {"ready, unchanged"} == {row["result"] for row in document["rows"]}
    assert 3 == document["summary"]["ready"]
    client = _client(backend, REGIONS[1])
    tables = client.list_tables()["TableNames"]
    assert {
        table,
        f"{table}-checkpoints",
        f"{table}-dead-letters",
        f"{table}-conflicts",
    } <= set(tables)
    expiry = client.describe_time_to_live(TableName=f"{table}-conflicts")["TimeToLiveDescription"]
    assert ("ENABLED", "expires_at") == (expiry["TimeToLiveStatus"], expiry["AttributeName"])
    stream = client.describe_table(TableName=table)["Table"]["StreamSpecification"]
    assert stream == {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"}
    ttl = client.describe_time_to_live(TableName=table)["TimeToLiveDescription"]
    assert ("ENABLED", "_georep_ttl") == (ttl["TimeToLiveStatus"], ttl["AttributeName"])


def test_init_adopts_a_populated_table_that_has_no_stream_and_no_ttl(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    path, table = _config(backend, tmp_path)
    client = _client(backend, REGIONS[0])
    client.create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    items = [{"pk": {"S": f"user#{n}"}, "name": {"S": f"n{n}"}} for n in range(25)]
    for item in items:
        client.put_item(TableName=table, Item=item)

    result = georep(backend, "init", "-c", str(path), "--json")

    assert 0 == result.returncode, result.stderr
    rows = {row["region"]: row["result"] for row in json.loads(result.stdout)["rows"]}
    assert rows == {
        REGIONS[0]: "stream enabled (NEW_AND_OLD_IMAGES), TTL enabled on _georep_ttl",
        REGIONS[1]: "created",
        REGIONS[2]: "created",
    }
    assert 25 == client.scan(TableName=table, Select="COUNT")["Count"]  # nothing lost
    assert "LatestStreamArn" in client.describe_table(TableName=table)["Table"]


def test_init_refuses_a_table_with_other_keys_in_one_line_and_exits_2(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    path, table = _config(backend, tmp_path)
    _client(backend, REGIONS[2]).create_table(
        TableName=table,
        KeySchema=[{"AttributeName": "id", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "id", "AttributeType": "S"}],
        BillingMode="PAY_PER_REQUEST",
    )
    result = georep(backend, "init", "-c", str(path), "--json")
    assert 2 == result.returncode
    rows = {row["region"]: row["result"] for row in json.loads(result.stdout)["rows"]}
    assert rows[REGIONS[2]].startswith(f"REFUSED: table {table}: ")
    assert "partition_key" in rows[REGIONS[2]]
    assert rows[REGIONS[0]] == "created"


def test_run_finishes_its_batch_checkpoints_and_exits_0_on_sigterm(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    path, table = _config(backend, tmp_path)
    assert 0 == georep(backend, "init", "-c", str(path)).returncode
    home, other = REGIONS[0], REGIONS[1]
    process = subprocess.Popen(
        [sys.executable, "-m", "service.surfaces.cli", "run", "--region", home, "-c", str(path)],
        env=_env(backend),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        config = load_config(path)
        sdk = GeorepTable(_client(backend, home), config=config, region=home)
        for n in range(20):
            sdk.put({"pk": {"S": f"k{n}"}, "v": {"N": str(n)}})
        remote = _client(backend, other)
        deadline = time.monotonic() + 60
        while remote.scan(TableName=table, Select="COUNT")["Count"] < 20:
            assert time.monotonic() < deadline, "the consumer did not replicate"
            time.sleep(0.2)
        process.send_signal(signal.SIGTERM)
        out, err = process.communicate(timeout=30)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert 0 == process.returncode, err
    assert "stopped after checkpointing" in out
    checkpoints = _client(backend, home).scan(TableName=f"{table}-checkpoints")["Items"]
    assert any("sequence" in item for item in checkpoints)


def test_errors_are_one_line_with_exit_2_and_a_traceback_only_with_debug(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    missing = tmp_path / "nowhere.toml"
    plain = georep(backend, "init", "-c", str(missing))
    assert 2 == plain.returncode
    assert 1 == len(plain.stderr.strip().splitlines()), plain.stderr
    assert plain.stderr.startswith("georep: ") and "Traceback" not in plain.stderr
    debug = georep(backend, "--debug", "init", "-c", str(missing))
    assert "Traceback" in debug.stderr
    usage = georep(backend, "verify-everything")
    assert 2 == usage.returncode  # argparse: an unknown command is a usage error


def test_demo_converges_and_exits_0(backend: EmbeddedBackend) -> None:
    result = georep(backend, "demo", "--regions", "2", "--duration", "3", timeout=120)
    assert 0 == result.returncode, result.stdout + result.stderr
    assert "VERDICT: CONVERGED" in result.stdout


def test_backend_serves_a_table_that_init_creates_and_stops_on_sigterm(tmp_path: Path) -> None:
    """`georep backend` is the embedded server a user runs by hand (the tutorial)."""
    from service.adapters.backends._process import free_loopback_port, port_is_open

    port = free_loopback_port()
    server = subprocess.Popen(
        [sys.executable, "-m", "service.surfaces.cli", "backend", "--port", str(port)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        deadline = time.monotonic() + 60
        while not port_is_open(port):
            assert server.poll() is None, server.communicate()[0]
            assert time.monotonic() < deadline, "the backend did not start"
            time.sleep(0.1)
        path = tmp_path / "georep.toml"
        path.write_text(
            '[table]\nname = "orders"\npartition_key = "pk"\n\n'
            + "".join(
                f'[[regions]]\nname = "{r}"\nendpoint_url = "http://127.0.0.1:{port}"\n\n'
                for r in REGIONS[:2]
            )
        )
        env = {**os.environ, "AWS_ACCESS_KEY_ID": "x", "AWS_SECRET_ACCESS_KEY": "x"}
        init = subprocess.run(
            [sys.executable, "-m", "service.surfaces.cli", "init", "-c", str(path), "--json"],
            env=env,
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
        assert 0 == init.returncode, init.stderr
        assert 2 == json.loads(init.stdout)["summary"]["ready"]
    finally:
        server.send_signal(signal.SIGTERM)
        server.wait(timeout=30)


def test_backend_on_a_busy_port_says_so_in_one_line_without_announcing_itself() -> None:
    """Issue 18, point 8: it announced the server, then failed with exit 1."""
    import socket

    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        done = subprocess.run(
            [sys.executable, "-m", "service.surfaces.cli", "backend", "--port", str(port)],
            capture_output=True,
            text=True,
            timeout=120,
            check=False,
        )
    assert 2 == done.returncode
    assert "" == done.stdout  # nothing announced
    assert [
        f"georep: cannot serve on 127.0.0.1:{port}: address already in use (is another server "
        "running there? choose another --port)"
    ] == done.stderr.strip().splitlines()
