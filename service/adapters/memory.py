"""An in-memory DynamoDB table with a NEW_AND_OLD_IMAGES stream, for property tests.

It implements the same port as the real DynamoDB adapter (:class:`service.ports.Table`) and
keeps DynamoDB's semantics where georep depends on them: conditional writes are atomic, a
write that changes nothing emits no record (AWS; set ``record_no_ops=True`` to mimic
moto, which streams a MODIFY), records are ordered per item, and a TTL deletion is a
REMOVE record whose userIdentity is the DynamoDB service. The differential test in
tests/integration checks it against the moto server on the same operations.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from service.core.apply import Precondition
from service.core.conditions import condition_for
from service.core.groups import Entry, check_group
from service.core.tombstones import STORE_KEY, store_key
from service.core.values import canonical, same_item, same_value
from service.core.version import META_ATTR, TTL_ATTR
from service.ports import CommitResult, Step, WriteResult


def key_string(key: Mapping[str, Any]) -> str:
    """A hashable, canonical form of a primary key."""
    return json.dumps({k: canonical(v) for k, v in sorted(key.items())}, sort_keys=True)


@dataclass
class MemoryTable:
    """One region's table and its stream. ``now_ms`` is this region's (possibly skewed) clock.

    ``before_write``, if set, is called with the key at the start of every conditional write
    (the port's :meth:`write`), before the condition is evaluated: the state machine lands a
    racing local write there, between a replicator's read (or failed condition) and its write,
    or makes the region unreachable by raising.
    """

    region: str
    key_attributes: tuple[str, ...]
    now_ms: Callable[[], int] = lambda: 0
    record_no_ops: bool = False
    # The first record's sequence number; DynamoDB promises only that they increase within a
    # shard, so tests start near a power of two to catch arithmetic on their low bits.
    first_sequence: int = 1
    items: dict[str, dict[str, Any]] = field(default_factory=dict)
    stream: list[dict[str, Any]] = field(default_factory=list)
    before_write: Callable[[Mapping[str, Any]], None] | None = None
    # The region's tombstone store (issue 22): its items for this table's keys, by key string
    # (the store streams nothing georep reads). ``table_name`` keys them (`store_key`).
    table_name: str = "table"
    stored: dict[str, dict[str, Any]] = field(default_factory=dict)
    # The ClientRequestTokens of the groups applied (`commit_group`).
    tokens: set[str] = field(default_factory=set)
    # Requests are atomic as in DynamoDB, whichever threads send them (the replicator writes
    # different keys, and one key to different tables, in parallel).
    _lock: threading.RLock = field(default_factory=threading.RLock, repr=False, compare=False)

    def key_of(self, item: Mapping[str, Any]) -> dict[str, Any]:
        return {k: item[k] for k in self.key_attributes}

    # -- the port --------------------------------------------------------------------------

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            item = self.items.get(key_string(key))
            return _fresh(item) if item is not None else None

    def write(
        self,
        key: Mapping[str, Any],
        item: Mapping[str, Any] | None,
        precondition: Precondition,
    ) -> WriteResult:
        """Conditional put (``item``) or delete (``None``); atomic, like DynamoDB."""
        with self._lock:
            if self.before_write is not None:
                self.before_write(key)
            current = self.items.get(key_string(key))
            if not _holds(precondition, current, partition_key=self.key_attributes[0]):
                return WriteResult(ok=False, current=_fresh(current))
            self._set(key, item)
            return WriteResult(ok=True, current=None)

    def annotate(
        self,
        key: Mapping[str, Any],
        meta: Mapping[str, Any],
        precondition: Precondition,
    ) -> WriteResult:
        """Conditional update of the metadata attribute only; atomic, like DynamoDB (which
        creates the item from its key if it is absent and the condition allows it)."""
        with self._lock:
            if self.before_write is not None:
                self.before_write(key)
            current = self.items.get(key_string(key))
            if not _holds(precondition, current, partition_key=self.key_attributes[0]):
                return WriteResult(ok=False, current=_fresh(current))
            kept = {k: v for k, v in (current or key).items() if k != TTL_ATTR}
            self._set(key, {**kept, META_ATTR: dict(meta)})
            return WriteResult(ok=True, current=None)

    def get_stored(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        with self._lock:
            item = self.stored.get(key_string(store_key(self.table_name, key)))
            return _fresh(item) if item is not None else None

    # NOTE: one `get` (`get_stored`) per key, not one look under the lock: a batch read is not
    # atomic on DynamoDB either (each item is read consistently on its own), and a test that
    # replaces `get_stored` on the instance (a store outage) reaches the batch read too.
    def get_many(self, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
        return [self.get(key) for key in keys]

    def get_stored_many(self, keys: Sequence[Mapping[str, Any]]) -> list[dict[str, Any] | None]:
        return [self.get_stored(key) for key in keys]

    def commit(
        self, key: Mapping[str, Any], *, table: Step | None, store: Step | None
    ) -> CommitResult:
        """Both steps or neither, like TransactWriteItems: every condition first."""
        with self._lock:
            if self.before_write is not None:
                self.before_write(key)
            refused = self._refused(key, table, store)
            if refused is not None:
                return refused
            self._apply_steps(key, table, store)
            return CommitResult(ok=True)

    def commit_group(
        self, entries: Sequence[Entry], *, token: str | None = None
    ) -> list[CommitResult | None]:
        """Every entry's steps or none, like TransactWriteItems: every condition first. Per
        entry: applied, refused (its condition failed: `CommitResult` with ``failed``), or
        None (not applied because another entry was refused). A ``token`` already used for a
        group that was applied applies nothing again and answers as it did (DynamoDB's
        ClientRequestToken: a retry after a lost answer)."""
        check_group(entries)
        with self._lock:
            if token is not None and token in self.tokens:
                return [CommitResult(ok=True) for _ in entries]
            if self.before_write is not None:
                for entry in entries:
                    self.before_write(entry.key)
            refused = [self._refused(e.key, e.table, e.store) for e in entries]
            if any(r is not None for r in refused):
                return refused
            for entry in entries:
                self._apply_steps(entry.key, entry.table, entry.store)
            if token is not None:
                self.tokens.add(token)
            return [CommitResult(ok=True) for _ in entries]

    def _refused(
        self, key: Mapping[str, Any], table: Step | None, store: Step | None
    ) -> CommitResult | None:
        """The places whose condition fails now, with their items (None: every one holds)."""
        place = key_string(store_key(self.table_name, key))
        item = self.items.get(key_string(key))
        stored = self.stored.get(place)
        failed = set()
        if table is not None and not _holds(
            table.precondition, item, partition_key=self.key_attributes[0]
        ):
            failed.add("table")
        if store is not None and not _holds(store.precondition, stored, partition_key=STORE_KEY):
            failed.add("store")
        if not failed:
            return None
        return CommitResult(
            ok=False,
            failed=frozenset(failed),
            table=_fresh(item) if "table" in failed else None,
            store=_fresh(stored) if "store" in failed else None,
        )

    def _apply_steps(self, key: Mapping[str, Any], table: Step | None, store: Step | None) -> None:
        if table is not None and not table.check:
            self._set_locked(key, table.item, ttl=False)
        if store is not None and not store.check:
            place = key_string(store_key(self.table_name, key))
            if store.item is None:
                self.stored.pop(place, None)
            else:
                # The key given wins: a store item is keyed by this table's name.
                store_item = {**dict(store.item), **store_key(self.table_name, key)}
                self.stored[place] = _fresh(store_item)

    # -- what applications and TTL do -------------------------------------------------------

    def put_raw(self, item: Mapping[str, Any]) -> None:
        """An unconditional PutItem, as a plain boto3 application would issue it."""
        self._set(self.key_of(item), dict(item))

    def delete_raw(self, key: Mapping[str, Any]) -> None:
        self._set(key, None)

    def expire(self, key: Mapping[str, Any]) -> None:
        """A TTL deletion by the DynamoDB service."""
        self._set(key, None, ttl=True)

    # -- internals ---------------------------------------------------------------------------

    def _set(
        self, key: Mapping[str, Any], item: Mapping[str, Any] | None, *, ttl: bool = False
    ) -> None:
        with self._lock:
            self._set_locked(key, item, ttl=ttl)

    def _set_locked(
        self, key: Mapping[str, Any], item: Mapping[str, Any] | None, *, ttl: bool
    ) -> None:
        k = key_string(key)
        old = self.items.get(k)
        new = _fresh(dict(item)) if item is not None else None
        if old is None and new is None:
            return
        if old is not None and new is not None and same_item(old, new) and not self.record_no_ops:
            return
        if new is None:
            del self.items[k]
        else:
            self.items[k] = new
        event = "REMOVE" if new is None else ("INSERT" if old is None else "MODIFY")
        body: dict[str, Any] = {
            "ApproximateCreationDateTime": float(self.now_ms() // 1000),
            "Keys": _fresh(dict(key)),
            "SequenceNumber": f"{self.first_sequence + len(self.stream):021d}",
            "SizeBytes": 0,
            "StreamViewType": "NEW_AND_OLD_IMAGES",
        }
        if new is not None:
            body["NewImage"] = _fresh(new)
        if old is not None:
            body["OldImage"] = _fresh(old)
        record: dict[str, Any] = {
            "eventID": f"{self.region}-{len(self.stream) + 1}",
            "eventName": event,
            "eventVersion": "1.1",
            "eventSource": "aws:dynamodb",
            "awsRegion": self.region,
            "dynamodb": body,
        }
        if ttl:
            record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
        self.stream.append(record)

    def records_after(self, position: int, limit: int = 1000) -> list[dict[str, Any]]:
        """Records with index >= position (the model's shard iterator)."""
        return [_fresh(record) for record in self.stream[position : position + limit]]


def _fresh(value: Any) -> Any:
    """A copy sharing nothing mutable, for DynamoDB JSON (dicts, lists, sets, bytes, strs):
    what ``copy.deepcopy`` did here, at a fifth of its cost (it was a third of the rules
    machines' time)."""
    if isinstance(value, dict):
        return {k: _fresh(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_fresh(v) for v in value]
    if isinstance(value, set | bytearray):
        return type(value)(value)
    return value


def _holds(pre: Precondition, current: Mapping[str, Any] | None, *, partition_key: str) -> bool:
    """Evaluate the ConditionExpression the DynamoDB adapter sends for ``pre`` (built by the
    same function), as DynamoDB would: clauses joined by AND, each a function of one
    attribute or an equality with a placeholder value (compared by value: 1 == 1.0, sets
    unordered)."""
    condition = condition_for(pre, partition_key=partition_key)
    names = condition["ExpressionAttributeNames"]
    values = condition.get("ExpressionAttributeValues", {})
    item = current or {}
    for clause in condition["ConditionExpression"].split(" AND "):
        if match := _FUNCTION.fullmatch(clause):
            exists = names[match["name"]] in item
            if exists != (match["function"] == "attribute_exists"):
                return False
        elif match := _EQUALS.fullmatch(clause):
            stored = item.get(names[match["name"]])
            if stored is None or not same_value(stored, values[match["value"]]):
                return False
        else:
            raise AssertionError(f"the model cannot evaluate condition clause {clause!r}")
    return True


_FUNCTION = re.compile(r"(?P<function>attribute_exists|attribute_not_exists)\((?P<name>#\w+)\)")
_EQUALS = re.compile(r"(?P<name>#\w+) = (?P<value>:\w+)")
