"""The Lambda stack for several tables (``[[tables]]``): ``georep deploy render`` writes
deploy/template.yaml's stack with its per-table part once per table (service/surfaces/stack.py)
and the parameter files for it. Translated by aws-sam-translator it lints clean; created in
moto's CloudFormation it holds one function with an event source mapping on each table's stream,
and a role that reads exactly those streams and writes exactly the replica tables."""

from __future__ import annotations

import ast
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from cfnlint.api import ManualArgs, lint
from samtranslator.parser.parser import Parser
from samtranslator.translator.translator import Translator
from samtranslator.yaml_helper import yaml_parse

from service.adapters.backends import MotoServer
from service.surfaces.cli import main
from service.surfaces.stack import load_template
from tests.deploy.sam import ARTIFACT_BUCKET, ARTIFACT_KEY, TEMPLATE
from tests.deploy.test_stacks import Account

REGIONS = ("eu-west-1", "us-east-1")
CONFIG = """[[tables]]
name = "orders"
partition_key = "pk"
sort_key = "sk"
sort_key_type = "N"
name_in = { "us-east-1" = "orders-us" }

[[tables]]
name = "counters"
partition_key = "id"
partition_key_type = "N"
resolver = "version-counter"
resolver_options = { attribute = "version" }

[[regions]]
name = "eu-west-1"

[[regions]]
name = "us-east-1"
"""
ACCOUNT = "123456789012"


def render(folder: Path, *extra: str, account: str = ACCOUNT) -> Path:
    (folder / "georep.toml").write_text(CONFIG)
    out = folder / "params"
    argv = ["deploy", "render", "-c", str(folder / "georep.toml"), "--account-id", account]
    assert 0 == main([*argv, "--out", str(out), *extra])
    return out


def translated(out: Path) -> dict[str, Any]:
    sam = json.loads((out / "template.json").read_text())
    sam["Resources"]["Replicator"]["Properties"]["CodeUri"] = (
        f"s3://{ARTIFACT_BUCKET}/{ARTIFACT_KEY}"
    )
    translator = Translator(None, Parser(), boto_session=boto3.Session(region_name="eu-west-1"))
    document: dict[str, Any] = translator.translate(
        sam, parameter_values={}, get_managed_policy_map=dict
    )
    return document


