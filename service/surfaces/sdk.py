"""Writing through georep: what an application uses instead of boto3's Table.

Two forms over one implementation. The resource form takes and returns plain Python values
(``str``, ``Decimal``, ``set``, ``bytes``, ``dict``, ``list``...) and boto3's condition
objects, with the names of ``boto3.resource("dynamodb").Table``::

    from boto3.dynamodb.conditions import Attr, Key
    table = GeorepTable.resource(client, config=config, region="eu-west-1")
    table.put_item(Item={"pk": "user#1", "name": "Ada", "visits": Decimal(0)})
    table.update_item(
        Key={"pk": "user#1"},
        UpdateExpression="SET visits = visits + :one ADD tags :t",
        ConditionExpression=Attr("name").exists(),
        ExpressionAttributeValues={":one": 1, ":t": {"admin"}},
    )
    table.get_item(Key={"pk": "user#1"})["Item"]
    table.query(KeyConditionExpression=Key("pk").eq("user#1"))["Items"]
    with table.batch_writer() as batch:
        batch.put_item(Item={"pk": "user#2"})
        batch.delete_item(Key={"pk": "user#3"})

The low-level form (this class) takes and returns DynamoDB JSON (``{"S": "x"}``) with the
names of the boto3 client's operations, minus ``TableName`` (the table is the region's
replica table): ``put_item``, ``get_item``, ``update_item``, ``delete_item``, ``query``,
``scan``, ``batch_write_item``, ``batch_writer``, ``get_paginator("query" | "scan")``. The
short ``put``, ``get``, ``delete`` and ``put_if_unchanged`` return georep's
:class:`~service.core.version.Version` instead of a response.

**Every write is a stamped write**: a consistent read of the item, the new version stamped
over it in the core (version vector, HLC, write id, digest; service/core/writes.py), and one
conditional PutItem of the whole version whose precondition is that the item is still the one
read. If another write got there first, it reads again and retries (up to 50 times). An
``update_item`` is applied by the core to the item read (service/core/expressions) and written
whole, so the resolvers see exactly which attributes changed: under field rules only the
attributes whose values the update changed get a new field stamp.

**Conditions.** An application's ``ConditionExpression`` is judged against the item as the
application sees it (a tombstone is no item) and, when that is an item, AND-ed into the
request's ConditionExpression with its placeholders renamed (``#app_...``, ``:app_...``) so
that they cannot collide with georep's. A condition that fails raises botocore's
``ConditionalCheckFailedException`` (``client.exceptions.ConditionalCheckFailedException``),
with the item as the application sees it under ``Item`` when
``ReturnValuesOnConditionCheckFailure="ALL_OLD"``; it is never retried. An expression
DynamoDB would refuse raises ``ClientError`` with code ``ValidationException``.

**Reads** hide tombstones and georep's attributes (``_georep``, ``_georep_ttl``). Query and
scan drop tombstones after DynamoDB returns a page, as a FilterExpression does: a page may
hold fewer than ``Limit`` items, or none and a ``LastEvaluatedKey``; ``ProjectionExpression``
is applied here, on the whole item read (a tombstone is recognised by its data's digest).
An ``IndexName`` query sees tombstones hidden only where the index projects every attribute
(ALL); under last-writer-wins and version counters a tombstone holds only its keys, so an
index keyed on a data attribute never holds one.

**Batches.** DynamoDB's BatchWriteItem cannot carry a condition, so a batch cannot carry
georep's precondition: each request of ``batch_write_item`` (and of ``batch_writer()``,
boto3's own BatchWriter over it) is its own stamped conditional write, done concurrently
(``batch_concurrency`` at a time; requests for one key in order). Throttled requests come
back in ``UnprocessedItems``; any other failure raises ``BatchWriteError`` once the rest are
done.

georep's own attributes are not application data. :meth:`put` drops the ``_georep`` that an
item read with plain boto3 carries (the SDK reads the current item itself, so the new version
succeeds it), and drops ``_georep_ttl`` when it comes with a tombstone's ``_georep`` (writing
over a deleted item brings it back, and it must not expire). Any other ``_georep_ttl`` is
refused: the table's TTL attribute collects tombstones, and the SDK does not expire live
items. So a read-modify-write through boto3 works::

    item = client.get_item(TableName="orders", Key={"pk": {"S": "user#1"}})["Item"]
    item["name"] = {"S": "Ada L."}
    table.put(item)   # a stamped version that succeeds the one read

:meth:`put` succeeds whatever the table holds when it writes, which may be newer than what the
application read. A read-modify-write that must succeed exactly what it read (under merge
rules a write must be an inflation of what it replaced: docs/design.md, "Deletes under merge
rules") uses :meth:`put_if_unchanged`, which writes nothing and returns None if the item
changed since::

    while (version := table.put_if_unchanged(changed(item), read=item)) is None:
        item = client.get_item(TableName="orders", Key=key, ConsistentRead=True).get("Item")

(or ``update_item``, which reads and retries itself).
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any

import ulid
from boto3.dynamodb.table import BatchWriter
from botocore.exceptions import ClientError

from service.adapters.dynamo import DynamoTable
from service.config import Config
from service.core import hlc
from service.core.apply import precondition_for
from service.core.conditions import precondition_holds
from service.core.expressions import (
    Used,
    check_all_used,
    parse_condition,
    parse_projection,
    parse_update,
    placeholders,
    project,
)
from service.core.places import KeyState, commit_for, read_key
from service.core.stored import Settings, read_item
from service.core.values import canonical_bytes
from service.core.version import META_ATTR, TTL_ATTR, Version, decode_meta
from service.core.writes import (
    ApplicationCondition,
    Change,
    Delete,
    Nothing,
    Pending,
    Plan,
    Planned,
    Put,
    Refused,
    Write,
    key_of,
    plan,
    visible,
)
from service.errors import BatchWriteError, ExpressionError, MetadataError, RawWritePendingError

if TYPE_CHECKING:
    from service.surfaces.sdk_resource import ResourceTable

ATTEMPTS = 50
# Under merge rules, how long a write over a raw item waits for its adoption (seconds between
# reads; about 10 s in all, a consumer's few polls), then RawWritePendingError.
PENDING_WAITS = (0.05, 0.1, 0.2, 0.4, 0.8, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 1.0)
# Errors a batch request reports in UnprocessedItems (try again later), as BatchWriteItem does.
_THROTTLED = frozenset(
    {"ProvisionedThroughputExceededException", "ThrottlingException", "RequestLimitExceeded"}
)


class Clock:
    """A process-wide hybrid logical clock (thread-safe). Time is injectable for tests."""

    def __init__(self, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.now_ms, self.last, self.lock = now_ms, 0, threading.Lock()

    def tick(self) -> int:
        with self.lock:
            self.last = hlc.tick(self.last, self.now_ms())
            return self.last

    def observe(self, remote: int) -> None:
        with self.lock:
            self.last = hlc.observe(self.last, remote, self.now_ms())


def application_data(item: Mapping[str, Any], *, settings: Settings) -> dict[str, Any]:
    """``item`` without georep's attributes, as :meth:`GeorepTable.put` writes it.

    ``_georep`` is dropped; ``_georep_ttl`` too if the ``_georep`` beside it marks a
    tombstone (the item was read deleted). Raises MetadataError for any other ``_georep_ttl``.
    """
    data = dict(item)
    copied = data.pop(META_ATTR, None)
    expiry = data.pop(TTL_ATTR, None)
    if expiry is not None and not _is_tombstone(copied, settings=settings):
        raise MetadataError(
            f"{TTL_ATTR} is georep's tombstone expiry, not application data: remove it from "
            "the item (the table's TTL collects deleted items only; GeorepTable does not "
            "expire live items)"
        )
    return data


def _is_tombstone(meta_attr: Any, *, settings: Settings) -> bool:
    if meta_attr is None:
        return False
    try:
        return decode_meta(meta_attr, regions=settings.region_set).deleted
    except MetadataError:
        return False


def _code(error: ClientError) -> str:
    return str(error.response.get("Error", {}).get("Code", ""))


@contextlib.contextmanager
def _validation(operation: str) -> Iterator[None]:
    """An expression DynamoDB would refuse raises what boto3 raises for it."""
    try:
        yield
    except ExpressionError as error:
        raise ClientError(
            {"Error": {"Code": "ValidationException", "Message": str(error)}}, operation
        ) from error


def _choice(value: str | None, allowed: tuple[str, ...], *, name: str) -> str:
    chosen = value or allowed[0]
    if chosen not in allowed:
        raise ExpressionError(f"{name} must be one of {', '.join(allowed)}, got {chosen!r}")
    return chosen


class GeorepTable:
    """One region's replica table, written through georep (the module docstring says how).

    ``table``: which configured table, by its ``[[tables]]`` name (needed with several; with
    one, it may be left out)."""

    def __init__(
        self,
        client: Any,
        *,
        config: Config,
        region: str,
        table: str | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
        batch_concurrency: int = 16,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        config = config.for_table(table)  # ConfigError: unknown, or several and none named
        self.client = client
        self.sleep = sleep
        self.region = region
        self.settings = settings or config.settings()
        self.horizon_ms = config.horizon_ms
        self.table_name = config.table_name(region)
        self.clock = clock or Clock()
        self.batch_concurrency = batch_concurrency
        # With the tombstone store (issue 22) a write reads and commits both places, as the
        # consumer does: a delete removes the item, and its tombstone lives in the store.
        self.places: DynamoTable | None = None
        if self.settings.tombstone_store:
            self.places = DynamoTable(
                client,
                table_name=self.table_name,
                key_attributes=self.settings.key_attributes,
                store_table=config.replication.tombstone_table,
                name=config.table.name,
            )

    @classmethod
    def resource(
        cls,
        client: Any,
        *,
        config: Config,
        region: str,
        table: str | None = None,
        clock: Clock | None = None,
        settings: Settings | None = None,
        batch_concurrency: int = 16,
    ) -> ResourceTable:
        """The same table in boto3's resource form (Python values, condition objects)."""
        from service.surfaces.sdk_resource import ResourceTable

        return ResourceTable(
            cls(
                client,
                config=config,
                region=region,
                table=table,
                clock=clock,
                settings=settings,
                batch_concurrency=batch_concurrency,
            )
        )

    # ---- the short form: data in, georep's Version out ------------------------------------

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The item's data, or None if absent or deleted (a consistent read)."""
        return visible(read_item(self._read(key), settings=self.settings))

    def put(self, item: Mapping[str, Any]) -> Version:
        """Write ``item`` as a new version (see the module docstring for ``_georep`` and
        ``_georep_ttl`` in ``item``)."""
        outcome = self._write(Put(application_data(item, settings=self.settings)), None)
        assert isinstance(outcome, Planned)
        return outcome.version

    def put_if_unchanged(
        self, item: Mapping[str, Any], *, read: Mapping[str, Any] | None
    ) -> Version | None:
        """Write ``item`` as a new version succeeding exactly ``read`` (the item as the
        application read it with plain boto3; None: it was absent), or write nothing and return
        None if the item changed since: read again and retry. (Under merge rules also while
        ``read`` is a raw write georep has not adopted yet: retry after its adoption.)

        "Changed" is judged as georep's own writes are, on ``_georep`` alone (docs/design.md):
        a raw write that copied ``_georep`` back is not noticed, and is adopted and merged."""
        data = application_data(item, settings=self.settings)
        outcome, _ = self._attempt(Put(data), dict(read) if read is not None else None, None)
        return outcome.version if isinstance(outcome, Planned) else None

    def delete(self, key: Mapping[str, Any]) -> Version | None:
        """Delete the item (a tombstone); None if there was nothing to delete."""
        outcome = self._write(Delete(dict(key)), None)
        return outcome.version if isinstance(outcome, Planned) else None

    # ---- the boto3 client's operations, in DynamoDB JSON -----------------------------------

    def get_item(
        self,
        *,
        Key: Mapping[str, Any],
        ConsistentRead: bool = False,
        ProjectionExpression: str | None = None,
        ExpressionAttributeNames: Mapping[str, str] | None = None,
    ) -> dict[str, Any]:
        """GetItem: ``{"Item": ...}`` without georep's attributes, or ``{}`` if the item is
        absent or deleted."""
        with _validation("GetItem"):
            paths = None
            if ProjectionExpression is not None:
                used = Used()
                paths = parse_projection(
                    ProjectionExpression, names=ExpressionAttributeNames, used=used
                )
                check_all_used([used], names=ExpressionAttributeNames, values=None)
            elif ExpressionAttributeNames is not None:
                check_all_used([], names=ExpressionAttributeNames, values=None)
        item = self._read(Key, consistent=ConsistentRead)
        found = visible(read_item(item, settings=self.settings))
        if found is None:
            return {}
        return {"Item": project(found, paths) if paths is not None else found}

    def put_item(
        self,
        *,
        Item: Mapping[str, Any],
        ConditionExpression: str | None = None,
        ExpressionAttributeNames: Mapping[str, str] | None = None,
        ExpressionAttributeValues: Mapping[str, Any] | None = None,
        ReturnValues: str | None = None,
        ReturnValuesOnConditionCheckFailure: str | None = None,
    ) -> dict[str, Any]:
        """PutItem as a stamped write. ``ReturnValues``: NONE or ALL_OLD (what the
        application saw before)."""
        with _validation("PutItem"):
            returned = _choice(ReturnValues, ("NONE", "ALL_OLD"), name="ReturnValues")
            condition = self._condition(
                ConditionExpression, [], ExpressionAttributeNames, ExpressionAttributeValues
            )
            data = application_data(Item, settings=self.settings)
            outcome = self._write(
                Put(data),
                condition,
                operation="PutItem",
                on_failure=ReturnValuesOnConditionCheckFailure,
            )
        assert isinstance(outcome, Planned)
        return _attributes(outcome.old if returned == "ALL_OLD" else None)

    def update_item(
        self,
        *,
        Key: Mapping[str, Any],
        UpdateExpression: str,
        ConditionExpression: str | None = None,
        ExpressionAttributeNames: Mapping[str, str] | None = None,
        ExpressionAttributeValues: Mapping[str, Any] | None = None,
        ReturnValues: str | None = None,
        ReturnValuesOnConditionCheckFailure: str | None = None,
    ) -> dict[str, Any]:
        """UpdateItem, applied by the core to the item read and written whole as a stamped
        write (an absent or deleted item starts from its key, as UpdateItem creates one).
        ``ReturnValues``: NONE, ALL_OLD, UPDATED_OLD, ALL_NEW or UPDATED_NEW."""
        with _validation("UpdateItem"):
            returned = _choice(
                ReturnValues,
                ("NONE", "ALL_OLD", "UPDATED_OLD", "ALL_NEW", "UPDATED_NEW"),
                name="ReturnValues",
            )
            used = Used()
            update = parse_update(
                UpdateExpression,
                names=ExpressionAttributeNames,
                values=ExpressionAttributeValues,
                used=used,
            )
            condition = self._condition(
                ConditionExpression, [used], ExpressionAttributeNames, ExpressionAttributeValues
            )
            outcome = self._write(
                Change(dict(Key), update),
                condition,
                operation="UpdateItem",
                on_failure=ReturnValuesOnConditionCheckFailure,
            )
        assert isinstance(outcome, Planned)
        old, new = outcome.old, outcome.new
        match returned:
            case "ALL_OLD":
                return _attributes(old)
            case "ALL_NEW":
                return _attributes(new)
            case "UPDATED_OLD":
                return _attributes(project(old, update.targets()) if old else None)
            case "UPDATED_NEW":
                return _attributes(project(new, update.targets()) if new else None)
        return {}

    def delete_item(
        self,
        *,
        Key: Mapping[str, Any],
        ConditionExpression: str | None = None,
        ExpressionAttributeNames: Mapping[str, str] | None = None,
        ExpressionAttributeValues: Mapping[str, Any] | None = None,
        ReturnValues: str | None = None,
        ReturnValuesOnConditionCheckFailure: str | None = None,
    ) -> dict[str, Any]:
        """DeleteItem as a stamped write (a tombstone). ``ReturnValues``: NONE or ALL_OLD."""
        with _validation("DeleteItem"):
            returned = _choice(ReturnValues, ("NONE", "ALL_OLD"), name="ReturnValues")
            condition = self._condition(
                ConditionExpression, [], ExpressionAttributeNames, ExpressionAttributeValues
            )
            outcome = self._write(
                Delete(dict(Key)),
                condition,
                operation="DeleteItem",
                on_failure=ReturnValuesOnConditionCheckFailure,
            )
        old = outcome.old if isinstance(outcome, Planned) else None
        return _attributes(old if returned == "ALL_OLD" else None)

    def query(
        self,
        *,
        KeyConditionExpression: str,
        **options: Any,
    ) -> dict[str, Any]:
        """Query: a page of items without tombstones or georep's attributes. Options as the
        client's: FilterExpression, ProjectionExpression, ExpressionAttributeNames,
        ExpressionAttributeValues, IndexName, Select (ALL_ATTRIBUTES, SPECIFIC_ATTRIBUTES,
        COUNT), Limit, ExclusiveStartKey, ScanIndexForward, ConsistentRead."""
        return self._page(
            "Query", {"KeyConditionExpression": KeyConditionExpression}, options, _QUERY
        )

    def scan(self, **options: Any) -> dict[str, Any]:
        """Scan: a page, as :meth:`query` (Segment and TotalSegments for a parallel scan)."""
        return self._page("Scan", {}, options, _SCAN)

    def get_paginator(self, operation: str) -> Paginator:
        """``get_paginator("query")`` or ``("scan")``: ``.paginate(**options)`` yields every
        page, following ``LastEvaluatedKey``, as a boto3 client's paginators do."""
        if operation not in ("query", "scan"):
            raise ValueError(f"a GeorepTable paginates query and scan, not {operation!r}")
        return Paginator(getattr(self, operation))

    def batch_write_item(self, *, RequestItems: Mapping[str, list[Any]]) -> dict[str, Any]:
        """BatchWriteItem, each request (``{"PutRequest": {"Item": ...}}`` or
        ``{"DeleteRequest": {"Key": ...}}``) its own stamped conditional write: DynamoDB
        batches cannot carry conditions, so a batch cannot carry georep's precondition.
        They run concurrently, ``batch_concurrency`` at a time, requests for one key in the
        order given. Throttled ones are returned in ``UnprocessedItems``; any other failure
        raises :class:`~service.errors.BatchWriteError` after the others are done."""
        unknown = set(RequestItems) - {self.table_name}
        if unknown:
            raise ClientError(
                {
                    "Error": {
                        "Code": "ValidationException",
                        "Message": f"this GeorepTable writes {self.table_name} only, "
                        f"not {sorted(unknown)}",
                    }
                },
                "BatchWriteItem",
            )
        requests = list(RequestItems.get(self.table_name, []))
        lanes: dict[bytes, list[Any]] = {}
        with _validation("BatchWriteItem"):
            for request in requests:
                key = canonical_bytes(self._key_of_request(request))
                lanes.setdefault(key, []).append(request)
        unprocessed: list[Any] = []
        failures: list[tuple[object, BaseException]] = []
        lock = threading.Lock()

        def run(lane: list[Any]) -> None:
            for at, request in enumerate(lane):
                try:
                    self._batch_one(request)
                except ClientError as error:
                    with lock:
                        if _code(error) not in _THROTTLED:
                            failures.append((request, error))
                            at += 1
                        unprocessed.extend(lane[at:])
                    return
                except Exception as error:
                    with lock:
                        failures.append((request, error))
                        unprocessed.extend(lane[at + 1 :])
                    return

        with ThreadPoolExecutor(max_workers=max(1, self.batch_concurrency)) as pool:
            list(pool.map(run, lanes.values()))
        if failures:
            error = BatchWriteError(
                f"{len(failures)} of {len(requests)} batch requests failed: {failures[0][1]}",
                failures=failures,
            )
            raise error from failures[0][1]
        return {"UnprocessedItems": {self.table_name: unprocessed} if unprocessed else {}}

    def batch_writer(
        self, overwrite_by_pkeys: list[str] | None = None, *, flush_amount: int = 25
    ) -> BatchWriter:
        """boto3's own BatchWriter over :meth:`batch_write_item`: ``put_item(Item=...)`` and
        ``delete_item(Key=...)`` are buffered and flushed ``flush_amount`` at a time, each as
        its own stamped write."""
        # NOTE: BatchWriter calls only its client's batch_write_item, which this table has.
        client: Any = self
        return BatchWriter(
            self.table_name,
            client,
            flush_amount=flush_amount,
            overwrite_by_pkeys=overwrite_by_pkeys,
        )

    # ---- the write path -----------------------------------------------------------------------

    def _condition(
        self,
        expression: str | None,
        others: list[Used],
        names: Mapping[str, str] | None,
        values: Mapping[str, Any] | None,
    ) -> ApplicationCondition | None:
        """The application's condition, parsed; every placeholder used by some expression."""
        used = Used()
        parsed = (
            parse_condition(expression, names=names, values=values, used=used)
            if expression is not None
            else None
        )
        check_all_used([*others, used], names=names, values=values)
        if expression is None or parsed is None:
            return None
        return ApplicationCondition(expression, names, values, parsed)

    def _write(
        self,
        write: Write,
        condition: ApplicationCondition | None,
        *,
        operation: str = "PutItem",
        on_failure: str | None = None,
    ) -> Nothing | Planned:
        key = key_of(write, settings=self.settings)
        current_item = self._read(key)
        waits = iter(PENDING_WAITS)
        attempts = 0
        while attempts < ATTEMPTS:
            outcome, current_item = self._attempt(write, current_item, condition)
            if isinstance(outcome, Pending):
                # Under merge rules: wait for this region's consumer to adopt the raw write.
                pause = next(waits, None)
                if pause is None:
                    raise RawWritePendingError(
                        f"{self.table_name} in {self.region}: the item {key} holds a raw write "
                        "georep has not adopted yet; under merge rules a write over it waits "
                        f"for the adoption, which did not come in {sum(PENDING_WAITS):.0f} s "
                        "(is this region's consumer running and caught up?)"
                    )
                self.sleep(pause)
                current_item = self._read(key)
                continue
            if isinstance(outcome, Refused):
                raise self._condition_failed(operation, outcome.seen, on_failure)
            if outcome is not None:
                return outcome
            attempts += 1
        raise RuntimeError(f"could not write {key}: {ATTEMPTS} concurrent writes won first")

    def _attempt(
        self, write: Write, current_item: Any, condition: ApplicationCondition | None
    ) -> tuple[Plan | None, dict[str, Any] | None]:
        """One write over ``current_item``: (the plan, written or refused or nothing to do,
        None) or (None, what the table holds instead, when another write got there first)."""
        state = None
        if self.places is not None:
            key = key_of(write, settings=self.settings)
            state = read_key(current_item, self.places.get_stored(key), settings=self.settings)
            current = state.current
        else:
            current = read_item(current_item, settings=self.settings)
        meta = getattr(getattr(current, "version", None), "meta", None)
        if meta is not None:
            self.clock.observe(meta.hlc)
        outcome = plan(
            current,
            write,
            condition=condition,
            region=self.region,
            now_hlc=self.clock.tick(),
            write_id=str(ulid.new()),
            settings=self.settings,
            horizon_ms=self.horizon_ms,
        )
        if not isinstance(outcome, Planned):
            return outcome, None
        if state is not None:
            return self._commit(write, state, outcome, condition)
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=outcome.item,
                ReturnValuesOnConditionCheckFailure="ALL_OLD",
                **outcome.request,
            )
        except ClientError as error:
            if _code(error) != "ConditionalCheckFailedException":
                raise
            found: Any = error.response.get("Item")
            now = dict(found) if found else None
            sent_condition = condition is not None and outcome.old is not None
            partition_key = self.settings.key_attributes[0]
            if sent_condition and precondition_holds(
                precondition_for(current), now, partition_key=partition_key
            ):
                # georep's part held on the item DynamoDB judged, so the application's failed.
                return Refused(visible(read_item(now, settings=self.settings))), None
            return None, now
        return outcome, None

    def _commit(
        self,
        write: Write,
        state: KeyState,
        outcome: Planned,
        condition: ApplicationCondition | None,
    ) -> tuple[Plan | None, dict[str, Any] | None]:
        """`_attempt`'s write with the tombstone store: the table's and the store's steps
        (`commit_for`) in one request, the application's condition on the table's."""
        assert self.places is not None
        key = key_of(write, settings=self.settings)
        steps = commit_for(
            state, outcome.version, local=True, table=self.places.name, settings=self.settings
        )
        sent_condition = condition is not None and outcome.old is not None
        application = None
        if condition is not None and sent_condition:
            application = {
                "expression": condition.expression,
                "names": condition.names,
                "values": condition.values,
            }
        result = self.places.commit(key, table=steps[0], store=steps[1], application=application)
        if result.ok:
            return outcome, None
        now = result.table if "table" in result.failed else state.item
        if (
            sent_condition
            and result.failed == frozenset({"table"})
            and precondition_holds(
                precondition_for(state.table), now, partition_key=self.settings.key_attributes[0]
            )
        ):
            # georep's part held on the item DynamoDB judged, so the application's failed.
            return Refused(visible(read_item(now, settings=self.settings))), None
        return None, self._read(key)

    def _condition_failed(
        self, operation: str, seen: Mapping[str, Any] | None, on_failure: str | None
    ) -> ClientError:
        """botocore's own ConditionalCheckFailedException, as DynamoDB would send it."""
        response: dict[str, Any] = {
            "Error": {
                "Code": "ConditionalCheckFailedException",
                "Message": "The conditional request failed",
            }
        }
        if on_failure == "ALL_OLD" and seen is not None:
            response["Item"] = dict(seen)
        error: ClientError = self.client.exceptions.ConditionalCheckFailedException(
            response, operation
        )
        return error

    def _read(self, key: Mapping[str, Any], *, consistent: bool = True) -> dict[str, Any] | None:
        response = self.client.get_item(
            TableName=self.table_name, Key=dict(key), ConsistentRead=consistent
        )
        item = response.get("Item")
        return dict(item) if item is not None else None

    def _key_of_request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        if "PutRequest" in request:
            return key_of(Put(request["PutRequest"]["Item"]), settings=self.settings)
        if "DeleteRequest" in request:
            return key_of(Delete(request["DeleteRequest"]["Key"]), settings=self.settings)
        raise ExpressionError(f"a batch request is a PutRequest or a DeleteRequest: {request}")

    def _batch_one(self, request: Mapping[str, Any]) -> None:
        if "PutRequest" in request:
            self.put(request["PutRequest"]["Item"])
        else:
            self.delete(request["DeleteRequest"]["Key"])

    # ---- reads --------------------------------------------------------------------------------

    def _page(
        self,
        operation: str,
        request: dict[str, Any],
        options: Mapping[str, Any],
        allowed: frozenset[str],
    ) -> dict[str, Any]:
        unknown = set(options) - allowed
        if unknown:
            raise TypeError(
                f"{operation.lower()}() got unsupported option(s) {sorted(unknown)}; "
                f"supported: {sorted(allowed)}"
            )
        names: Mapping[str, str] | None = options.get("ExpressionAttributeNames")
        values: Mapping[str, Any] | None = options.get("ExpressionAttributeValues")
        sent = {**request, **{k: v for k, v in options.items() if k in _PASSED_ON}}
        with _validation(operation):
            select = _choice(
                options.get("Select"),
                ("ALL_ATTRIBUTES", "SPECIFIC_ATTRIBUTES", "COUNT", "ALL_PROJECTED_ATTRIBUTES"),
                name="Select",
            )
            expressions = [
                sent[name]
                for name in ("KeyConditionExpression", "FilterExpression")
                if sent.get(name) is not None
            ]
            used = [placeholders(text) for text in expressions]
            paths = None
            if options.get("ProjectionExpression") is not None:
                projection_used = Used()
                paths = parse_projection(
                    options["ProjectionExpression"], names=names, used=projection_used
                )
                used.append(projection_used)
            check_all_used(used, names=names, values=values)
        # NOTE: the projection is applied here, on whole items: a tombstone is told by its
        # data's digest, so DynamoDB must return every attribute.
        sent_names = {n for u in used[: len(expressions)] for n in u.names}
        sent_values = {v for u in used[: len(expressions)] for v in u.values}
        if sent_names and names:
            sent["ExpressionAttributeNames"] = {k: names[k] for k in sent_names}
        if sent_values and values:
            sent["ExpressionAttributeValues"] = {k: values[k] for k in sent_values}
        call = self.client.query if operation == "Query" else self.client.scan
        response = call(TableName=self.table_name, **sent)
        items = []
        for item in response.get("Items", []):
            found = visible(read_item(item, settings=self.settings))
            if found is not None:
                items.append(project(found, paths) if paths is not None else found)
        page: dict[str, Any] = {"Count": len(items), "ScannedCount": response["ScannedCount"]}
        if select != "COUNT":
            page["Items"] = items
        if "LastEvaluatedKey" in response:
            page["LastEvaluatedKey"] = response["LastEvaluatedKey"]
        return page


