"""The translated template created as three regions' stacks in moto's CloudFormation, with the
parameter files `georep deploy render` writes: what each stack holds is what the template
promises. (moto records the table's TTL and point-in-time recovery settings but does not apply
them from CloudFormation, and has no CloudFormation support for alarms (docs/backends.md):
those are asserted on the template, in test_template.py and below.)"""

from __future__ import annotations

import ast
import json
import secrets
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from service.adapters.backends import MotoServer
from service.config import load_config
from service.core.conflicts import EXPIRES_ATTR
from service.core.tombstones import STORE_KEY, store_key
from service.core.version import TTL_ATTR
from service.surfaces.cli import main
from service.surfaces.sdk import GeorepTable
from tests.deploy.sam import (
    ARTIFACT_BUCKET,
    ARTIFACT_KEY,
    placeholder_zip,
    translated,
    translated_json,
)

pytestmark = pytest.mark.integration

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
STACK = "georep-orders"
CONFIG = """[table]
name = "orders"
partition_key = "pk"
sort_key = "sk"
sort_key_type = "N"

[[regions]]
name = "eu-west-1"

[[regions]]
name = "us-east-1"
table = "orders-us"

[[regions]]
name = "ap-southeast-2"

[replication]
batch_size = 250
"""
STORE = "orders-tombstones"
# NOTE: [replication] is CONFIG's last section.
STORE_CONFIG = f'{CONFIG}tombstone_store = true\ntombstone_table = "{STORE}"\n'


class Account:
    """Clients of any service in one fresh moto account (moto takes it from a header)."""

    def __init__(self, server: MotoServer) -> None:
        self.id = f"{secrets.randbelow(10**12):012d}"
        self.server = server

    def client(self, service: str, region: str) -> Any:
        client = boto3.client(
            service,  # type: ignore[call-overload]
            region_name=region,
            endpoint_url=self.server.endpoint_url,
            aws_access_key_id="testing",
            aws_secret_access_key="testing",
        )
        account = self.id

        def header(request: Any, **_: object) -> None:
            request.headers["x-moto-account-id"] = account

        client.meta.events.register("before-sign", header)
        return client

    def upload_artifact(self) -> None:
        """The function's zip where the translated template's CodeUri names it. Bucket names
        are global in moto as in S3: when another account of the server made the bucket, it
        is there already (moto lets any account read it)."""
        s3 = self.client("s3", "us-east-1")
        try:
            s3.create_bucket(Bucket=ARTIFACT_BUCKET)
        except s3.exceptions.BucketAlreadyExists:
            return
        s3.put_object(Bucket=ARTIFACT_BUCKET, Key=ARTIFACT_KEY, Body=placeholder_zip())


def create_stacks(server: MotoServer, folder: Path, config: str) -> Account:
    """Every region's stack in a fresh account, created from the files `georep deploy render`
    writes for ``config`` (written to ``folder``)."""
    (folder / "georep.toml").write_text(config)
    account = Account(server)
    rendered = main(
        [
            "deploy",
            "render",
            "-c",
            str(folder / "georep.toml"),
            "--account-id",
            account.id,
            "--out",
            str(folder / "params"),
        ]
    )
    assert 0 == rendered
    account.upload_artifact()
    for region in REGIONS:
        cloudformation = account.client("cloudformation", region)
        cloudformation.create_stack(
            StackName=STACK,
            TemplateBody=translated_json(),
            Parameters=json.loads((folder / "params" / f"{region}.json").read_text()),
            Capabilities=["CAPABILITY_IAM"],
        )
        (stack,) = cloudformation.describe_stacks(StackName=STACK)["Stacks"]
        assert "CREATE_COMPLETE" == stack["StackStatus"], stack.get("StackStatusReason")
    return account