@pytest.fixture(scope="module")
def rendered(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return render(tmp_path_factory.mktemp("render"))


def test_the_template_reader_reads_what_sams_own_parser_reads() -> None:
    """deploy/template.yaml's short tags in their long form, exactly as the translator's
    parser has them (the rendered stack is built from this reading)."""
    assert json.dumps(yaml_parse(TEMPLATE.read_text()), sort_keys=True, default=str) == (
        json.dumps(load_template(TEMPLATE), sort_keys=True, default=str)
    )


def test_the_many_tables_stack_lints_with_zero_errors_and_zero_warnings(rendered: Path) -> None:
    document = translated(rendered)

    matches = lint(
        json.dumps(document),
        config=ManualArgs(regions=["eu-west-1", "us-east-1", "ap-southeast-2"]),
    )
    assert [] == [f"{m.rule.id} {m.message} ({m.path})" for m in matches]
    sam_matches = lint(
        (rendered / "template.json").read_text(), config=ManualArgs(regions=["eu-west-1"])
    )
    assert [] == [f"{m.rule.id} {m.message}" for m in sam_matches]


def test_one_function_has_a_mapping_on_each_tables_stream(rendered: Path) -> None:
    resources = translated(rendered)["Resources"]
    kinds: dict[str, list[str]] = {}
    for name, resource in resources.items():
        kinds.setdefault(resource["Type"], []).append(name)
    mappings = {
        name: resources[name]["Properties"] for name in kinds["AWS::Lambda::EventSourceMapping"]
    }

    assert ["Replicator"] == kinds["AWS::Lambda::Function"]
    assert ["ReplicaTableCounters", "ReplicaTableOrders"] == sorted(
        n for n in kinds["AWS::DynamoDB::Table"] if n.startswith("ReplicaTable")
    )
    assert {
        "ReplicatorStreamOrders": "Orders",
        "ReplicatorStreamCounters": "Counters",
    } == {name: name.removeprefix("ReplicatorStream") for name in mappings}
    for name, properties in mappings.items():
        suffix = name.removeprefix("ReplicatorStream")
        assert {
            "Fn::If": [
                f"CreateTable{suffix}",
                {"Fn::GetAtt": [f"ReplicaTable{suffix}", "StreamArn"]},
                {"Ref": f"ExistingStreamArn{suffix}"},
            ]
        } == properties["EventSourceArn"]
        assert ["ReportBatchItemFailures"] == properties["FunctionResponseTypes"]
        assert {"Ref": "Replicator"} == properties["FunctionName"]


def test_the_batch_read_grant_names_each_tables_own_arn_and_the_shared_store_once(
    rendered: Path,
) -> None:
    """The store's policy widened per table: a list of resources (the region's store, shared
    by every table, and the table's own ARN) keeps the store once and gains each table's ARN
    (widening it as one item made a list of lists, which cfn-lint refused)."""
    resources = translated(rendered)["Resources"]
    statements = resources["TombstoneStorePolicy"]["Properties"]["PolicyDocument"]["Statement"]
    (reads,) = [st for st in statements if st["Sid"] == "OwnBatchReads"]
    table_arn = "arn:${AWS::Partition}:dynamodb:${AWS::Region}:${AWS::AccountId}:table/"
    assert [
        {"Fn::GetAtt": ["TombstoneTable", "Arn"]},
        {"Fn::Sub": table_arn + "${TableNameOrders}"},
        {"Fn::Sub": table_arn + "${TableNameCounters}"},
    ] == reads["Resource"]


def test_the_parameter_files_give_every_parameter_the_stack_needs(rendered: Path) -> None:
    parameters = translated(rendered)["Parameters"]
    required = {name for name, p in parameters.items() if "Default" not in p}
    for region in REGIONS:
        given = {
            p["ParameterKey"]: p["ParameterValue"]
            for p in json.loads((rendered / f"{region}.json").read_text())
        }
        assert set(given) <= set(parameters), region
        assert required <= set(given), region
        table = "orders-us" if region == "us-east-1" else "orders"
        other = "orders" if region == "us-east-1" else "orders-us"
        peer = next(r for r in REGIONS if r != region)
        assert (table, "sk", "N") == (
            given["TableNameOrders"],
            given["SortKeyOrders"],
            given["SortKeyTypeOrders"],
        )
        assert ("counters", "id", "N") == (
            given["TableNameCounters"],
            given["PartitionKeyCounters"],
            given["PartitionKeyTypeCounters"],
        )
        assert f"arn:aws:dynamodb:{peer}:{ACCOUNT}:table/{other}" == given["PeerTableArnsOrders"]


def test_an_existing_table_is_named_by_its_stream_arn(tmp_path: Path) -> None:
    arn = f"arn:aws:dynamodb:us-east-1:{ACCOUNT}:table/orders-us/stream/2026-01-01T00:00:00.000"
    out = render(tmp_path, "--existing", f"us-east-1={arn}")
    given = {
        p["ParameterKey"]: p["ParameterValue"]
        for p in json.loads((out / "us-east-1.json").read_text())
    }
    assert arn == given["ExistingStreamArnOrders"]
    assert "ExistingStreamArnCounters" not in given


# -- created in moto's CloudFormation ------------------------------------------------------------


@pytest.fixture(scope="module")
def stack(moto_server: MotoServer, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Account]:
    account = Account(moto_server)
    out = render(tmp_path_factory.mktemp("stack"), account=account.id)
    account.upload_artifact()
    cloudformation = account.client("cloudformation", "us-east-1")
    cloudformation.create_stack(
        StackName="georep-tables",
        TemplateBody=json.dumps(translated(out)),
        Parameters=json.loads((out / "us-east-1.json").read_text()),
        Capabilities=["CAPABILITY_IAM"],
    )
    (created,) = cloudformation.describe_stacks(StackName="georep-tables")["Stacks"]
    assert "CREATE_COMPLETE" == created["StackStatus"], created.get("StackStatusReason")
    yield account


@pytest.mark.integration
def test_the_stack_maps_each_tables_stream_to_the_one_function_and_its_role_reads_them(
    stack: Account,
) -> None:
    region = "us-east-1"
    cloudformation = stack.client("cloudformation", region)
    summaries = cloudformation.list_stack_resources(StackName="georep-tables")[
        "StackResourceSummaries"
    ]
    physical = {s["LogicalResourceId"]: s["PhysicalResourceId"] for s in summaries}
    dynamodb = stack.client("dynamodb", region)
    streams = {
        name: dynamodb.describe_table(TableName=name)["Table"]["LatestStreamArn"]
        for name in ("orders-us", "counters")
    }
    keys = {name: dynamodb.describe_table(TableName=name)["Table"]["KeySchema"] for name in streams}
    functions = stack.client("lambda", region)
    mappings = functions.list_event_source_mappings(FunctionName=physical["Replicator"])[
        "EventSourceMappings"
    ]
    iam = stack.client("iam", region)
    document = iam.get_role_policy(
        RoleName=physical["ReplicatorRole"], PolicyName="georep-replicator"
    )["PolicyDocument"]
    if isinstance(document, str):  # NOTE: moto 5.2 answers the policy as a Python repr
        document = ast.literal_eval(document)
    statements = {s["Sid"]: s for s in document["Statement"]}

    assert sorted(streams.values()) == sorted(m["EventSourceArn"] for m in mappings)
    assert [{"AttributeName": "id", "KeyType": "HASH"}] == keys["counters"]
    assert ["pk", "sk"] == [k["AttributeName"] for k in keys["orders-us"]]
    assert sorted(streams.values()) == sorted(statements["ReadOwnStream"]["Resource"])
    arn = f"arn:aws:dynamodb:{{}}:{stack.id}:table/{{}}"
    assert sorted(
        [
            arn.format(region, "orders-us"),
            arn.format("eu-west-1", "orders"),
            arn.format(region, "counters"),
            arn.format("eu-west-1", "counters"),
        ]
    ) == sorted(statements["ReplicaTables"]["Resource"])