_PASSED_ON = frozenset(
    {
        "FilterExpression",
        "IndexName",
        "Limit",
        "ExclusiveStartKey",
        "ScanIndexForward",
        "ConsistentRead",
        "Segment",
        "TotalSegments",
    }
)
_COMMON = frozenset(
    {
        "FilterExpression",
        "ProjectionExpression",
        "ExpressionAttributeNames",
        "ExpressionAttributeValues",
        "IndexName",
        "Select",
        "Limit",
        "ExclusiveStartKey",
        "ConsistentRead",
    }
)
_QUERY = _COMMON | {"ScanIndexForward"}
_SCAN = _COMMON | {"Segment", "TotalSegments"}


def _attributes(item: Mapping[str, Any] | None) -> dict[str, Any]:
    return {"Attributes": dict(item)} if item else {}


class Paginator:
    """Every page of a query or scan (``paginate(**options)``), following LastEvaluatedKey."""

    def __init__(self, operation: Callable[..., dict[str, Any]]) -> None:
        self.operation = operation

    def paginate(self, **options: Any) -> Iterator[dict[str, Any]]:
        while True:
            page = self.operation(**options)
            yield page
            if "LastEvaluatedKey" not in page:
                return
            options = {**options, "ExclusiveStartKey": page["LastEvaluatedKey"]}
