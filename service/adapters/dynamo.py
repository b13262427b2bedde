"""The Table port over boto3's low-level DynamoDB client (real AWS or an emulator alike).

Writes are always conditional, never blind: a core precondition becomes the condition that
`service.core.conditions.condition_for` builds (the in-memory table evaluates the very same
one), and a failed condition is translated into a domain outcome (``WriteResult(ok=False,
current=<the item now>)`` from ReturnValuesOnConditionCheckFailure=ALL_OLD), not an exception
that leaks. Other errors are classified here, in the one place that knows AWS's error codes: a
request DynamoDB refuses as such becomes a permanent ``RequestRejectedError`` (or
``ItemTooLargeError``); anything else stays as botocore raised it, after botocore's own
retries, and the pipeline treats it as transient.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

from botocore.exceptions import BotoCoreError, ClientError

from service.adapters.memory import key_string
from service.core.apply import Precondition
from service.core.conditions import condition_for, with_application
from service.core.groups import Entry, check_group
from service.core.tombstones import STORE_KEY, store_key
from service.core.version import META_ATTR, TTL_ATTR
from service.errors import GeorepError, ItemTooLargeError, RequestRejectedError
from service.ports import CommitResult, Step, WriteResult

T = TypeVar("T")
U = TypeVar("U")

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient


# Requests DynamoDB refuses for what they are: the same request is refused again, whatever the
# wait. NOTE: ResourceNotFoundException is not here on purpose: a destination table that is not
# there yet (being created, restored, a region being added) is waited for, so its records stay
# in the stream, in order, instead of piling up in the dead-letter table.
REJECTIONS = frozenset(
    {
        "ValidationException",  # an item or key the table cannot take (type, size, empty set)
        "AccessDeniedException",  # IAM does not allow this action on this table
        "ItemCollectionSizeLimitExceededException",  # a local secondary index's 10 GB is full
    }
)


class DynamoTable:
    """One region's replica table. ``client`` is reused (its adaptive retry limiter lives in it)."""

    def __init__(
        self,
        client: DynamoDBClient,
        *,
        table_name: str,
        key_attributes: tuple[str, ...],
        store_table: str | None = None,
        name: str | None = None,
    ):
        """``store_table``: the region's tombstone store (issue 22); ``name``: this table's
        name in georep's configuration, which keys its items in the store (the physical
        ``table_name`` may differ between regions)."""
        # NOTE: typed as Any inside: the stubs' TypedDicts add nothing over the wire format the
        # core already validates, and would need a cast at every call.
        self.client: Any = client
        self.table_name = table_name
        self.key_attributes = key_attributes
        self.store_table = store_table
        self.name = name or table_name

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            response = self.client.get_item(
                TableName=self.table_name, Key=dict(key), ConsistentRead=True
            )
        except ClientError as error:
            self._reraise(error)
        item = response.get("Item")
        return dict(item) if item is not None else None

    def write(
        self,
        key: Mapping[str, Any],
        item: Mapping[str, Any] | None,
        precondition: Precondition,
    ) -> WriteResult:
        condition = condition_for(precondition, partition_key=self.key_attributes[0])
        common = {
            "TableName": self.table_name,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **condition,
        }
        if item is None:
            return self._conditional(self.client.delete_item, Key=dict(key), **common)
        return self._conditional(self.client.put_item, Item=dict(item), **common)

    def annotate(
        self,
        key: Mapping[str, Any],
        meta: Mapping[str, Any],
        precondition: Precondition,
    ) -> WriteResult:
        condition = condition_for(precondition, partition_key=self.key_attributes[0])
        names = {
            **condition["ExpressionAttributeNames"],
            "#georep_meta": META_ATTR,
            "#georep_ttl": TTL_ATTR,
        }
        values = {**condition.get("ExpressionAttributeValues", {}), ":georep_meta": dict(meta)}
        return self._conditional(
            self.client.update_item,
            TableName=self.table_name,
            Key=dict(key),
            # A live item never keeps a tombstone's expiry (a raw write may have copied it):
            # the annotated item is then the same bytes as the version written in full.
            UpdateExpression="SET #georep_meta = :georep_meta REMOVE #georep_ttl",
            ConditionExpression=condition["ConditionExpression"],
            ExpressionAttributeNames=names,
            ExpressionAttributeValues=values,
            ReturnValuesOnConditionCheckFailure="ALL_OLD",
        )

    def get_stored(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        try:
            response = self.client.get_item(
                TableName=self._store(), Key=store_key(self.name, key), ConsistentRead=True
            )
        except ClientError as error:
            self._reraise(error)
        item = response.get("Item")
        return dict(item) if item is not None else None

    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
        """Consistent reads of ``keys`` (BatchGetItem), in their order; None where absent."""
        try:
            found = batch_get(self.client, self.table_name, [dict(k) for k in keys])
        except ClientError as error:
            self._reraise(error)
        by_key = {key_string(self._key_of(item)): item for item in found}
        return [by_key.get(key_string(k)) for k in keys]

    def get_stored_many(self, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
        """The store's items for ``keys``, as `get_many`."""
        places = [store_key(self.name, k) for k in keys]
        try:
            found = batch_get(self.client, self._store(), places)
        except ClientError as error:
            self._reraise(error)
        by_place = {item[STORE_KEY]["S"]: item for item in found}
        return [by_place.get(place[STORE_KEY]["S"]) for place in places]

    def _key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {name: item[name] for name in self.key_attributes}

    def commit(
        self,
        key: Mapping[str, Any],
        *,
        table: Step | None,
        store: Step | None,
        application: Mapping[str, Any] | None = None,
    ) -> CommitResult:
        """One conditional request for a single write, else one TransactWriteItems (a check
        is a ConditionCheck). A cancelled transaction's reasons name the failed places.
        ``application``: the SDK's caller's own condition (``expression``, ``names``,
        ``values``), joined to the table step's (`with_application`)."""
        actions: list[tuple[str, dict[str, Any]]] = []
        if table is not None:
            action = self._action(table, self.table_name, dict(key), self.key_attributes[0])
            if application is not None:
                ((kind, request),) = action.items()
                joined = with_application(
                    {k: request[k] for k in request if k.startswith(("Condition", "Expression"))},
                    **application,
                )
                action = {kind: {**request, **joined}}
            actions.append(("table", action))
        if store is not None:
            place = store_key(self.name, key)
            actions.append(("store", self._action(store, self._store(), place, STORE_KEY)))
        if len(actions) == 1 and "ConditionCheck" not in actions[0][1]:
            ((where, action),) = actions
            kind, request = next(iter(action.items()))
            call = self.client.put_item if kind == "Put" else self.client.delete_item
            result = self._conditional(call, **request)
            if result.ok:
                return CommitResult(ok=True)
            return CommitResult(ok=False, failed=frozenset({where}), **{where: result.current})
        try:
            self.client.transact_write_items(TransactItems=[action for _, action in actions])
        except ClientError as error:
            code = error.response.get("Error", {}).get("Code")
            reasons = error.response.get("CancellationReasons") or []
            failed = {
                where: reason
                for (where, _), reason in zip(actions, reasons, strict=False)
                if reason.get("Code") == "ConditionalCheckFailed"
            }
            if code != "TransactionCanceledException" or not failed:
                self._reraise(error)  # a conflict with another transaction: retried later
            currents = {where: reason.get("Item") for where, reason in failed.items()}
            return CommitResult(
                ok=False,
                failed=frozenset(failed),
                **{where: dict(item) if item else None for where, item in currents.items()},
            )
        return CommitResult(ok=True)

    def commit_group(
        self, entries: Sequence[Entry], *, token: str | None = None
    ) -> list[CommitResult | GeorepError | None]:
        """Every entry's steps in one TransactWriteItems, all or nothing (issue 24). Per entry:
        applied (``ok``); refused, its condition failed (``failed`` and the items as they are,
        ALL_OLD); a GeorepError if the backend rejects its own request (too large, invalid:
        nothing was applied, and the others are sent again without it); or None, not applied
        because another entry was refused or rejected. ``token``: the group's
        ClientRequestToken, so that a retry after a lost answer does not apply it twice. A
        transient failure (a throttle, a conflict with another transaction, a 5xx, a reset)
        raises as it came: retry the whole group with the same token."""
        check_group(entries)
        actions: list[tuple[int, str, dict[str, Any]]] = []
        for index, entry in enumerate(entries):
            key = dict(entry.key)
            if entry.table is not None:
                step = self._action(entry.table, self.table_name, key, self.key_attributes[0])
                actions.append((index, "table", step))
            if entry.store is not None:
                place = store_key(self.name, key)
                actions.append(
                    (index, "store", self._action(entry.store, self._store(), place, STORE_KEY))
                )
        request: dict[str, Any] = {"TransactItems": [action for _, _, action in actions]}
        if token is not None:
            request["ClientRequestToken"] = token
        try:
            self.client.transact_write_items(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "TransactionCanceledException":
                self._reraise(error)
            return self._cancelled(entries, actions, error)
        return [CommitResult(ok=True) for _ in entries]

    def _cancelled(
        self,
        entries: Sequence[Entry],
        actions: list[tuple[int, str, dict[str, Any]]],
        error: ClientError,
    ) -> list[CommitResult | GeorepError | None]:
        """Each entry's part in a cancelled group, from the reasons DynamoDB gives per action
        (in the order sent). A reason that blames no entry (a conflict with another
        transaction, throttling) is the whole group's: raised, retried as it is."""
        reasons = error.response.get("CancellationReasons") or []
        refused: dict[int, dict[str, Any]] = {}
        rejected: dict[int, GeorepError] = {}
        for (index, where, _), reason in zip(actions, reasons, strict=False):
            code = reason.get("Code") or "None"
            if code == "ConditionalCheckFailed":
                item = reason.get("Item")
                refused.setdefault(index, {})[where] = dict(item) if item else None
            elif code in ("ValidationError", "ItemCollectionSizeLimitExceeded"):
                message = reason.get("Message", code)
                rejected[index] = RequestRejectedError(f"{self.table_name}: {code}: {message}")
            elif code != "None":
                raise error  # TransactionConflict, throttling: the group is sent again
        if not refused and not rejected:
            raise error
        results: list[CommitResult | GeorepError | None] = []
        for index in range(len(entries)):
            if index in rejected:
                results.append(rejected[index])
            elif index in refused:
                places = refused[index]
                results.append(CommitResult(ok=False, failed=frozenset(places), **places))
            else:
                results.append(None)
        return results

    def _action(
        self, step: Step, table_name: str, key: dict[str, Any], partition_key: str
    ) -> dict[str, Any]:
        request: dict[str, Any] = {
            "TableName": table_name,
            "ReturnValuesOnConditionCheckFailure": "ALL_OLD",
            **condition_for(step.precondition, partition_key=partition_key),
        }
        if step.check:
            return {"ConditionCheck": {"Key": key, **request}}
        if step.item is None:
            return {"Delete": {"Key": key, **request}}
        # The key given wins: a store item is keyed by this table's configured name.
        return {"Put": {"Item": {**dict(step.item), **key}, **request}}

    def _store(self) -> str:
        if self.store_table is None:
            raise RuntimeError(f"{self.table_name}: no tombstone store is configured")
        return self.store_table

    def _conditional(self, call: Any, **request: Any) -> WriteResult:
        """One conditional request: ok, or the item as it is now if the condition failed."""
        try:
            call(**request)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") != "ConditionalCheckFailedException":
                self._reraise(error)
            current: Any = error.response.get("Item")
            return WriteResult(ok=False, current=dict(current) if current else None)
        return WriteResult(ok=True, current=None)

    def _reraise(self, error: ClientError) -> NoReturn:
        """A request DynamoDB refuses as such raises a permanent GeorepError; anything else
        (throttling past botocore's retries, a server error, a missing table) as it came."""
        code = error.response.get("Error", {}).get("Code", "")
        message = error.response.get("Error", {}).get("Message", "")
        if code == "ValidationException" and "size" in message.lower():
            # The backend's own limit (moto counts sizes differently from AWS, docs/backends.md)
            raise ItemTooLargeError(f"{self.table_name}: {message}") from error
        if code in REJECTIONS:
            raise RequestRejectedError(f"{self.table_name}: {code}: {message}") from error
        raise error


BATCH_GET_KEYS = 100  # DynamoDB's limit per BatchGetItem


class IncompleteResponseError(BotoCoreError):
    """A 200 answer without a field every answer of its operation has: a truncated or empty
    body, which botocore parses as ``{}`` when no checksum covers it (found by `georep chaos`:
    an empty GetRecords answer read as a closed shard finished the shard, which was then never
    read again). A BotoCoreError, so it is handled like any failed call: retried from the
    checkpoint after a backoff."""

    fmt = "{operation} answered without {field}: a truncated or empty response"


def require(response: Mapping[str, Any], field: str, *, operation: str) -> Any:
    """``response[field]``, or IncompleteResponseError when the answer lacks it."""
    if field not in response:
        raise IncompleteResponseError(operation=operation, field=field)
    return response[field]


def batch_get(client: Any, table: str, keys: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """Consistent reads of ``keys`` (distinct) in ``table``: BatchGetItem, `BATCH_GET_KEYS` at a
    time, the keys DynamoDB leaves unprocessed (throttling) asked again with backoff. Returns
    the items found, in no particular order."""
    found: list[dict[str, Any]] = []
    for start in range(0, len(keys), BATCH_GET_KEYS):
        request: dict[str, Any] = {
            table: {"Keys": list(keys[start : start + BATCH_GET_KEYS]), "ConsistentRead": True}
        }
        delay = 0.05
        while request:
            response = client.batch_get_item(RequestItems=request)
            answered = require(response, "Responses", operation="BatchGetItem")
            found.extend(answered.get(table, []))
            request = response.get("UnprocessedKeys") or {}
            if request:  # throttled: DynamoDB asks to back off
                time.sleep(delay)
                delay = min(delay * 2, 1.0)
    return found


def unless_missing(read: Callable[[], T], default: U) -> T | U:
    """``read()``, or ``default`` if the table it reads does not exist: georep's own tables
    (checkpoints, dead letters) are created by the first consumer, so a region where none ran
    has none yet, which the CLI reports as empty rather than as an error."""
    try:
        return read()
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceNotFoundException":
            raise
        return default


def ensure_store_table(client: Any, *, table_name: str) -> None:
    """Create a region's tombstone store unless it exists, and turn its TTL on (a store item
    expires with its tombstone and every deletion it records: `expires_ms`)."""
    ensure_table(client, table_name=table_name, key=STORE_KEY)
    ttl = client.describe_time_to_live(TableName=table_name).get("TimeToLiveDescription", {})
    if ttl.get("TimeToLiveStatus") in ("ENABLED", "ENABLING"):
        return
    client.update_time_to_live(
        TableName=table_name,
        TimeToLiveSpecification={"Enabled": True, "AttributeName": TTL_ATTR},
    )


def ensure_table(client: Any, *, table_name: str, key: str) -> None:
    """Create an on-demand table keyed by the string attribute ``key`` unless it exists
    (georep's own bookkeeping tables: checkpoints, dead letters)."""
    try:
        client.create_table(
            TableName=table_name,
            KeySchema=[{"AttributeName": key, "KeyType": "HASH"}],
            AttributeDefinitions=[{"AttributeName": key, "AttributeType": "S"}],
            BillingMode="PAY_PER_REQUEST",
        )
    except ClientError as error:
        if error.response.get("Error", {}).get("Code") != "ResourceInUseException":
            raise
    client.get_waiter("table_exists").wait(
        TableName=table_name, WaiterConfig={"Delay": 1, "MaxAttempts": 60}
    )
