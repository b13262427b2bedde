"""Start-up checks: refuse to replicate into tables that cannot work with the configuration.

``georep run`` and the Lambda cold start call :func:`check_tables` before replicating. Every
region's table must have

- the configured key schema and key types (``[table] partition_key``/``partition_key_type``,
  ``sort_key``/``sort_key_type``): otherwise every replicated write to it fails;
- a stream with ``NEW_AND_OLD_IMAGES``: with ``NEW_IMAGE`` a REMOVE record has no old image,
  every delete is dead-lettered and the regions quietly differ;
- TTL enabled on ``_georep_ttl``: otherwise tombstones are never collected.

A refusal is one :class:`PreflightError` line naming the region, the table and the fix.

The check is a pure function of DescribeTable and DescribeTimeToLive (:func:`table_problems`);
the I/O around it (:func:`check_tables`) refuses only on a definite answer. A region that
cannot be reached right now (connection error, throttling, a 5xx) is logged and skipped: a
destination that is down must not stop replication to the others, and the replication path
already retries writes to it.

>>> table = {"KeySchema": [{"AttributeName": "pk", "KeyType": "HASH"}],
...          "AttributeDefinitions": [{"AttributeName": "pk", "AttributeType": "S"}],
...          "StreamSpecification": {"StreamEnabled": True, "StreamViewType": "NEW_IMAGE"}}
>>> ttl = {"TimeToLiveStatus": "ENABLED", "AttributeName": "_georep_ttl"}
>>> for problem in table_problems(table, ttl, keys=Keys(partition_key="pk")):
...     print(problem)  # doctest: +ELLIPSIS
stream view type is NEW_IMAGE, georep needs NEW_AND_OLD_IMAGES (...): disable the stream, ...
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final, Literal

from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from service.consumer import THROTTLES
from service.core.version import TTL_ATTR
from service.errors import GeorepError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from service.config import Config

log = logging.getLogger("georep.preflight")

KeyType = Literal["S", "N", "B"]
STREAM_VIEW_TYPE: Final = "NEW_AND_OLD_IMAGES"
_CREDENTIALS_ERRORS = (
    NoCredentialsError,
    PartialCredentialsError,
    CredentialRetrievalError,
    TokenRetrievalError,
    SSOError,
)


class PreflightError(GeorepError):
    """A region's table, or the environment, cannot work with this configuration. The message
    is one line naming the region, the table and the fix."""


@dataclass(frozen=True)
class Keys:
    """The key schema a replica table must have."""

    partition_key: str
    partition_key_type: KeyType = "S"
    sort_key: str | None = None
    sort_key_type: KeyType = "S"

    @classmethod
    def of(cls, config: Config) -> Keys:
        table = config.table
        return cls(
            partition_key=table.partition_key,
            partition_key_type=table.partition_key_type,
            sort_key=table.sort_key,
            sort_key_type=table.sort_key_type,
        )

    def schema(self) -> list[tuple[str, str, str]]:
        """(attribute, HASH/RANGE, type) for each key, partition key first."""
        keys: list[tuple[str, str, str]] = [(self.partition_key, "HASH", self.partition_key_type)]
        if self.sort_key is not None:
            keys.append((self.sort_key, "RANGE", self.sort_key_type))
        return keys


# -- the pure checks ---------------------------------------------------------------------------


def _show(schema: list[tuple[str, str, str]]) -> str:
    role = {"HASH": "partition key", "RANGE": "sort key"}
    return " + ".join(f"{name} ({role.get(kind, kind)}, {typ})" for name, kind, typ in schema)


def key_problems(table: Mapping[str, Any], *, keys: Keys) -> list[str]:
    """What is wrong with a DescribeTable ``Table``'s key schema, each with its fix."""
    types = {d["AttributeName"]: d["AttributeType"] for d in table.get("AttributeDefinitions", [])}
    actual = [
        (k["AttributeName"], k["KeyType"], types.get(k["AttributeName"], "?"))
        for k in table.get("KeySchema", [])
    ]
    wanted = keys.schema()
    if actual == wanted:
        return []
    if [(n, k) for n, k, _ in actual] == [(n, k) for n, k, _ in wanted]:
        option = {"HASH": "partition_key_type", "RANGE": "sort_key_type"}
        return [
            f"key {name} has type {typ}, the configuration says {want}: set [table] "
            f'{option[kind]} = "{typ}" (the table\'s key types cannot change)'
            for (name, kind, typ), (_, _, want) in zip(actual, wanted, strict=True)
            if typ != want
        ]
    return [
        f"key schema is {_show(actual)}, the configuration says {_show(wanted)}: set [table] "
        "partition_key and sort_key (and their _type) to the table's keys, or point this "
        "region's [[regions]] table at a table with the configured keys"
    ]


