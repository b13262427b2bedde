"""Every error georep raises on purpose.

::

    GeorepError
    ├── MetadataError          an item's georep metadata is malformed or tampered with
    ├── RecordError            a stream record is malformed (missing images, bad shape)
    ├── ItemTooLargeError      an item would exceed DynamoDB's 400 KB once metadata is added
    ├── RequestRejectedError   a destination refused a request that retrying cannot fix
    ├── UnknownRegionError     a region not in the configuration was named
    ├── UsageError             a command's options contradict each other or its saved state
    ├── RuleError              a user merge rule raised or returned something invalid
    ├── ExpressionError        an application's expression DynamoDB would refuse (the SDK
    │                          raises it as botocore's ValidationException ClientError)
    ├── BatchWriteError        some writes of an SDK batch failed (each is its own write)
    ├── LawViolation           a merge rule breaks a law (see resolvers.check)
    ├── EventError             a Lambda invocation event that is not a DynamoDB Streams event
    ├── ConfigError            georep.toml is invalid (service/config.py): exit 2
    ├── PreflightError         a region's table cannot work as a replica
    │                          (service/engine/preflight.py)
    └── ConsumerHaltedError    the stream consumer met what waiting cannot fix (credentials
                               missing or rejected, its table deleted): ``georep run`` exits 1

For a record these are permanent: retrying cannot fix them. A record that raises one is
dead-lettered with the message as its reason (raised at one destination, the record is still
written to the others); the consumer keeps going. The pipeline treats any other exception
(throttling past botocore's retries, a network error, a destination table that is not there)
as transient: the record is reported failed and retried (``service.engine.pipeline.is_permanent``).
ConfigError, PreflightError and ConsumerHaltedError are about the process, never one record;
ExpressionError and BatchWriteError are the application SDK's (service/surfaces/sdk.py).
"""

from __future__ import annotations


class GeorepError(Exception):
    """Base class: a clear, typed reason why a change cannot be applied."""


class MetadataError(GeorepError):
    """Malformed or tampered metadata (wrong types, negative counters, unknown regions...)."""


class RecordError(GeorepError):
    """A stream record that does not have the shape DynamoDB Streams delivers."""


class ItemTooLargeError(GeorepError):
    """The item plus its metadata would exceed DynamoDB's 400 KB item limit."""


class RequestRejectedError(GeorepError):
    """A destination refused the request itself (a ValidationException, an AccessDenied): the
    same request sent again is refused again. service/adapters/dynamo.py lists the error codes."""


class UnknownRegionError(GeorepError):
    """A region that is not part of the configured replica set."""


class UsageError(GeorepError):
    """A command was given options that cannot work together (``backfill --from R --to R``),
    or that contradict what an earlier run saved; the message says which and what to do.
    ``georep`` exits 2."""


class RuleError(GeorepError):
    """A user merge rule raised, or returned a value that is not a valid item."""


class ExpressionError(GeorepError):
    """An UpdateExpression, ConditionExpression or ProjectionExpression that DynamoDB would
    refuse (a syntax error, an undefined or unused placeholder, an operand of the wrong type,
    a document path that does not exist). The message follows DynamoDB's own. The SDK raises
    it to the application as botocore's ``ClientError`` with code ``ValidationException``,
    this error as its cause, as plain boto3 would."""


class RawWritePendingError(GeorepError):
    """Under merge rules, a write through the SDK found the item holding a raw write (plain
    boto3) that georep has not adopted yet, and the adoption did not come within the wait: the
    consumer of this region is behind, stopped, or cannot adopt the item (its record was
    dead-lettered, or the item predates the stream: `georep backfill`). Nothing was written;
    retry once the consumer has caught up (docs/design.md, "Raw writes under merge rules")."""


class BatchWriteError(GeorepError):
    """Some writes of an SDK batch failed; the others were written (each request of a batch is
    its own conditional write). ``failures`` holds each failed request with its exception."""

    def __init__(self, message: str, *, failures: list[tuple[object, BaseException]]) -> None:
        super().__init__(message)
        self.failures = failures


class LawViolation(GeorepError):
    """A merge rule is not deterministic, commutative, associative or idempotent.

    ``counterexample`` holds the minimal inputs Hypothesis found.
    """

    def __init__(self, message: str, *, law: str, counterexample: object) -> None:
        super().__init__(message)
        self.law = law
        self.counterexample = counterexample


class ConsumerHaltedError(GeorepError):
    """The consumer cannot go on: retrying would not help (service/engine/consumer.py says which
    errors those are). Every other AWS error is counted, logged and retried with backoff."""


class EventError(GeorepError):
    """The Lambda handler was invoked with something other than a DynamoDB Streams event; the
    message says what it received."""
