"""The template itself, translated to CloudFormation: it lints clean and promises what the
issue asks (a bounded, partial-failure-reporting event source mapping, least-privilege IAM with
no wildcard, the right alarms). No emulator: these run in about two seconds."""

from __future__ import annotations

from typing import Any

import pytest
from cfnlint.api import ManualArgs, lint

from tests.deploy.sam import TEMPLATE, resources, translated, translated_json


def test_the_translated_template_lints_with_zero_errors_and_zero_warnings() -> None:
    """cfn-lint does not look inside a SAM function's Events, so the CloudFormation that the
    translator produces is what is linted, in every region the template is meant for."""
    matches = lint(
        translated_json(),
        config=ManualArgs(regions=["eu-west-1", "us-east-1", "ap-southeast-2"]),
    )

    assert [] == [f"{m.rule.id} {m.message} ({m.path})" for m in matches]


def test_the_sam_template_lints_with_zero_errors() -> None:
    """The SAM form too (what a user opens and edits)."""
    matches = lint(TEMPLATE.read_text(), config=ManualArgs(regions=["eu-west-1"]))

    assert [] == [f"{m.rule.id} {m.message}" for m in matches]


def test_the_event_source_mapping_reports_partial_failures_and_never_retries_forever() -> None:
    """ReportBatchItemFailures, bisection, an on-failure queue, no filter, and retry and age
    limits whose every allowed value is finite and below the stream's 24 h retention: no
    parameter value can bring back the -1 defaults that block a shard for a day."""
    (mapping,) = resources("AWS::Lambda::EventSourceMapping").values()
    properties = mapping["Properties"]
    parameters = translated()["Parameters"]

    assert ["ReportBatchItemFailures"] == properties["FunctionResponseTypes"]
    assert properties["BisectBatchOnFunctionError"] is True
    assert "TRIM_HORIZON" == properties["StartingPosition"]
    assert {"Fn::GetAtt": ["FailureQueue", "Arn"]} == properties["DestinationConfig"]["OnFailure"][
        "Destination"
    ]
    assert "FilterCriteria" not in properties
    for name in ("MaximumRetryAttempts", "MaximumRecordAgeInSeconds", "ParallelizationFactor"):
        assert {"Ref": name} == properties[name]
    retries = parameters["MaximumRetryAttempts"]
    assert 0 <= retries["MinValue"] <= retries["Default"] <= retries["MaxValue"] <= 10_000
    age = parameters["MaximumRecordAgeInSeconds"]
    assert 60 <= age["MinValue"] <= age["Default"] <= age["MaxValue"] < 24 * 3600
    parallel = parameters["ParallelizationFactor"]
    assert (1, 1, 10) == (parallel["MinValue"], parallel["Default"], parallel["MaxValue"])


def test_the_function_runs_the_handler_on_python_312_arm64_with_its_region() -> None:
    (function,) = resources("AWS::Lambda::Function").values()
    properties = function["Properties"]

    assert "service.surfaces.lambda_handler.handler" == properties["Handler"]
    assert ("python3.12", ["arm64"]) == (properties["Runtime"], properties["Architectures"])
    assert {"Ref": "AWS::Region"} == properties["Environment"]["Variables"]["GEOREP_REGION"]
    assert {"Fn::GetAtt": ["ReplicatorRole", "Arn"]} == properties["Role"]


def _statements() -> list[dict[str, Any]]:
    """Every statement granted to the function: the role's own policy and those attached."""
    (role,) = resources("AWS::IAM::Role").values()
    (policy,) = role["Properties"]["Policies"]
    statements: list[dict[str, Any]] = list(policy["PolicyDocument"]["Statement"])
    for attached in resources("AWS::IAM::Policy").values():
        statements += attached["Properties"]["PolicyDocument"]["Statement"]
    return statements