def stream_problems(table: Mapping[str, Any]) -> list[str]:
    """What is wrong with a DescribeTable ``Table``'s stream, with its fix."""
    stream = table.get("StreamSpecification") or {}
    if not stream.get("StreamEnabled"):
        return [
            f"its stream is off: enable it with StreamViewType {STREAM_VIEW_TYPE} "
            "(UpdateTable StreamSpecification)"
        ]
    view = stream.get("StreamViewType")
    if view != STREAM_VIEW_TYPE:
        return [
            f"stream view type is {view}, georep needs {STREAM_VIEW_TYPE} (without old images "
            "every delete is dead-lettered and the regions differ): disable the stream, then "
            f"enable it with {STREAM_VIEW_TYPE} (a stream's view type cannot be changed)"
        ]
    return []


def ttl_problems(ttl: Mapping[str, Any], *, attribute: str = TTL_ATTR) -> list[str]:
    """What is wrong with a DescribeTimeToLive ``TimeToLiveDescription``, with its fix."""
    status = ttl.get("TimeToLiveStatus", "DISABLED")
    current = ttl.get("AttributeName")
    why = "tombstones are never collected otherwise"
    if status in ("ENABLED", "ENABLING"):
        if current == attribute:
            return []
        return [
            f"TTL is on attribute {current!r}, georep needs it on {attribute!r} ({why}; a table "
            f"has one TTL attribute): disable it, then enable it on {attribute}"
        ]
    if status == "DISABLING":
        return [
            f"TTL is being disabled, georep needs it on {attribute!r} ({why}): once it is off "
            f"(up to an hour), enable it on {attribute} (UpdateTimeToLive)"
        ]
    return [
        f"TTL is off, georep needs it on {attribute!r} ({why}): enable it "
        f"(UpdateTimeToLive Enabled=true, AttributeName={attribute})"
    ]


def table_problems(
    table: Mapping[str, Any], ttl: Mapping[str, Any], *, keys: Keys, ttl_attribute: str = TTL_ATTR
) -> list[str]:
    """Everything that keeps a table from being a replica: keys, stream, TTL."""
    return (
        key_problems(table, keys=keys)
        + stream_problems(table)
        + ttl_problems(ttl, attribute=ttl_attribute)
    )


# -- the I/O edge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    region: str
    problems: tuple[str, ...] = ()
    unchecked: str | None = None  # why the region could not be checked right now


def _describe(region: str, client: DynamoDBClient, *, table_name: str, keys: Keys) -> _Verdict:
    try:
        table = client.describe_table(TableName=table_name)["Table"]
        ttl = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
    except _CREDENTIALS_ERRORS as error:
        raise PreflightError(
            f"no usable AWS credentials ({error}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run with an IAM role"
        ) from None
    except (BotoConnectionError, HTTPClientError) as error:
        return _Verdict(region, unchecked=str(error))
    except ClientError as error:
        code = str(error.response.get("Error", {}).get("Code", ""))
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        if code in THROTTLES or status >= 500:
            return _Verdict(region, unchecked=f"{code}: {error}")
        return _Verdict(region, problems=(_client_problem(code, error, table_name),))
    return _Verdict(region, problems=tuple(table_problems(table, ttl, keys=keys)))


def _client_problem(code: str, error: ClientError, table_name: str) -> str:
    if code == "ResourceNotFoundException":
        return (
            f"the table does not exist: create it (key schema as configured, stream "
            f"{STREAM_VIEW_TYPE}, TTL on {TTL_ATTR}), or set this region's [[regions]] table if "
            "it has another name"
        )
    if code in ("AccessDeniedException", "AccessDenied"):
        return (
            "these credentials may not describe it: grant dynamodb:DescribeTable and "
            f"dynamodb:DescribeTimeToLive on {table_name}"
        )
    message = error.response.get("Error", {}).get("Message", "")
    return f"DescribeTable was refused ({code}: {message})"


def check_tables(config: Config, *, clients: Mapping[str, DynamoDBClient]) -> dict[str, str]:
    """Check every configured region's table (in parallel); raise PreflightError on the first
    line of problems. Returns the regions that could not be checked right now, with why
    (logged as warnings; replication retries writes to them as usual)."""
    keys = Keys.of(config)
    regions = config.region_names
    with ThreadPoolExecutor(max_workers=len(regions), thread_name_prefix="preflight") as pool:
        verdicts = list(
            pool.map(
                lambda region: _describe(
                    region, clients[region], table_name=config.table_name(region), keys=keys
                ),
                regions,
            )
        )
    problems = [
        f"region {v.region}, table {config.table_name(v.region)}: {problem}"
        for v in verdicts
        for problem in v.problems
    ]
    if problems:
        raise PreflightError("; ".join(problems))
    unchecked = {v.region: v.unchecked for v in verdicts if v.unchecked is not None}
    for region, why in unchecked.items():
        log.warning(
            "could not check region %s, table %s (%s); replicating anyway",
            region,
            config.table_name(region),
            why,
        )
    return unchecked
