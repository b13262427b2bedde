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
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.config import Config as BotoConfig
from botocore.exceptions import (
    ClientError,
    CredentialRetrievalError,
    EndpointConnectionError,
    HTTPClientError,
    NoCredentialsError,
    PartialCredentialsError,
    SSOError,
    TokenRetrievalError,
)
from botocore.exceptions import ConnectionError as BotoConnectionError

from service.adapters.dynamo import IncompleteResponseError, require
from service.core.schema import STREAM_VIEW_TYPE, Keys, table_problems
from service.core.version import TTL_ATTR
from service.engine.wiring import THROTTLES, clients_for, transient
from service.errors import GeorepError

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient

    from service.config import Config

log = logging.getLogger("georep.preflight")

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


# -- the pure checks ---------------------------------------------------------------------------


# -- the I/O edge ------------------------------------------------------------------------------


@dataclass(frozen=True)
class _Verdict:
    region: str
    problems: tuple[str, ...] = ()
    unchecked: str | None = None  # why the region could not be checked right now


def _describe(region: str, client: DynamoDBClient, *, table_name: str, keys: Keys) -> _Verdict:
    try:
        # NOTE: an answer cut short reads as {} (no checksum covers it): a KeyError here
        # stopped a chaos run's consumer at its start (session 38). Unchecked, as a reset is.
        described = client.describe_table(TableName=table_name)
        table = require(described, "Table", operation="DescribeTable")
        described_ttl = client.describe_time_to_live(TableName=table_name)
        ttl = require(described_ttl, "TimeToLiveDescription", operation="DescribeTimeToLive")
    except _CREDENTIALS_ERRORS as error:
        raise PreflightError(
            f"no usable AWS credentials ({error}): set AWS_PROFILE, or AWS_ACCESS_KEY_ID and "
            "AWS_SECRET_ACCESS_KEY, or run with an IAM role"
        ) from None
    except (BotoConnectionError, HTTPClientError, IncompleteResponseError) as error:
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
            f"the table does not exist: run georep init (it creates it: key schema as "
            f"configured, stream {STREAM_VIEW_TYPE}, TTL on {TTL_ATTR}), or set this region's "
            "[[regions]] table (with [[tables]]: the table's name_in) if it has another name"
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
    keys = config.key_schema()
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


def missing_stores(
    config: Config, *, clients: Mapping[str, DynamoDBClient], besides: str
) -> list[str]:
    """The regions other than ``besides`` whose tombstone store does not exist, when deletes
    use one (one DescribeTable each, in parallel). A consumer creates its own region's store
    at start, not the others': until a region's store exists, every insert and delete bound
    there fails its first read and is retried, which a consumer started first should say
    once, not once per record. Any other outcome (reachable or not, allowed or not) is left
    to replication's own retries and errors."""
    store = config.replication.tombstone_table if config.replication.tombstone_store else None
    others = [r for r in config.region_names if r != besides]
    if store is None or not others:
        return []

    def missing(region: str) -> bool:
        try:
            clients[region].describe_table(TableName=store)
        except ClientError as error:
            return bool(error.response.get("Error", {}).get("Code") == "ResourceNotFoundException")
        except Exception:  # unreachable, credentials: said by the probe and the consumer
            return False
        return False

    with ThreadPoolExecutor(max_workers=len(others), thread_name_prefix="stores") as pool:
        return [r for r, gone in zip(others, pool.map(missing, others), strict=True) if gone]


# -- the commands' first call: fail fast ---------------------------------------------------------

# NOTE: a command's first call per region is a probe with a short connect timeout and one retry:
# nothing listening, or no network to AWS, then ends the command in about 2 s with one line,
# instead of botocore's ten patient attempts (15 to 36 s). The work itself keeps BOTO_CONFIG.
PREFLIGHT_CONFIG = BotoConfig(
    connect_timeout=1, read_timeout=10, retries={"mode": "standard", "total_max_attempts": 2}
)