def test_the_tombstone_store_and_its_grants_exist_only_with_the_store() -> None:
    """Issue 22: the region's store (key ``k``, TTL on ``_georep_ttl``, as
    service/core/tombstones.py writes it) and exactly the actions the store path uses
    (`DynamoTable.get_stored` and `commit`: GetItem; Put, Delete and ConditionCheck, alone or
    in one TransactWriteItems) on every region's store, and Delete and ConditionCheck on the
    replica tables, all under the UseTombstoneStore condition (an empty TombstoneTableName)."""
    from service.core.tombstones import STORE_KEY
    from service.core.version import TTL_ATTR

    (table,) = [
        t
        for t in resources("AWS::DynamoDB::Table").values()
        if t.get("Condition") == "UseTombstoneStore"
    ]
    assert [{"AttributeName": STORE_KEY, "KeyType": "HASH"}] == table["Properties"]["KeySchema"]
    assert {"AttributeName": TTL_ATTR, "Enabled": True} == (
        table["Properties"]["TimeToLiveSpecification"]
    )
    (policy,) = resources("AWS::IAM::Policy").values()
    assert "UseTombstoneStore" == policy["Condition"]
    grants = {
        st["Sid"]: sorted(st["Action"])
        for st in policy["Properties"]["PolicyDocument"]["Statement"]
    }
    assert {
        "TombstoneStores": [
            "dynamodb:ConditionCheckItem",
            "dynamodb:DeleteItem",
            "dynamodb:GetItem",
            "dynamodb:PutItem",
        ],
        "ReplicaTableDeletes": ["dynamodb:ConditionCheckItem", "dynamodb:DeleteItem"],
        "OwnBatchReads": ["dynamodb:BatchGetItem"],
    } == grants


def _strings(value: Any) -> list[str]:
    if isinstance(value, str):
        return [value]
    if isinstance(value, list):
        return [s for item in value for s in _strings(item)]
    if isinstance(value, dict):
        return [s for item in value.values() for s in _strings(item)]
    return []


def test_the_role_has_no_wildcard_action_no_star_resource_and_no_managed_policy() -> None:
    """Every action is named; no resource is "*" (every one is an ARN the stack knows); only
    Allow statements; SAM added no managed policy (the role is the template's own)."""
    (role,) = resources("AWS::IAM::Role").values()
    assert "ManagedPolicyArns" not in role["Properties"]
    for statement in _statements():
        actions = (
            statement["Action"] if isinstance(statement["Action"], list) else [statement["Action"]]
        )
        assert "Allow" == statement["Effect"]
        assert [] == [a for a in actions if "*" in a], statement["Sid"]
        assert "*" not in _strings(statement["Resource"]), statement["Sid"]
        assert "NotAction" not in statement and "NotResource" not in statement


@pytest.mark.parametrize(
    ("metric", "namespace"),
    [
        ("IteratorAge", "AWS/Lambda"),
        ("Errors", "AWS/Lambda"),
        ("Throttles", "AWS/Lambda"),
        ("ApproximateNumberOfMessagesVisible", "AWS/SQS"),
        ("dead_lettered", "georep"),
    ],
)
def test_an_alarm_watches_each_metric_that_says_replication_is_stuck(
    metric: str, namespace: str
) -> None:
    alarms = resources("AWS::CloudWatch::Alarm").values()
    watching = [a for a in alarms if a["Properties"].get("MetricName") == metric]

    assert 1 == len(watching)
    assert namespace == watching[0]["Properties"]["Namespace"]
    assert "notBreaching" == watching[0]["Properties"]["TreatMissingData"]


def test_the_replication_lag_alarm_covers_every_destination_of_this_region() -> None:
    """One Metrics Insights query over georep's replication_lag_seconds for every destination
    (the handler's EMF dimensions: region, destination)."""
    alarm = translated()["Resources"]["ReplicationLagAlarm"]["Properties"]
    (query,) = alarm["Metrics"]
    text = query["Expression"]["Fn::Sub"]

    assert "MAX(replication_lag_seconds)" in text
    assert "SCHEMA(georep, destination, region)" in text
    assert "region = '${AWS::Region}'" in text


def test_a_stream_the_mapping_no_longer_reads_raises_an_alarm() -> None:
    """A disabled and re-enabled stream has a new ARN and the mapping stays on the old one:
    invocations stop while the table is still written. The alarm compares the two."""
    alarm = translated()["Resources"]["StreamDetachedAlarm"]["Properties"]
    queries = {q["Id"]: q for q in alarm["Metrics"]}

    assert "ConsumedWriteCapacityUnits" == queries["writes"]["MetricStat"]["Metric"]["MetricName"]
    assert "Invocations" == queries["invocations"]["MetricStat"]["Metric"]["MetricName"]
    assert "FILL(invocations, 0) == 0" in queries["detached"]["Expression"]
    assert queries["detached"]["ReturnData"] is True
