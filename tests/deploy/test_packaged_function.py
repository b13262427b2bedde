"""The packaged function: `make package`'s zip is reproducible, and the handler imported from
the zip alone (in a fresh interpreter, no source tree on its path) replicates the event AWS's
own tooling produces and batches recorded from a real stream (binary values, a TTL deletion, a
malformed record) against the embedded backend. The API calls it made are then held against
the role the stack gives it: every call allowed, every action and table listed used.

`events/sam_dynamodb_update.json`: see events/README.md for the command that produced it.
The recorded batches are read from moto's stream during the test and shaped as Lambda sends
them (tests/integration/test_lambda_handler.py's `lambda_event`); moto never expires items by
TTL, so the TTL deletion is moto's REMOVE record of a delete plus TTL's userIdentity, exactly
the shape DynamoDB streams for one (tests/integration/test_ttl_records.py).
"""

from __future__ import annotations

import copy
import hashlib
import json
import subprocess
import sys
import time
import zipfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.adapters.backends import EmbeddedBackend, MotoServer, create_replica_table
from service.adapters.conflicts import DynamoConflicts
from service.adapters.deadletter import DynamoDeadLetters
from service.adapters.dynamo import ensure_store_table
from service.config import load_config
from service.core.tombstones import store_key
from service.core.version import TTL_ATTR
from service.surfaces.commands.deploy import parameters
from service.surfaces.sdk import GeorepTable
from tests.deploy.sam import ROOT, translated_json
from tests.deploy.test_stacks import Account, role_policy
from tests.integration.cluster import REGIONS, Cluster, make_cluster
from tests.integration.test_lambda_handler import lambda_event

sys.path.insert(0, str(ROOT / "deploy"))
import package

pytestmark = pytest.mark.integration

HERE = Path(__file__).parent
EVENTS = HERE / "events"
SOURCE = REGIONS[0]
PEER = REGIONS[1]
BLOB = bytes(range(256))
MOTO_ACCOUNT = "123456789012"  # moto's default: what a client without the account header uses