class RegionError(Exception):
    """A call to one region failed: ``cause`` is what botocore raised. The CLI turns it into one
    line naming the region, the table and the fix (service/surfaces/failures.py)."""

    def __init__(
        self, cause: BaseException, *, region: str, table: str, endpoint: str | None
    ) -> None:
        super().__init__(f"region {region}, table {table}: {cause}")
        self.cause = cause
        self.region = region
        self.table = table
        self.endpoint = endpoint


def _unreachable(error: BaseException) -> bool:
    return isinstance(error, BotoConnectionError | HTTPClientError)


def _transient(error: BaseException) -> bool:
    """What waiting may fix: a throttle, a 5xx, a connection reset or timed out. Not nothing
    listening (EndpointConnectionError: refused, or a name that does not resolve)."""
    if isinstance(error, EndpointConnectionError):
        return False
    return transient(error)


def probe(
    config: Config,
    *,
    regions: Sequence[str] | None = None,
    tables: bool = True,
    tolerate_unreachable: bool = False,
    tolerate_transient: bool = False,
) -> dict[str, RegionError]:
    """Reach each of ``regions`` (default: every one) with one DescribeTable of its table, in
    parallel, under PREFLIGHT_CONFIG; raise the first region's RegionError (configuration
    order). ``tables=False``: a missing table is not an error (init creates it).
    ``tolerate_unreachable``: return the unreachable regions instead of raising for them (a
    status still shows the others). ``tolerate_transient``: return the regions whose failure
    waiting may fix (the consumer then waits with its patient retries); nothing listening,
    credentials, a missing table or a permission still raise."""
    names = list(regions if regions is not None else config.region_names)
    clients = clients_for(config, "dynamodb", boto_config=PREFLIGHT_CONFIG)

    def one(region: str) -> RegionError | None:
        client = clients[region]
        # Every configured table of the region ([[tables]]), the first failing one said.
        for scoped in config.scoped():
            table = scoped.table_name(region)
            try:
                client.describe_table(TableName=table)
            except Exception as error:
                if not tables and _code(error) == "ResourceNotFoundException":
                    continue
                endpoint = client.meta.endpoint_url
                return RegionError(error, region=region, table=table, endpoint=endpoint)
        return None

    with ThreadPoolExecutor(max_workers=len(names) or 1, thread_name_prefix="probe") as pool:
        found = dict(zip(names, pool.map(one, names), strict=True))
    unreachable: dict[str, RegionError] = {}
    for region, error in found.items():
        if error is None:
            continue
        if (tolerate_unreachable and _unreachable(error.cause)) or (
            tolerate_transient and _transient(error.cause)
        ):
            unreachable[region] = error
            continue
        raise error
    return unreachable


def _code(error: BaseException) -> str:
    if isinstance(error, ClientError):
        return str(error.response.get("Error", {}).get("Code", ""))
    return ""


# -- region names ------------------------------------------------------------------------------


def check_region_names(config: Config) -> None:
    """Refuse a region name DynamoDB does not have in any partition (``moon-1``, ``eu-west1``),
    unless the region has an ``endpoint_url`` (an emulator takes any name). The names come
    from botocore's own endpoint data, so a botocore older than a new region refuses it:
    upgrade boto3, or set the region's endpoint_url. Raises ConfigError."""
    from difflib import get_close_matches

    import botocore.session

    from service.config import ConfigError

    unchecked = [r.name for r in config.regions if r.endpoint_url is None]
    if not unchecked:
        return
    session = botocore.session.get_session()
    known: set[str] = set()
    for partition in session.get_available_partitions():
        known.update(session.get_available_regions("dynamodb", partition_name=partition))
    for name in unchecked:
        if name in known:
            continue
        close = get_close_matches(name, sorted(known), n=1, cutoff=0.6)
        hint = f": did you mean {close[0]}?" if close else ""
        raise ConfigError(
            f"[[regions]] name {name} is not a DynamoDB region{hint} (for an emulator or "
            "another endpoint, set that region's endpoint_url)"
        )
