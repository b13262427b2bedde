"""Create the tables a replica region needs, the same way on every backend."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Final, Literal

from botocore.exceptions import ClientError

from service.adapters.backends._errors import TableSetupError
from service.core.schema import STREAM_VIEW_TYPE, Keys, key_problems, stream_problems, ttl_problems

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodb.type_defs import (
        AttributeDefinitionTypeDef,
        KeySchemaElementTypeDef,
        TableDescriptionTypeDef,
    )

KeyType = Literal["S", "N", "B"]

_FIRST_POLL_S: Final = 0.02
_MAX_POLL_S: Final = 1.0


def create_replica_table(
    client: DynamoDBClient,
    *,
    table_name: str,
    partition_key: str,
    ttl_attribute: str,
    sort_key: str | None = None,
    partition_key_type: KeyType = "S",
    sort_key_type: KeyType = "S",
    timeout: float = 60.0,
) -> str:
    """Create (or accept an existing) replica table and return its latest stream ARN.

    A replica table is on-demand, streams ``NEW_AND_OLD_IMAGES`` (the replicator needs the old
    image to resolve deletes and the new one to ship writes), and has TTL enabled on
    `ttl_attribute` (tombstones expire). Idempotent: if the table exists it is checked, not
    changed, and a mismatch raises `TableSetupError` instead of replicating into the wrong
    shape. Waits until the table is ACTIVE (emulators: at once; AWS: seconds).

    The returned ARN identifies the stream but not reliably its region on the emulators (see
    `EmbeddedBackend`): keep the region with the client that read it.

    >>> arn = create_replica_table(  # doctest: +SKIP
    ...     backend.client("dynamodb", "eu-west-1"),
    ...     table_name="orders", partition_key="pk", sort_key="sk", ttl_attribute="expires_at",
    ... )
    """
    key_schema: list[KeySchemaElementTypeDef] = [
        {"AttributeName": partition_key, "KeyType": "HASH"}
    ]
    definitions: list[AttributeDefinitionTypeDef] = [
        {"AttributeName": partition_key, "AttributeType": partition_key_type}
    ]
    if sort_key is not None:
        key_schema.append({"AttributeName": sort_key, "KeyType": "RANGE"})
        definitions.append({"AttributeName": sort_key, "AttributeType": sort_key_type})
    try:
        client.create_table(
            TableName=table_name,
            KeySchema=key_schema,
            AttributeDefinitions=definitions,
            BillingMode="PAY_PER_REQUEST",
            StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
        )
    except ClientError as error:
        if _error_code(error) != "ResourceInUseException":
            raise
        # It exists (or is being created by someone else): check it below, change nothing.
    table = _wait_until_active(client, table_name=table_name, timeout=timeout)
    keys = Keys(partition_key, partition_key_type, sort_key, sort_key_type)
    _check_shape(table, keys=keys)
    _ensure_ttl(client, table_name=table_name, attribute=ttl_attribute)
    return _latest_stream_arn(table)


def onboard_table(
    client: DynamoDBClient,
    *,
    table_name: str,
    keys: Keys,
    ttl_attribute: str,
    timeout: float = 60.0,
) -> list[str]:
    """Make ``table_name`` a replica table and say what that took (``georep init``): create
    it if it is missing; otherwise keep its data, check its keys against ``keys`` and turn on
    what is off (a NEW_AND_OLD_IMAGES stream, TTL on ``ttl_attribute``). What cannot be
    turned on without losing something (keys that differ, a stream with another view type,
    TTL on another attribute) raises `TableSetupError` naming the fix. Idempotent: a ready
    table gives ``[]``."""
    try:
        client.describe_table(TableName=table_name)
    except ClientError as error:
        if _error_code(error) != "ResourceNotFoundException":
            raise
        create_replica_table(
            client,
            table_name=table_name,
            partition_key=keys.partition_key,
            partition_key_type=keys.partition_key_type,
            sort_key=keys.sort_key,
            sort_key_type=keys.sort_key_type,
            ttl_attribute=ttl_attribute,
            timeout=timeout,
        )
        return ["created"]
    done: list[str] = []
    table = _wait_until_active(client, table_name=table_name, timeout=timeout)
    problems = key_problems(table, keys=keys)
    if problems:
        raise TableSetupError(f"table {table_name}: {'; '.join(problems)}")
    stream = table.get("StreamSpecification")
    if stream is None or not stream.get("StreamEnabled"):
        client.update_table(
            TableName=table_name,
            StreamSpecification={"StreamEnabled": True, "StreamViewType": STREAM_VIEW_TYPE},
        )
        table = _wait_until_active(client, table_name=table_name, timeout=timeout)
        done.append(f"stream enabled ({STREAM_VIEW_TYPE})")
    _check_shape(table, keys=keys)
    ttl = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus", "DISABLED") == "DISABLED":
        _ensure_ttl(client, table_name=table_name, attribute=ttl_attribute)
        done.append(f"TTL enabled on {ttl_attribute}")
    else:
        problems = ttl_problems(ttl, attribute=ttl_attribute)
        if problems:
            raise TableSetupError(f"table {table_name}: {'; '.join(problems)}")
    return done


def stream_arn(client: DynamoDBClient, table_name: str) -> str:
    """The table's latest stream ARN (DescribeTable ``LatestStreamArn``).

    Never derive the source region from this ARN or from a record's ``awsRegion``: emulators
    write a constant there (moto: ``us-east-1``) and moto ignores the ARN's region when reading.
    """
    table = client.describe_table(TableName=table_name)["Table"]
    return _latest_stream_arn(table)


def _wait_until_active(
    client: DynamoDBClient, *, table_name: str, timeout: float
) -> TableDescriptionTypeDef:
    deadline = time.monotonic() + timeout
    pause = _FIRST_POLL_S
    while True:
        table = client.describe_table(TableName=table_name)["Table"]
        status = table.get("TableStatus")
        if status == "ACTIVE":
            return table
        if status in ("DELETING", "ARCHIVING", "ARCHIVED", "INACCESSIBLE_ENCRYPTION_CREDENTIALS"):
            raise TableSetupError(f"table {table_name} is {status}; it cannot become a replica")
        if time.monotonic() + pause > deadline:
            raise TableSetupError(
                f"table {table_name} is still {status} after {timeout:.0f} s; "
                "raise the timeout or check the table in the console"
            )
        time.sleep(pause)
        pause = min(pause * 2, _MAX_POLL_S)


def _check_shape(table: TableDescriptionTypeDef, *, keys: Keys) -> None:
    # NOTE: the same checks `georep run` and the Lambda cold start make
    # (service/engine/preflight.py).
    problems = key_problems(table, keys=keys) + stream_problems(table)
    if problems:
        raise TableSetupError(f"table {table.get('TableName', '?')}: {'; '.join(problems)}")


def _ensure_ttl(client: DynamoDBClient, *, table_name: str, attribute: str) -> None:
    description = client.describe_time_to_live(TableName=table_name).get(
        "TimeToLiveDescription", {}
    )
    if description.get("TimeToLiveStatus", "DISABLED") == "DISABLED":
        # NOTE: moto records this setting but never expires items; AWS deletes expired items
        # within days and streams a REMOVE by the service principal (tested with records of
        # that exact shape: tests/integration/test_ttl_records.py).
        client.update_time_to_live(
            TableName=table_name,
            TimeToLiveSpecification={"Enabled": True, "AttributeName": attribute},
        )
        return
    problems = ttl_problems(description, attribute=attribute)
    if problems:
        raise TableSetupError(f"table {table_name}: {'; '.join(problems)}")


def _latest_stream_arn(table: TableDescriptionTypeDef) -> str:
    arn = table.get("LatestStreamArn")
    if not arn:
        raise TableSetupError(f"table {table.get('TableName', '?')} has no stream")
    return arn


def _error_code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))