@pytest.fixture(scope="module")
def packaged(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The function's zip without dependencies (no network): service/ and resolvers/."""
    return package.build(tmp_path_factory.mktemp("zip") / "georep-lambda.zip", deps=False)


def test_the_zip_is_reproducible_sorted_and_holds_only_the_function(
    packaged: Path, tmp_path: Path
) -> None:
    """Two builds a second apart give the same bytes; entries are sorted, all dated
    1980-01-01 (or SOURCE_DATE_EPOCH), and hold service/, resolvers/ and the config only."""
    time.sleep(1)
    config = tmp_path / "georep.toml"
    config.write_text("[table]\n")
    again = package.build(tmp_path / "again.zip", deps=False)
    with_config = package.build(tmp_path / "config.zip", deps=False, config=config)

    assert _digest(packaged) == _digest(again)
    with zipfile.ZipFile(packaged) as archive:
        names = archive.namelist()
        assert sorted(names) == names
        assert {(1980, 1, 1, 0, 0, 0)} == {i.date_time for i in archive.infolist()}
        assert {"resolvers", "service"} == {n.split("/")[0] for n in names}
        assert [] == [n for n in names if "__pycache__" in n or n.endswith(".pyc")]
        assert "service/surfaces/lambda_handler.py" in names
    with zipfile.ZipFile(with_config) as archive:
        assert "georep.toml" in archive.namelist()


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _site_dirs() -> list[str]:
    """This interpreter's dependency folders, minus any that holds georep's own packages."""
    return [
        p
        for p in sys.path
        if p.endswith("site-packages") and not (Path(p) / "service" / "__init__.py").exists()
    ]


def invoke(
    packaged: Path, events: list[dict[str, Any]], *, env: dict[str, str], tmp_path: Path
) -> dict[str, Any]:
    """The packaged handler, in a fresh interpreter, given ``events`` one after the other."""
    paths = []
    for n, event in enumerate(events):
        path = tmp_path / f"event-{n}.json"
        path.write_text(json.dumps(event))
        paths.append(str(path))
    result = tmp_path / "result.json"
    done = subprocess.run(
        [
            sys.executable,
            "-I",
            "-S",
            str(HERE / "invoke_packaged.py"),
            str(result),
            str(packaged),
            *_site_dirs(),
            "--",
            *paths,
        ],
        cwd=tmp_path,
        env={"PATH": "/usr/bin:/bin", "AWS_MAX_ATTEMPTS": "2", **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert 0 == done.returncode, done.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.read_text())
    assert answer["service_from"].startswith(str(packaged) + "/service/")
    assert answer["hypothesis_imported"] is False  # the law check stays out of the cold start
    return answer


def conflicts(cluster: Cluster) -> DynamoConflicts:
    """The source region's conflict table, as the function's configuration names it."""
    name = cluster.config.replication.conflict_table
    assert name is not None
    return DynamoConflicts(cluster.client(SOURCE), table_name=name)


def _environment(cluster: Cluster, config: Path) -> dict[str, str]:
    return {**cluster.env(), "GEOREP_CONFIG": str(config), "GEOREP_REGION": SOURCE}


# -- the event `sam local generate-event dynamodb update` produces ------------------------------


def test_the_packaged_handler_replicates_the_event_sam_generates(
    packaged: Path, backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """AWS's sample (INSERT, MODIFY, REMOVE of item Id=101, a numeric key), under the
    default configuration (the tombstone store): no failure is reported, no region's table
    holds the item, and every region's store holds the same tombstone for it."""
    name = f"sam-{tmp_path.name[-8:]}".replace("_", "-")
    blocks = "".join(
        f'[[regions]]\nname = "{r}"\nendpoint_url = "{backend.endpoint_url}"\n\n' for r in REGIONS
    )
    config = tmp_path / "georep.toml"
    config.write_text(
        f'[table]\nname = "{name}"\npartition_key = "Id"\npartition_key_type = "N"\n\n{blocks}'
        f'[replication]\ndead_letter_table = "{name}-dead-letters"\n'
    )
    loaded = load_config(config)
    credentials = backend.credentials_for(SOURCE)
    clients = {
        r: boto3.client("dynamodb", region_name=r, endpoint_url=backend.endpoint_url, **credentials)
        for r in REGIONS
    }
    for region in REGIONS:
        create_replica_table(
            clients[region],
            table_name=name,
            partition_key="Id",
            partition_key_type="N",
            ttl_attribute=TTL_ATTR,
        )
        ensure_store_table(clients[region], table_name=loaded.replication.tombstone_table)
    DynamoDeadLetters(clients[SOURCE], table_name=f"{name}-dead-letters").ensure_table()
    event = json.loads((EVENTS / "sam_dynamodb_update.json").read_text())
    env = {**credentials, "GEOREP_CONFIG": str(config), "GEOREP_REGION": SOURCE}
    env = {k.upper(): v for k, v in env.items()}

    answer = invoke(packaged, [event], env=env, tmp_path=tmp_path)

    assert [{"batchItemFailures": []}] == answer["responses"]
    assert all([] == clients[r].scan(TableName=name)["Items"] for r in REGIONS)
    store = loaded.replication.tombstone_table
    stored = {
        r: clients[r]
        .get_item(TableName=store, Key=store_key(name, {"Id": {"N": "101"}}), ConsistentRead=True)
        .get("Item")
        for r in REGIONS
    }
    assert stored[SOURCE] is not None
    assert all(stored[SOURCE] == stored[r] for r in REGIONS)
    assert TTL_ATTR in stored[SOURCE]  # a tombstone: only TTL removes it
    assert (
        []
        == DynamoDeadLetters(
            clients[SOURCE], table_name=loaded.replication.dead_letter_table
        ).entries()
    )


# -- recorded batches: binary values, a TTL deletion, a malformed record -------------------------


def malformed(record: dict[str, Any]) -> dict[str, Any]:
    """A copy of ``record`` no stream ever sends (an unknown event name): dead-lettered."""
    out = copy.deepcopy(record)
    out["eventName"] = "TRUNCATE"
    return out


@pytest.fixture(scope="module")
def recorded_run(
    packaged: Path, moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, dict[str, Any], dict[str, Any]]]:
    """Two batches recorded from the source region's stream, each handed to a fresh start of
    the packaged handler (the second recorded after the first was applied, so it holds the
    function's own writes too): the run's cluster, events and result. Item "contested" was
    also written in the next region, concurrently: the function merges it there and logs the
    conflict."""
    tmp_path = tmp_path_factory.mktemp("recorded")
    view = moto_server.isolated().start()
    try:
        # Without the store: a tombstone item, and the grants of a stack without it.
        cluster = make_cluster(view, tmp_path, replication="tombstone_store = false")
        DynamoDeadLetters(
            cluster.client(SOURCE), table_name=cluster.config.replication.dead_letter_table
        ).ensure_table()
        conflicts(cluster).ensure_table()
        client = cluster.client(SOURCE)
        sdk = GeorepTable(client, config=cluster.config, region=SOURCE)
        peer = GeorepTable(cluster.client(PEER), config=cluster.config, region=PEER)
        peer.put({"pk": {"S": "contested"}, "v": {"S": PEER}})
        sdk.put({"pk": {"S": "contested"}, "v": {"S": SOURCE}})
        sdk.put({"pk": {"S": "stamped"}, "b": {"B": BLOB}, "bs": {"BS": [BLOB, b"\x00"]}})
        client.put_item(
            TableName=cluster.table_name,
            Item={"pk": {"S": "raw"}, "doc": {"M": {"b": {"B": b"\xff\x00"}}}},
        )
        sdk.put({"pk": {"S": "expires"}, "v": {"S": "soon"}})
        first = lambda_event(cluster, SOURCE)
        # Before the first batch is applied, "raw" is written again by hand: adopting the first
        # raw write where it happened then finds the second (the function annotates it), and
        # "expires" is removed by TTL.
        client.put_item(
            TableName=cluster.table_name,
            Item={"pk": {"S": "raw"}, "doc": {"M": {"b": {"B": b"\x00\xff"}}}},
        )
        client.delete_item(TableName=cluster.table_name, Key={"pk": {"S": "expires"}})
        env = _environment(cluster, cluster.config_path)
        result = invoke(packaged, [first], env=env, tmp_path=tmp_path)
        later = lambda_event(cluster, SOURCE)["Records"][len(first["Records"]) :]
        (removal,) = [r for r in later if r["eventName"] == "REMOVE"]
        removal["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        second = {"Records": [malformed(first["Records"][0]), *later]}
        again = invoke(packaged, [second], env=env, tmp_path=tmp_path)
        result["responses"] += again["responses"]
        result["calls"] += again["calls"]
        events = {"first": first, "second": second}
        yield cluster, events, result
    finally:
        view.stop()


def test_recorded_batches_replicate_binary_values_and_a_ttl_deletion_byte_identically(
    recorded_run: tuple[Cluster, dict[str, Any], dict[str, Any]],
) -> None:
    """No failure reported for either batch; every region holds the same items (but the one
    merged at the peer, whose own write the peer never replicated here); the binary values
    are the exact bytes; the item TTL removed is a tombstone everywhere; the malformed record
    is in the dead-letter table, not a failure that blocks the shard."""
    cluster, _events, result = recorded_run

    assert [{"batchItemFailures": []}, {"batchItemFailures": []}] == result["responses"]
    scans = {r: cluster.scan(r) for r in REGIONS}
    contested = {r: scans[r].pop("contested") for r in REGIONS}
    source = scans[SOURCE]
    assert all(source == scans[r] for r in REGIONS)
    assert all({"S": SOURCE} == contested[r]["v"] for r in REGIONS)  # LWW: the later write
    assert BLOB == source["stamped"]["b"]["B"]
    assert {BLOB, b"\x00"} == set(source["stamped"]["bs"]["BS"])
    assert b"\x00\xff" == source["raw"]["doc"]["M"]["b"]["B"]  # the later raw write
    assert "_georep" in source["raw"]  # the raw write was adopted (stamped) everywhere
    assert TTL_ATTR in source["expires"] and "v" not in source["expires"]
    table = cluster.config.replication.dead_letter_table
    (letter,) = DynamoDeadLetters(cluster.client(SOURCE), table_name=table).entries()
    assert "RecordError" == letter["error"]


def test_the_packaged_handler_logs_the_merge_it_wrote_in_its_own_region(
    recorded_run: tuple[Cluster, dict[str, Any], dict[str, Any]],
) -> None:
    """One entry, in the source region's conflict table: "contested" merged at the peer."""
    cluster, _events, _result = recorded_run

    (entry,) = conflicts(cluster).entries()

    assert ({"pk": {"S": "contested"}}, PEER, SOURCE) == (
        entry.key,
        entry.destination,
        entry.source,
    )
    assert ("lww", "incoming", PEER) == (entry.resolver, entry.winner, entry.existing.origin)


# -- with the tombstone store (issue 22): deletes leave the table ---------------------------------

STORE = "georep-tombstones"


@pytest.fixture(scope="module")
def store_run(
    packaged: Path, moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Cluster, dict[str, Any], dict[str, Any]]]:
    """The packaged handler with the tombstone store on, given two batches of the source
    region's stream as `recorded_run` is. First batch: "contested" (also written in the
    peer: merged there, the conflict logged), "kept", "raw" (a plain boto3 put), "stamped",
    "gone" (put and deleted through the SDK: one batch holds both, so the other regions get
    its tombstone where they hold no item) and "rewritten" (a raw put written again by hand
    before the batch is applied: adopting it annotates the later one). Second batch, once
    those are everywhere: the REMOVE of a raw delete of "raw" (adopted) and of an SDK delete
    of "stamped" (its tombstone in the source store), "gone" written again (the other
    regions' stores drop a tombstone that recorded no deletion), the function's own writes
    of the first batch, and a malformed record."""
    tmp_path = tmp_path_factory.mktemp("store")
    view = moto_server.isolated().start()
    try:
        cluster = make_cluster(
            view, tmp_path, replication=f'tombstone_store = true\ntombstone_table = "{STORE}"'
        )
        DynamoDeadLetters(
            cluster.client(SOURCE), table_name=cluster.config.replication.dead_letter_table
        ).ensure_table()
        conflicts(cluster).ensure_table()
        for region in REGIONS:
            ensure_store_table(cluster.client(region), table_name=STORE)
        client = cluster.client(SOURCE)
        sdk = GeorepTable(client, config=cluster.config, region=SOURCE)
        peer = GeorepTable(cluster.client(PEER), config=cluster.config, region=PEER)
        peer.put({"pk": {"S": "contested"}, "v": {"S": PEER}})
        sdk.put({"pk": {"S": "contested"}, "v": {"S": SOURCE}})
        sdk.put({"pk": {"S": "kept"}, "v": {"S": SOURCE}})
        client.put_item(TableName=cluster.table_name, Item={"pk": {"S": "raw"}, "v": {"N": "1"}})
        sdk.put({"pk": {"S": "stamped"}, "v": {"S": SOURCE}})
        sdk.put({"pk": {"S": "gone"}, "v": {"S": "first"}})
        sdk.delete({"pk": {"S": "gone"}})
        client.put_item(TableName=cluster.table_name, Item={"pk": {"S": "rewritten"}})
        first = lambda_event(cluster, SOURCE)
        client.put_item(
            TableName=cluster.table_name, Item={"pk": {"S": "rewritten"}, "v": {"N": "2"}}
        )
        env = _environment(cluster, cluster.config_path)
        result = invoke(packaged, [first], env=env, tmp_path=tmp_path)
        client.delete_item(TableName=cluster.table_name, Key={"pk": {"S": "raw"}})
        sdk.delete({"pk": {"S": "stamped"}})
        sdk.put({"pk": {"S": "gone"}, "v": {"S": SOURCE}})
        later = lambda_event(cluster, SOURCE)["Records"][len(first["Records"]) :]
        second = {"Records": [malformed(first["Records"][0]), *later]}
        again = invoke(packaged, [second], env=env, tmp_path=tmp_path)
        result["responses"] += again["responses"]
        result["calls"] += again["calls"]
        yield cluster, {"first": first, "second": second}, result
    finally:
        view.stop()


def test_with_the_store_the_packaged_handler_leaves_deleted_keys_in_no_regions_table(
    store_run: tuple[Cluster, dict[str, Any], dict[str, Any]],
) -> None:
    """No failure reported for either batch; the second holds the REMOVE records of both
    deletes. The raw and the stamped delete left no item in any region's table, and each
    region's store holds their tombstones; "contested", "kept" and "gone" hold the source's
    (later) write everywhere, "rewritten" the later raw write; the malformed record alone is
    dead-lettered."""
    cluster, events, result = store_run
    name = cluster.config.table.name

    assert [{"batchItemFailures": []}] * 2 == result["responses"]
    assert {"raw", "stamped"} == {
        r["dynamodb"]["Keys"]["pk"]["S"]
        for r in events["second"]["Records"]
        if r["eventName"] == "REMOVE"
    }
    for region in REGIONS:
        scan = cluster.scan(region)
        assert {"contested", "gone", "kept", "rewritten"} == set(scan), region
        assert {SOURCE} == {scan[k]["v"]["S"] for k in ("contested", "gone", "kept")}, region
        assert {"N": "2"} == scan["rewritten"]["v"], region
        for key in ("raw", "stamped"):
            stored = cluster.client(region).get_item(
                TableName=STORE, Key=store_key(name, {"pk": {"S": key}}), ConsistentRead=True
            )
            assert "Item" in stored, (region, key)
    table = cluster.config.replication.dead_letter_table
    (letter,) = DynamoDeadLetters(cluster.client(SOURCE), table_name=table).entries()
    assert "RecordError" == letter["error"]


# -- least privilege: what the function did against what its role allows ----------------------

# Used by Lambda itself with the function's role, so no offline run of the handler shows them:
# the event source mapping polls the stream (AWS's documented policy for a DynamoDB trigger
# lists these four), sends what it gives up on to the on-failure queue, and writes the logs.
SERVICE_USED = {
    "ReadOwnStream": {
        "dynamodb:DescribeStream",
        "dynamodb:GetRecords",
        "dynamodb:GetShardIterator",
        "dynamodb:ListStreams",
    },
    "OnFailureDestination": {"sqs:SendMessage"},
    "Logs": {"logs:CreateLogStream", "logs:PutLogEvents"},
}


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


# The policies the function's own calls are held against, by PolicyName, and their statements.
CALLED = {"georep-replicator": ("ReplicaTables", "DeadLetters", "Conflicts")}
STORE_CALLED = {
    **CALLED,
    "georep-tombstone-store": ("TombstoneStores", "ReplicaTableDeletes", "OwnBatchReads"),
}
# NOTE: IAM has no action for TransactWriteItems: each of its actions needs the action of the
# single request it stands for, on its own table (AWS's DynamoDB developer guide, "Using IAM
# with DynamoDB transactions").
TRANSACTION_ACTIONS = {
    "ConditionCheck": "ConditionCheckItem",
    "Delete": "DeleteItem",
    "Put": "PutItem",
    "Update": "UpdateItem",
    "BatchGetItem": "BatchGetItem",  # not a transaction: a batch, authorized per table named
}


def requests_made(calls: list[list[Any]]) -> set[tuple[str, str]]:
    """The (IAM action, table ARN) pairs the recorded ``calls`` needed."""
    made = set()
    for operation, region, table, actions in calls:
        needed = [(TRANSACTION_ACTIONS[k], t) for k, t in actions] if actions else []
        for action, name in needed or [(operation, table)]:
            made.add(
                (f"dynamodb:{action}", f"arn:aws:dynamodb:{region}:{MOTO_ACCOUNT}:table/{name}")
            )
    return made


@pytest.mark.parametrize(
    ("run", "policies"),
    [("recorded_run", CALLED), ("store_run", STORE_CALLED)],
    ids=["without_store", "with_store"],
)
def test_every_call_the_function_made_is_allowed_and_every_grant_was_used(
    run: str,
    policies: dict[str, tuple[str, ...]],
    moto_server: MotoServer,
    request: pytest.FixtureRequest,
) -> None:
    """The stack for the run's own tables (parameters as `georep deploy render` computes
    them, the store's too when it is on) is created in moto; its role's resolved policies
    then (1) allow every DynamoDB call the packaged handler made, on exactly that table (each
    action of a transaction on its own), and (2) list, in each statement, no action the run
    did not use on that statement's tables and no table it did not touch with that
    statement's actions. The statements only Lambda itself uses are exactly the documented
    ones."""
    cluster, _events, result = request.getfixturevalue(run)
    account = Account(moto_server)
    account.upload_artifact()
    values = parameters(cluster.config, region=SOURCE, account_id=account.id)
    account.client("cloudformation", SOURCE).create_stack(
        StackName="georep-orders",
        TemplateBody=translated_json(),
        Parameters=[{"ParameterKey": k, "ParameterValue": v} for k, v in values.items() if v],
        Capabilities=["CAPABILITY_IAM"],
    )
    documents = {name: role_policy(account, SOURCE, name=name) for name in policies}
    statements = documents["georep-replicator"]
    granted = {
        (action, resource.replace(f":{account.id}:", f":{MOTO_ACCOUNT}:"))
        for name, sids in policies.items()
        for sid in sids
        for action in _listed(documents[name][sid]["Action"])
        for resource in _listed(documents[name][sid]["Resource"])
    }
    made = requests_made(result["calls"])

    assert set() == made - granted  # (1) nothing the function does is denied
    for name, sids in policies.items():  # (2) every action of every statement is used ...
        for sid in sids:
            actions = set(_listed(documents[name][sid]["Action"]))
            resources = {
                r.replace(f":{account.id}:", f":{MOTO_ACCOUNT}:")
                for r in _listed(documents[name][sid]["Resource"])
            }
            assert actions == {a for a, r in made if r in resources and a in actions}, sid
            assert resources == {r for a, r in made if a in actions and r in resources}, sid
    assert {r for _, r in granted} == {r for _, r in made}  # ... on every table listed
    assert SERVICE_USED == {sid: set(_listed(statements[sid]["Action"])) for sid in SERVICE_USED}
    assert set(SERVICE_USED) | set(CALLED["georep-replicator"]) == set(statements)
    for name in set(policies) - {"georep-replicator"}:
        assert set(policies[name]) == set(documents[name])
