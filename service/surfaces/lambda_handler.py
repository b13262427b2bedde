"""The Lambda entry point: a DynamoDB Streams event source mapping -> the shared Replicator.

Configure the function with ``GEOREP_REGION`` (the source region: the region of the table
whose stream triggers it) and optionally ``GEOREP_CONFIG`` (path to ``georep.toml``, default:
the file next to this module). Handler: ``service.surfaces.lambda_handler.handler``. docs/lambda.md
lists the event source mapping settings to use and why.

Per invocation:

1. Lambda's base64 text for binary values (B, BS, and inside M and L) is decoded to bytes,
   which is what the core expects (boto3's GetRecords gives bytes; Lambda's JSON cannot).
2. The whole batch goes through :meth:`service.engine.pipeline.Replicator.process`, the path the
   standalone consumer uses: per-key lanes in order, different keys written in parallel.
3. Powertools' batch utility builds the ReportBatchItemFailures response: its record handler
   raises for each record the Replicator reported ``failed``. ``dead-lettered`` records are
   successes (they are in the dead-letter table). Lambda restarts from the lowest reported
   sequence number, so every later record is replayed too; the Replicator marks the later
   records of a failing key failed as well, and applying a version twice changes nothing.
4. Metrics are flushed once, as CloudWatch embedded metric format (namespace ``georep``).

With ``[[tables]]``, one function serves every configured table of its region (an event
source mapping per table stream): each event goes to the Replicator of the table its
``eventSourceARN`` names (``...:table/NAME/stream/...``, NAME the table's name in this region,
``name_in`` included); an event from a table georep.toml does not configure there raises
EventError. With one table, every event goes to it, whatever its ARN says (as before: the
test events of SAM and the console name ``ExampleTableWithStream``).

Delivery stays at-least-once: the partial response lowers the number of replays, it does not
prevent them.
"""

from __future__ import annotations

import base64
import binascii
import logging
import os
import re
import threading
from collections import defaultdict
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import boto3
from aws_lambda_powertools import Metrics as PowertoolsMetrics
from aws_lambda_powertools.metrics import MetricUnit
from aws_lambda_powertools.utilities.batch import (
    BatchProcessor,
    EventType,
    process_partial_response,
)
from aws_lambda_powertools.utilities.batch.types import PartialItemFailureResponse
from aws_lambda_powertools.utilities.data_classes.dynamo_db_stream_event import DynamoDBRecord
from aws_lambda_powertools.utilities.typing import LambdaContext
from botocore.config import Config as BotoConfig

from service.adapters.deadletter import DynamoDeadLetters
from service.config import Config, ConfigError, load_config
from service.engine.pipeline import RecordResult, Replicator
from service.engine.preflight import check_tables
from service.engine.wiring import clients_for, replicator_for
from service.errors import EventError, GeorepError, RecordError
from service.ports import Labels

log = logging.getLogger("georep.lambda")

CONFIG_ENV = "GEOREP_CONFIG"
REGION_ENV = "GEOREP_REGION"
DEFAULT_CONFIG = Path(__file__).with_name("georep.toml")
NAMESPACE = "georep"

# NOTE: no max_attempts here, unlike the standalone consumer's 10: retries spend the function's
# timeout, and a record that still fails is retried by Lambda anyway. AWS_MAX_ATTEMPTS (botocore
# default 3) tunes it. Adaptive mode's rate limiter lives in the client, and the clients live as
# long as the container, so it keeps what it learnt across invocations.
BOTO_CONFIG = BotoConfig(
    retries={"mode": "adaptive"}, connect_timeout=5, read_timeout=10, max_pool_connections=64
)

_IMAGES = ("Keys", "NewImage", "OldImage")


# -- binary values ---------------------------------------------------------------------------


def decode_binary(value: Any) -> Any:
    """One attribute value with Lambda's base64 text decoded to bytes, at any depth.

    >>> decode_binary({"M": {"b": {"B": "AAE="}, "l": {"L": [{"BS": ["/w=="]}]}}})
    {'M': {'b': {'B': b'\\x00\\x01'}, 'l': {'L': [{'BS': [b'\\xff']}]}}}

    Values that are not well-formed attribute values are returned unchanged: judging their shape
    is :func:`service.core.records.parse_record`'s job, which dead-letters them. Raises
    RecordError for a binary value that is not base64 text.
    """
    if not isinstance(value, dict) or len(value) != 1:
        return value
    ((kind, inner),) = value.items()
    if kind == "B":
        return {"B": _from_base64(inner)}
    if kind == "BS" and isinstance(inner, list):
        return {"BS": [_from_base64(b) for b in inner]}
    if kind == "M" and isinstance(inner, dict):
        return {"M": {name: decode_binary(v) for name, v in inner.items()}}
    if kind == "L" and isinstance(inner, list):
        return {"L": [decode_binary(v) for v in inner]}
    return value