@pytest.fixture(scope="module")
def stacks(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    """Every region's stack, created from `georep deploy render`'s files (once per module)."""
    yield create_stacks(moto_server, tmp_path_factory.mktemp("render"), CONFIG)


@pytest.fixture(scope="module")
def store_stacks(
    moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[Account]:
    """The same stacks with the tombstone store on (issue 22), in another account."""
    yield create_stacks(moto_server, tmp_path_factory.mktemp("render-store"), STORE_CONFIG)


def _physical(account: Account, region: str) -> dict[str, str]:
    cloudformation = account.client("cloudformation", region)
    summaries = cloudformation.list_stack_resources(StackName=STACK)["StackResourceSummaries"]
    return {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}


def _table(region: str) -> str:
    return "orders-us" if region == "us-east-1" else "orders"


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_has_its_table_with_a_new_and_old_images_stream_and_the_right_keys(
    stacks: Account, region: str
) -> None:
    table = stacks.client("dynamodb", region).describe_table(TableName=_table(region))["Table"]

    assert {"StreamEnabled": True, "StreamViewType": "NEW_AND_OLD_IMAGES"} == table[
        "StreamSpecification"
    ]
    assert [
        {"AttributeName": "pk", "KeyType": "HASH"},
        {"AttributeName": "sk", "KeyType": "RANGE"},
    ] == table["KeySchema"]
    assert {("pk", "S"), ("sk", "N")} == {
        (a["AttributeName"], a["AttributeType"]) for a in table["AttributeDefinitions"]
    }
    assert "PAY_PER_REQUEST" == table["BillingModeSummary"]["BillingMode"]


def test_the_table_asks_for_ttl_on_georep_ttl_and_point_in_time_recovery() -> None:
    """moto ignores both from CloudFormation: asserted on the template it was given."""
    properties = translated()["Resources"]["ReplicaTable"]["Properties"]

    assert {"AttributeName": "_georep_ttl", "Enabled": True} == properties[
        "TimeToLiveSpecification"
    ]
    assert {"PointInTimeRecoveryEnabled": True} == properties["PointInTimeRecoverySpecification"]
    assert "Retain" == translated()["Resources"]["ReplicaTable"]["DeletionPolicy"]


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_has_its_conflict_table_keyed_by_id(stacks: Account, region: str) -> None:
    table = stacks.client("dynamodb", region).describe_table(TableName="georep-conflicts")["Table"]

    assert [{"AttributeName": "id", "KeyType": "HASH"}] == table["KeySchema"]
    assert "PAY_PER_REQUEST" == table["BillingModeSummary"]["BillingMode"]


def test_the_conflict_table_asks_for_ttl_on_expires_at_and_point_in_time_recovery() -> None:
    """Entries expire on their own (conflict_retention_days); moto ignores both settings from
    CloudFormation, so they are asserted on the template."""
    resource = translated()["Resources"]["ConflictTable"]
    properties = resource["Properties"]

    assert {"AttributeName": EXPIRES_ATTR, "Enabled": True} == properties["TimeToLiveSpecification"]
    assert {"PointInTimeRecoveryEnabled": True} == properties["PointInTimeRecoverySpecification"]
    assert "Retain" == resource["DeletionPolicy"]


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_has_the_function_and_a_mapping_on_its_own_stream_with_every_option(
    stacks: Account, region: str
) -> None:
    physical = _physical(stacks, region)
    functions = stacks.client("lambda", region)
    function = functions.get_function(FunctionName=physical["Replicator"])["Configuration"]
    stream = stacks.client("dynamodb", region).describe_table(TableName=_table(region))["Table"][
        "LatestStreamArn"
    ]
    (mapping,) = functions.list_event_source_mappings(FunctionName=physical["Replicator"])[
        "EventSourceMappings"
    ]
    queue_url = physical["FailureQueue"]
    queue_arn = stacks.client("sqs", region).get_queue_attributes(
        QueueUrl=queue_url, AttributeNames=["QueueArn", "MessageRetentionPeriod"]
    )["Attributes"]

    assert ("python3.12", "service.surfaces.lambda_handler.handler") == (
        function["Runtime"],
        function["Handler"],
    )
    assert {
        "GEOREP_REGION": region,
        "GEOREP_CONFIG": "georep.toml",
        "POWERTOOLS_METRICS_NAMESPACE": "georep",
    } == function["Environment"]["Variables"]
    assert (512, 60) == (function["MemorySize"], function["Timeout"])
    assert stream == mapping["EventSourceArn"]
    assert region in mapping["EventSourceArn"]
    assert {
        "StartingPosition": "TRIM_HORIZON",
        "BatchSize": 250,
        "ParallelizationFactor": 1,
        "BisectBatchOnFunctionError": True,
        "FunctionResponseTypes": ["ReportBatchItemFailures"],
        "MaximumRetryAttempts": 10,
        "MaximumRecordAgeInSeconds": 3600,
        "DestinationConfig": {"OnFailure": {"Destination": queue_arn["QueueArn"]}},
    } == {k: mapping[k] for k in _MAPPING_OPTIONS}
    assert "FilterCriteria" not in mapping
    assert "1209600" == queue_arn["MessageRetentionPeriod"]


_MAPPING_OPTIONS = (
    "StartingPosition",
    "BatchSize",
    "ParallelizationFactor",
    "BisectBatchOnFunctionError",
    "FunctionResponseTypes",
    "MaximumRetryAttempts",
    "MaximumRecordAgeInSeconds",
    "DestinationConfig",
)


def role_policy(
    account: Account, region: str, *, name: str = "georep-replicator"
) -> dict[str, dict[str, Any]]:
    """A policy of the function's role (``name``: the template's PolicyName) as the stack
    resolved it, statement by Sid."""
    physical = _physical(account, region)
    iam = account.client("iam", region)
    document = iam.get_role_policy(RoleName=physical["ReplicatorRole"], PolicyName=name)[
        "PolicyDocument"
    ]
    if isinstance(document, str):  # NOTE: moto 5.2 answers the policy as a Python repr
        document = ast.literal_eval(document)
    return {s["Sid"]: s for s in document["Statement"]}


_REPLICATOR_SIDS = (
    "ReadOwnStream",
    "ReplicaTables",
    "DeadLetters",
    "Conflicts",
    "OnFailureDestination",
    "Logs",
)


def _listed(value: str | list[str]) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


@pytest.mark.parametrize("region", REGIONS)
def test_each_role_reads_only_its_own_stream_and_writes_only_the_replica_tables(
    stacks: Account, region: str
) -> None:
    """Resolved by CloudFormation: the stream statement names this region's stream only; the
    table statement names this region's table and each peer's (its own name there), nothing
    else; the dead letters, conflicts, queue and log group are this stack's own."""
    account = stacks.id
    physical = _physical(stacks, region)
    statements = role_policy(stacks, region)
    stream = stacks.client("dynamodb", region).describe_table(TableName=_table(region))["Table"][
        "LatestStreamArn"
    ]
    queue = stacks.client("sqs", region).get_queue_attributes(
        QueueUrl=physical["FailureQueue"], AttributeNames=["QueueArn"]
    )["Attributes"]["QueueArn"]

    assert set(_REPLICATOR_SIDS) == set(statements)
    assert [stream] == _listed(statements["ReadOwnStream"]["Resource"])
    assert sorted(f"arn:aws:dynamodb:{r}:{account}:table/{_table(r)}" for r in REGIONS) == sorted(
        _listed(statements["ReplicaTables"]["Resource"])
    )
    assert [f"arn:aws:dynamodb:{region}:{account}:table/georep-dead-letters"] == _listed(
        statements["DeadLetters"]["Resource"]
    )
    assert ["dynamodb:PutItem"] == _listed(statements["Conflicts"]["Action"])
    assert [f"arn:aws:dynamodb:{region}:{account}:table/georep-conflicts"] == _listed(
        statements["Conflicts"]["Resource"]
    )
    assert [queue] == _listed(statements["OnFailureDestination"]["Resource"])
    # AWS's LogGroup Arn attribute ends in ":*" (every stream of the group); moto's does not.
    (logs,) = _listed(statements["Logs"]["Resource"])
    assert f"arn:aws:logs:{region}:{account}:log-group:/georep/{STACK}/replicator" == (
        logs.removesuffix(":*")
    )


# -- with the tombstone store (issue 22) --------------------------------------------------------


@pytest.mark.parametrize("region", REGIONS)
def test_each_region_has_its_tombstone_store_keyed_by_the_store_key_and_the_same_replica_role(
    store_stacks: Account, region: str
) -> None:
    """The store is the stack's own table, keyed by the string `STORE_KEY` the product writes
    (service/core/tombstones.py), on demand, with no stream (no one reads one); the role's
    own policy is the one without the store (the store's grants are their own policy)."""
    table = store_stacks.client("dynamodb", region).describe_table(TableName=STORE)["Table"]

    assert STORE == _physical(store_stacks, region)["TombstoneTable"]
    assert [{"AttributeName": STORE_KEY, "KeyType": "HASH"}] == table["KeySchema"]
    assert [{"AttributeName": STORE_KEY, "AttributeType": "S"}] == table["AttributeDefinitions"]
    assert "PAY_PER_REQUEST" == table["BillingModeSummary"]["BillingMode"]
    assert not table.get("StreamSpecification", {}).get("StreamEnabled", False)
    assert set(role_policy(store_stacks, region)) == set(_REPLICATOR_SIDS)


def test_the_store_asks_for_ttl_on_the_attribute_the_product_expires_store_items_by(
    store_stacks: Account, tmp_path: Path
) -> None:
    """moto ignores TTL from CloudFormation, so it is asserted on the template: TTL on the
    attribute in which the product's own delete, made through the SDK into the stack's
    store, says when the store item may go; point-in-time recovery on; the table kept when
    the stack is deleted."""
    resource = translated()["Resources"]["TombstoneTable"]
    properties = resource["Properties"]
    (tmp_path / "georep.toml").write_text(STORE_CONFIG)
    config = load_config(tmp_path / "georep.toml")
    client = store_stacks.client("dynamodb", REGIONS[0])
    key = {"pk": {"S": "order#1"}, "sk": {"N": "1"}}
    sdk = GeorepTable(client, config=config, region=REGIONS[0])
    sdk.put({**key, "v": {"S": "x"}})
    sdk.delete(key)
    stored = client.get_item(TableName=STORE, Key=store_key(config.table.name, key))["Item"]

    assert {"AttributeName": TTL_ATTR, "Enabled": True} == properties["TimeToLiveSpecification"]
    assert TTL_ATTR in stored
    assert {"PointInTimeRecoveryEnabled": True} == properties["PointInTimeRecoverySpecification"]
    assert ("Retain", "Retain") == (resource["DeletionPolicy"], resource["UpdateReplacePolicy"])


@pytest.mark.parametrize("region", REGIONS)
def test_each_role_may_commit_every_regions_store_and_delete_from_the_replica_tables_only(
    store_stacks: Account, region: str
) -> None:
    """Resolved by CloudFormation: the store policy grants the store actions on this stack's
    own store and each other region's (a replicated delete commits the destination's store),
    and deletes and condition checks on every region's replica table (its own name there):
    exactly these ARNs, nothing else."""
    account = store_stacks.id
    statements = role_policy(store_stacks, region, name="georep-tombstone-store")
    own = store_stacks.client("dynamodb", region).describe_table(TableName=STORE)["Table"]

    assert {"TombstoneStores", "ReplicaTableDeletes", "OwnBatchReads"} == set(statements)
    assert {
        "dynamodb:ConditionCheckItem",
        "dynamodb:DeleteItem",
        "dynamodb:GetItem",
        "dynamodb:PutItem",
    } == set(_listed(statements["TombstoneStores"]["Action"]))
    assert sorted(f"arn:aws:dynamodb:{r}:{account}:table/{STORE}" for r in REGIONS) == sorted(
        _listed(statements["TombstoneStores"]["Resource"])
    )
    assert own["TableArn"] in _listed(statements["TombstoneStores"]["Resource"])
    assert {"dynamodb:ConditionCheckItem", "dynamodb:DeleteItem"} == set(
        _listed(statements["ReplicaTableDeletes"]["Action"])
    )
    assert sorted(f"arn:aws:dynamodb:{r}:{account}:table/{_table(r)}" for r in REGIONS) == sorted(
        _listed(statements["ReplicaTableDeletes"]["Resource"])
    )
    # The batch reads of a batch's REMOVEs and copied INSERTs: its own store and table only.
    assert ["dynamodb:BatchGetItem"] == _listed(statements["OwnBatchReads"]["Action"])
    assert sorted(
        [own["TableArn"], f"arn:aws:dynamodb:{region}:{account}:table/{_table(region)}"]
    ) == sorted(_listed(statements["OwnBatchReads"]["Resource"]))
