"""All-or-nothing TransactWriteItems for the embedded moto server (issue 22).

moto 5.2 applies a transaction's actions one after another and, when one is cancelled, puts back
a deep copy of every table the transaction named (docs/backends.md, deviation 6): a stream
iterator taken earlier then reads the copied table's stream, sees the records of the actions
that ran before the cancelled one (records DynamoDB never emits) and misses every later write;
and the copy costs 763 ms for a table of 10,000 items, on every transaction. A replicator that
writes deletes as transactions would break its own stream reading on the first cancelled one.

DynamoDB's contract is simpler: every condition is evaluated first, and either every action
happens or none does, and a cancelled transaction writes nothing and emits no record. The
serialised server (`_moto_serial`) lets one request in at a time, so this replacement checks
every action against the current items, raises ``TransactionCanceledException`` with a reason
per action if any fails, and only then applies the actions through moto's own put, delete and
update (each emits its stream record as usual). An action that fails while applying (an update
expression moto rejects) undoes the ones applied before it, items and stream records, and
cancels the transaction with its reason: no copy of any table is made.

This module imports moto; it runs only in the server's child process (`install`).
"""

from __future__ import annotations

from typing import Any

_Reason = tuple[str, str, dict[str, Any]] | tuple[None, None, None]


def install() -> None:
    """Replace moto's ``DynamoDBBackend.transact_write_items`` with `transact_write_items`."""
    from moto.dynamodb.models import DynamoDBBackend

    DynamoDBBackend.transact_write_items = transact_write_items  # type: ignore[method-assign]


def transact_write_items(self: Any, transact_items: list[dict[str, Any]]) -> None:
    """DynamoDB's TransactWriteItems on moto's backend ``self``: check all, then write all."""
    from moto.dynamodb.comparisons import get_filter_expression
    from moto.dynamodb.exceptions import (
        ConditionalCheckFailed,
        MockValidationException,
        MultipleTransactionsException,
        TooManyTransactionsException,
        TransactionCanceledException,
        TransactWriteSingleOpException,
    )

    if len(transact_items) > 100:
        raise TooManyTransactionsException()
    actions: list[tuple[str, str, dict[str, Any], dict[str, Any]]] = []
    targets: set[tuple[str, str]] = set()
    for entry in transact_items:
        if len(entry) > 1:
            raise TransactWriteSingleOpException
        kind, action = next(iter(entry.items()))
        if kind not in {"ConditionCheck", "Put", "Delete", "Update"}:
            raise MockValidationException(f"Unsupported transaction operation: {kind}")
        table = self.get_table(action["TableName"])
        if kind == "Put":
            attrs = action["Item"]
            key = {table.hash_key_attr: attrs[table.hash_key_attr]}
            if table.range_key_attr is not None:
                key[table.range_key_attr] = attrs[table.range_key_attr]
        else:
            key = action["Key"]
        target = (table.name, str(sorted(key.items())))
        if target in targets:
            raise MultipleTransactionsException()
        targets.add(target)
        actions.append((kind, table.name, key, action))

    # 1. Every condition, against the items as they are: nothing is written yet.
    reasons: list[_Reason] = []
    for _kind, table_name, key, action in actions:
        expression = action.get("ConditionExpression")
        current = self.get_item(table_name, key)
        if expression is None or get_filter_expression(
            expression,
            action.get("ExpressionAttributeNames"),
            action.get("ExpressionAttributeValues"),
        ).expr(current):
            reasons.append((None, None, None))
            continue
        old: dict[str, Any] = {}
        if action.get("ReturnValuesOnConditionCheckFailure") == "ALL_OLD" and current:
            old = current.to_json()["Attributes"]
        reasons.append(("ConditionalCheckFailed", str(ConditionalCheckFailed().message), old))
    if any(code is not None for code, _, _ in reasons):
        raise TransactionCanceledException(reasons)

    # 2. Every write. The conditions hold: the server lets no other request in meanwhile.
    undo = _Undo(self)
    for index, (kind, table_name, key, action) in enumerate(actions):
        if kind == "ConditionCheck":
            continue
        undo.remember(table_name, key)
        names = action.get("ExpressionAttributeNames")
        values = action.get("ExpressionAttributeValues")
        try:
            if kind == "Put":
                self.put_item(table_name, action["Item"])
            elif kind == "Delete":
                self.delete_item(table_name, key)
            else:
                self.update_item(
                    table_name,
                    key,
                    update_expression=action["UpdateExpression"],
                    expression_attribute_names=names,
                    expression_attribute_values=values,
                )
        except MockValidationException:
            undo.run()
            raise
        except Exception as error:  # any failure cancels the whole transaction, as moto does
            undo.run()
            failed: list[_Reason] = [(None, None, None)] * len(actions)
            failed[index] = (type(error).__name__, str(error), {})
            raise TransactionCanceledException(failed) from error


class _Undo:
    """What the writes of one transaction changed, to put back: each item as it was (the same
    objects) and each table's stream records from before the first write."""

    def __init__(self, backend: Any) -> None:
        self._backend = backend
        self._items: list[tuple[Any, Any, Any, Any]] = []
        self._streams: dict[str, tuple[Any, int]] = {}

    def remember(self, table_name: str, key: dict[str, Any]) -> None:
        from moto.dynamodb.models.dynamo_type import DynamoType

        table = self._backend.get_table(table_name)
        hash_value = DynamoType(key[table.hash_key_attr])
        range_value = DynamoType(key[table.range_key_attr]) if table.range_key_attr else None
        previous = self._backend.get_item(table_name, key)
        self._items.append((table, hash_value, range_value, previous))
        shard = table.stream_shard
        if shard is not None and table_name not in self._streams:
            self._streams[table_name] = (shard, len(shard.items))

    def run(self) -> None:
        for table, hash_value, range_value, previous in reversed(self._items):
            if range_value is None:
                if previous is None:
                    table.items.pop(hash_value, None)
                else:
                    table.items[hash_value] = previous
            elif previous is None:
                table.items.get(hash_value, {}).pop(range_value, None)
                if hash_value in table.items and not table.items[hash_value]:
                    del table.items[hash_value]
            else:
                table.items[hash_value][range_value] = previous
        for shard, length in self._streams.values():
            del shard.items[length:]