def _from_base64(text: object) -> bytes:
    if isinstance(text, bytes):  # already decoded (a record that did not come through JSON)
        return text
    if not isinstance(text, str):
        raise RecordError(f"a binary value must be base64 text, got {type(text).__name__}")
    try:
        return base64.b64decode(text, validate=True)
    except binascii.Error as error:
        raise RecordError(f"a binary value is not valid base64 ({error}): {text[:40]!r}") from None


def decode_record(record: Any) -> Any:
    """A copy of a Lambda stream record whose Keys, NewImage and OldImage hold bytes for binary
    values; the event itself is left as Lambda sent it. Raises RecordError (see above)."""
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    if not isinstance(body, Mapping):
        return record
    decoded = dict(body)
    for name in _IMAGES:
        image = body.get(name)
        if isinstance(image, dict):
            decoded[name] = {attr: decode_binary(v) for attr, v in image.items()}
    return {**record, "dynamodb": decoded}


# -- metrics ---------------------------------------------------------------------------------


class EmfMetrics:
    """The pipeline's ``Metrics`` port as CloudWatch embedded metric format, via Powertools.

    Dimensions are kept low-cardinality: ``region`` (the source) and, where the pipeline names
    one, ``destination``; other labels (how an item was applied, an error type) are summed
    away (conflicts have their own counter; error types are in the dead-letter table).
    Counters are summed and observations collected in memory during an invocation, under a
    lock because the Replicator reports from its write pool and Powertools' metric set is not
    thread-safe; :meth:`flush` writes one EMF document per dimension set.
    """

    def __init__(self, *, region: str, metrics: PowertoolsMetrics | None = None) -> None:
        self.region = region
        # NOTE: Powertools' Metrics keeps its metric set in class attributes, shared by every
        # instance of the namespace and across invocations; flush() always drains it.
        self.metrics = metrics or PowertoolsMetrics(namespace=NAMESPACE)
        self._lock = threading.Lock()
        self._counts: dict[tuple[tuple[str, str], ...], dict[str, float]] = {}
        self._values: dict[tuple[tuple[str, str], ...], dict[str, list[float]]] = {}

    def _dimensions(self, labels: Labels) -> tuple[tuple[str, str], ...]:
        source = labels.get("source") or labels.get("region") or self.region
        destination = labels.get("destination")
        return (("region", source),) + ((("destination", destination),) if destination else ())

    def incr(self, name: str, labels: Labels, value: float = 1) -> None:
        dims = self._dimensions(labels)
        with self._lock:
            counts = self._counts.setdefault(dims, defaultdict(float))
            counts[name] += value

    def observe(self, name: str, labels: Labels, value: float) -> None:
        dims = self._dimensions(labels)
        with self._lock:
            self._values.setdefault(dims, defaultdict(list))[name].append(value)

    def flush(self) -> None:
        """Print what this invocation recorded (one EMF document per dimension set), then
        forget it."""
        with self._lock:
            counts, values = self._counts, self._values
            self._counts, self._values = {}, {}
        for dims in sorted(counts.keys() | values.keys()):
            # Dimensions first: Powertools prints early when a metric reaches 100 values.
            for dimension, label in dims:
                self.metrics.add_dimension(name=dimension, value=label)
            for name, total in sorted(counts.get(dims, {}).items()):
                self.metrics.add_metric(name=name, unit=MetricUnit.Count, value=total)
            for name, observed in sorted(values.get(dims, {}).items()):
                unit = MetricUnit.Seconds if name.endswith("_seconds") else MetricUnit.NoUnit
                for sample in observed:
                    self.metrics.add_metric(name=name, unit=unit, value=sample)
            self.metrics.flush_metrics()


# -- the function ----------------------------------------------------------------------------


class ReplicationFailedError(Exception):
    """Raised by the record handler so that Powertools reports the record to Lambda."""


class LambdaReplication:
    """One container's replicators; :meth:`handle` serves one invocation.

    ``replicator``: the one table's; or ``replicators``: each configured table's, by its name
    in this region (the table named by a stream ARN). With one, every event goes to it."""

    def __init__(
        self,
        *,
        metrics: EmfMetrics,
        replicator: Replicator | None = None,
        replicators: Mapping[str, Replicator] | None = None,
    ) -> None:
        if (replicator is None) == (replicators is None) or replicators == {}:
            raise TypeError("give replicator (one table) or replicators (by table name)")
        self.replicators = dict(replicators or {})
        if replicator is None and len(self.replicators) == 1:
            replicator = next(iter(self.replicators.values()))
        self.only = replicator
        self.metrics = metrics

    def replicator_for(self, records: list[Any]) -> Replicator:
        """The Replicator of the table whose stream the records come from (EventError when
        several tables are configured and it is none of them, or the ARN is missing)."""
        if self.only is not None:
            return self.only
        # NOTE: a record that is not an object says nothing of its stream: the Replicator
        # dead-letters it with the rest of the batch's table.
        arns = {record.get("eventSourceARN") for record in records if isinstance(record, Mapping)}
        names = {table_of_stream(arn) for arn in arns}
        region = next(iter(self.replicators.values())).region
        configured = ", ".join(sorted(self.replicators))
        if len(names) != 1 or None in names:
            raise EventError(
                "cannot tell which table's stream these records come from (eventSourceARN: "
                f"{', '.join(sorted(map(str, arns)))}); georep.toml configures several tables "
                f"in {region} ({configured}), and a batch comes from one table's stream"
            )
        (name,) = names
        assert name is not None
        found = self.replicators.get(name)
        if found is None:
            raise EventError(
                f"records from the stream of table {name}, which georep.toml does not configure "
                f"in {region} (its tables there: {configured}): add it to [[tables]] (name_in "
                "for another name in this region), or remove this event source mapping"
            )
        return found

    def handle(self, event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
        """Replicate the event's records; the ReportBatchItemFailures response."""
        try:
            records = stream_records(event)
            if not records:  # the console's and `sam local`'s test events
                return {"batchItemFailures": []}
            failed = self._replicate(self.replicator_for(records), records)

            def report(record: DynamoDBRecord) -> None:
                sequence = _sequence_of(record.raw_event)
                if sequence is not None and sequence in failed:
                    raise ReplicationFailedError(f"record {sequence}: {failed[sequence]}")

            # NOTE: raise_on_entire_batch_failure=False: when every record failed (a destination
            # is down), report them like any partial failure instead of raising. A raise is a
            # function error, which BisectBatchOnFunctionError answers by splitting a batch
            # that holds no poison record, and it would skip this response's checkpoint.
            processor = BatchProcessor(
                event_type=EventType.DynamoDBStreams, raise_on_entire_batch_failure=False
            )
            response = process_partial_response(
                event=event, record_handler=report, processor=processor, context=context
            )
            return _checked(response)
        finally:
            self.metrics.flush()

    def _replicate(self, replicator: Replicator, records: list[Any]) -> dict[str, str]:
        """Run the whole batch through the Replicator; failed records' sequence -> reason."""
        decoded: list[Any] = []
        results: list[RecordResult] = []
        for record in records:
            try:
                decoded.append(decode_record(record))
            except GeorepError as error:
                self.metrics.incr("records_read", {"region": replicator.region})
                results.append(replicator.refuse(record, error))
        failed: dict[str, str] = {}
        for result in results + replicator.process(decoded):
            if result.status != "failed":
                continue
            if not result.sequence:
                # Only a malformed record that could not be dead-lettered either; an empty
                # identifier would fail the whole batch anyway, so say why instead.
                raise RuntimeError(f"a record failed without a sequence number: {result.reason}")
            failed[result.sequence] = result.reason
        return failed

    def close(self) -> None:
        for replicator in {id(r): r for r in (self.only, *self.replicators.values()) if r}.values():
            replicator.close()


STREAM_SOURCE = "aws:dynamodb"

_STREAM_ARN = re.compile(r"^arn:[^:]+:dynamodb:[^:]*:[^:]*:table/([^/]+)/stream/.+$")


def table_of_stream(arn: object) -> str | None:
    """The table a stream ARN belongs to, or None if ``arn`` is not a stream ARN.

    >>> table_of_stream("arn:aws:dynamodb:eu-west-1:123456789012:table/orders/stream/2026-01")
    'orders'
    """
    match = _STREAM_ARN.match(arn) if isinstance(arn, str) else None
    return match.group(1) if match else None


def stream_records(event: object) -> list[Any]:
    """The records of a DynamoDB Streams event: ``{"Records": [...]}``, from aws:dynamodb.

    Anything else (an SQS or Kinesis batch, an API Gateway request, a scheduled event) raises
    EventError saying what was received: this function is wired to the wrong trigger. A record
    of the right source but the wrong shape is not the event's fault: it is dead-lettered.

    >>> stream_records({"Records": []})
    []
    """
    records = event.get("Records") if isinstance(event, Mapping) else None
    if not isinstance(records, list):
        raise EventError(
            'expected a DynamoDB Streams event ({"Records": [...]}), received ' + _described(event)
        )
    sources = {
        str(record["eventSource"])
        for record in records
        if isinstance(record, Mapping) and record.get("eventSource", STREAM_SOURCE) != STREAM_SOURCE
    }
    if sources:
        raise EventError(
            f"expected records from {STREAM_SOURCE} (a DynamoDB Streams event source mapping), "
            f"received records from {', '.join(sorted(sources))}"
        )
    return records


def _described(value: object) -> str:
    if isinstance(value, Mapping):
        names = sorted(map(str, value))
        shown = ", ".join(names[:8]) + (", ..." if len(names) > 8 else "")
        return f"an object with keys [{shown}]" if names else "an empty object"
    return f"a {type(value).__name__}: {repr(value)[:80]}"


def _checked(response: PartialItemFailureResponse) -> dict[str, Any]:
    failures = response.get("batchItemFailures") or []
    if any(not failure.get("itemIdentifier") for failure in failures):
        raise RuntimeError(f"refusing a batch response with an empty itemIdentifier: {failures}")
    return {"batchItemFailures": list(failures)}


def _sequence_of(record: Any) -> str | None:
    body = record.get("dynamodb") if isinstance(record, Mapping) else None
    value = body.get("SequenceNumber") if isinstance(body, Mapping) else None
    return value if isinstance(value, str) and value else None


def build(
    config: Config, *, region: str, session: boto3.Session | None = None
) -> LambdaReplication:
    """Clients (one per region, reused across invocations), tables and the Replicator.

    Every region's table is checked first (:func:`service.engine.preflight.check_tables`: keys,
    NEW_AND_OLD_IMAGES stream, TTL on ``_georep_ttl``), so the role needs
    ``dynamodb:DescribeTable`` and ``dynamodb:DescribeTimeToLive`` on every replica table; a
    region that cannot be reached at the cold start is skipped with a warning.

    The dead-letter and conflict tables (``[replication]``, in ``region``) must exist
    (``Consumer.setup``, ``georep init`` or the stack creates them): a function that creates
    tables on a cold start needs CreateTable rights it should not have. Merges are logged in
    the conflict table with one PutItem each (`service.engine.consumer.replicator_for`).
    """
    config.region(region)  # UnknownRegionError names the configured regions
    session = session or boto3.Session()
    clients = clients_for(config, "dynamodb", session=session, boto_config=BOTO_CONFIG)
    metrics = EmfMetrics(region=region)
    dead_letters = DynamoDeadLetters(
        clients[region], table_name=config.replication.dead_letter_table
    )
    replicators: dict[str, Replicator] = {}
    for scoped in config.scoped():  # every configured table, by its name in this region
        check_tables(scoped, clients=clients)
        replicators[scoped.table_name(region)] = replicator_for(
            scoped, region=region, clients=clients, dead_letters=dead_letters, metrics=metrics
        )
    return LambdaReplication(replicators=replicators, metrics=metrics)


def from_environment() -> LambdaReplication:
    """Build from ``GEOREP_CONFIG`` and ``GEOREP_REGION``.

    The region is never taken from a record's ``awsRegion`` or the stream ARN: emulators put
    a constant there (moto: "us-east-1"), and the configured region names are what the
    metadata uses.
    """
    region = os.environ.get(REGION_ENV, "").strip()
    if not region:
        raise ConfigError(
            f"{REGION_ENV} is not set: set it to the source region of this function's stream "
            "(one of the [[regions]] names in georep.toml)"
        )
    path = os.environ.get(CONFIG_ENV, "").strip() or DEFAULT_CONFIG
    return build(load_config(path), region=region)


_app: LambdaReplication | None = None
_app_lock = threading.Lock()


def app() -> LambdaReplication:
    """The container's LambdaReplication, built on first use and then reused."""
    global _app
    with _app_lock:
        if _app is None:
            _app = from_environment()
        return _app


def reset() -> None:
    """Forget the container's LambdaReplication (tests; a changed environment)."""
    global _app
    with _app_lock:
        if _app is not None:
            _app.close()
        _app = None


def handler(event: dict[str, Any], context: LambdaContext | None) -> dict[str, Any]:
    """Lambda handler for a DynamoDB Streams event source mapping with ReportBatchItemFailures.

    Returns ``{"batchItemFailures": [{"itemIdentifier": <SequenceNumber>}, ...]}`` (empty for
    an empty batch). Raises EventError for an event that is not a DynamoDB Streams event.
    """
    return app().handle(event, context)
