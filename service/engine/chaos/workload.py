"""The chaos workload: writers in every region on a few keys, each write a unique value.

Half the writes go to a few hot keys (``k0``..), where regions write concurrently, half to
eight times as many cold keys (``c0``..), where a write is often the last one of its key, so
that a write whose replication went missing shows in the final state.

Writers write straight to their region's table (never through the fault proxy: the faults are
between georep and the tables), stamped through georep's SDK or raw with plain boto3:

- stamped put, stamped read-modify-write (read, then put a new value), stamped delete;
- raw put (no metadata), raw read-modify-write (GetItem, then PutItem of the item read with a
  new value and its ``_georep`` copied back), raw delete.

Under a merge rule (``set_attribute`` given) every put also adds its unique value as an
element of that string set, writing the set it read plus the element: a write under a merge
rule must be an inflation of what it read (docs/design.md, "Deletes under merge rules"). So
every put reads first, and writes only if the item is unchanged since (the SDK's
``put_if_unchanged``; a raw write conditional on the value and ``_georep`` read), reading again
when it changed; otherwise an element replicated in between would be dropped by a write that
never saw it. No write drops an element it read: such a write is no inflation, and regions
that receive it before or after a concurrent version merge to different sets under one version
vector (tests/unit/test_merge_contract.py; docs/decisions.md, "The chaos workload keeps the
merge-rule contract"). Deletes are as above: under merge rules the tombstone keeps the set.

Each write is recorded (:class:`service.core.chaos.Write`) with when it started, when it was
acknowledged (or not, if it raised), and the value (and set) it read, for the accounting. The
schedule of operations is drawn from a seeded generator, one per writer.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from botocore.exceptions import ClientError

from service.core.chaos import Kind, Write, adopted_value, final_value, set_value

VALUE = "v"  # the attribute that holds each write's unique value
META = "_georep"
SET = "tags"  # under merge rules, the string set each put adds its value to (a union)
ATTEMPTS = 20  # reads and conditional writes before a write under merge rules gives up

# Share of each kind of write; the rest of the workload's choices are uniform.
MIX: tuple[tuple[Kind, float], ...] = (
    (Kind.STAMPED_PUT, 0.30),
    (Kind.STAMPED_RMW, 0.15),
    (Kind.STAMPED_DELETE, 0.10),
    (Kind.RAW_PUT, 0.15),
    (Kind.RAW_RMW, 0.20),
    (Kind.RAW_DELETE, 0.10),
)


class StampedTable(Protocol):
    """What the workload needs of georep's SDK (``service.sdk.GeorepTable``)."""

    def put(self, item: dict[str, Any]) -> object: ...

    def delete(self, key: dict[str, Any]) -> object | None: ...

    def put_if_unchanged(
        self, item: dict[str, Any], *, read: dict[str, Any] | None
    ) -> object | None: ...


@dataclass
class Ledger:
    """Every write of every writer, and counts for the progress line."""

    writes: list[Write] = field(default_factory=list)
    errors: int = 0
    lock: threading.Lock = field(default_factory=threading.Lock)
    _ids: itertools.count[int] = field(default_factory=itertools.count)

    def next_id(self) -> int:
        with self.lock:
            return next(self._ids)

    def record(self, write: Write) -> None:
        with self.lock:
            self.writes.append(write)
            if write.acked is None:
                self.errors += 1

    @property
    def acknowledged(self) -> int:
        with self.lock:
            return sum(1 for w in self.writes if w.acked is not None)


@dataclass
class Writer:
    """One writer thread's loop: ``rate`` writes per second on ``keys`` until ``stop``."""

    region: str
    name: str
    client: Any
    table_name: str
    stamped: StampedTable
    keys: list[str]
    cold_keys: list[str]
    ledger: Ledger
    seed: int
    rate: float
    partition_key: str = "pk"
    set_attribute: str | None = None  # a merge rule's set (module docstring); None: values only
    clock: Callable[[], float] = time.monotonic

    def run(self, stop: threading.Event) -> None:
        rng = random.Random(self.seed)
        kinds, weights = zip(*MIX, strict=True)
        n = 0
        while not stop.wait(rng.expovariate(self.rate)):
            kind = rng.choices(kinds, weights)[0]
            # Half the writes on the few hot keys (conflicts), half spread over the cold ones:
            # a write whose replication is lost is found only if no later write hides it.
            key = rng.choice(self.keys if rng.random() < 0.5 else self.cold_keys)
            value = f"{self.name}-{n}"
            n += 1
            if self.set_attribute is not None and not kind.deletes:
                self._add(kind, key, value)
            else:
                self._one(kind, key, value)

    def _one(self, kind: Kind, key: str, value: str) -> None:
        pk = {self.partition_key: {"S": key}}
        started = self.clock()
        read: str | None = None
        # What a raw write replaced, as its own request returned it (ALL_OLD): the raw write
        # is claimed to follow that item's value when georep had adopted it, and nothing else
        # (service/core/chaos.py).
        replaced: dict[str, Any] | None = None
        try:
            if kind is Kind.STAMPED_PUT:
                self.stamped.put({**pk, VALUE: {"S": value}})
            elif kind is Kind.STAMPED_RMW:
                read = self._read(pk)[0]
                self.stamped.put({**pk, VALUE: {"S": value}})
            elif kind is Kind.STAMPED_DELETE:
                if self.stamped.delete(pk) is None:
                    return  # nothing to delete: no write happened
            elif kind is Kind.RAW_PUT:
                replaced = self.client.put_item(
                    TableName=self.table_name,
                    Item={**pk, VALUE: {"S": value}},
                    ReturnValues="ALL_OLD",
                ).get("Attributes")
            elif kind is Kind.RAW_RMW:
                read, item = self._read(pk)
                # A read-modify-write that copies georep's metadata back, as an application
                # that does not know about it would (the tombstone expiry is left out: on AWS,
                # TTL would delete the live item).
                written = {**(item or {}), **pk, VALUE: {"S": value}}
                written.pop("_georep_ttl", None)
                replaced = self.client.put_item(
                    TableName=self.table_name, Item=written, ReturnValues="ALL_OLD"
                ).get("Attributes")
            elif kind is Kind.RAW_DELETE:
                replaced = self.client.delete_item(
                    TableName=self.table_name, Key=pk, ReturnValues="ALL_OLD"
                ).get("Attributes")
                if not replaced:
                    return  # nothing was there: DynamoDB emits no record, no write happened
        except Exception:
            self.ledger.record(
                Write(self.ledger.next_id(), key, value, self.region, kind, started, None, read)
            )
            return
        acked = self.clock()
        over = adopted_value(replaced, value_attribute=VALUE)
        self.ledger.record(
            Write(self.ledger.next_id(), key, value, self.region, kind, started, acked, read, over)
        )

    def _add(self, kind: Kind, key: str, value: str) -> None:
        """A put under a merge rule: read, then write the set read plus ``value`` (an
        inflation of what it read), if the item is unchanged since."""
        assert self.set_attribute is not None
        pk = {self.partition_key: {"S": key}}
        started = self.clock()
        read: str | None = None
        elements: frozenset[str] = frozenset()
        written: frozenset[str] = frozenset()
        try:
            for _ in range(ATTEMPTS):
                read, item = self._read(pk)
                elements = set_value(item, attribute=self.set_attribute)
                rmw = kind in (Kind.STAMPED_RMW, Kind.RAW_RMW)
                written = elements | {value}
                data = {**pk, VALUE: {"S": value}, self.set_attribute: {"SS": sorted(written)}}
                if rmw:
                    # Everything read written back (georep's metadata too, as an application
                    # that does not know about it would; the tombstone expiry left out, as in
                    # _one).
                    data = {**(item or {}), **data}
                    data.pop("_georep_ttl", None)
                if kind.stamped:
                    if self.stamped.put_if_unchanged(data, read=item) is not None:
                        break
                elif self._put_if_unchanged(data, item):
                    break
            else:
                return  # the item kept changing: no write happened
        except Exception:
            acked: float | None = None
        else:
            acked = self.clock()
        self.ledger.record(
            Write(
                self.ledger.next_id(),
                key,
                value,
                self.region,
                kind,
                started,
                acked,
                read,
                set_read=elements,
                set_written=written,
            )
        )

    def _put_if_unchanged(self, data: dict[str, Any], item: dict[str, Any] | None) -> bool:
        """A raw PutItem that happens only if the item is still ``item``: its unique value and
        ``_georep`` unchanged (every write changes one of them); False if it changed."""
        names = {"#k": self.partition_key}
        values: dict[str, Any] = {}
        if item is None:
            condition = "attribute_not_exists(#k)"
        else:
            names.update({"#v": VALUE, "#g": META})
            clauses = []
            for name, attribute in (("#v", VALUE), ("#g", META)):
                if attribute in item:
                    clauses.append(f"{name} = :{name[1:]}")
                    values[f":{name[1:]}"] = item[attribute]
                else:
                    clauses.append(f"attribute_not_exists({name})")
            condition = "attribute_exists(#k) AND " + " AND ".join(clauses)
        try:
            self.client.put_item(
                TableName=self.table_name,
                Item=data,
                ConditionExpression=condition,
                ExpressionAttributeNames=names,
                **({"ExpressionAttributeValues": values} if values else {}),
            )
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") == "ConditionalCheckFailedException":
                return False
            raise
        return True

    def _read(self, pk: dict[str, Any]) -> tuple[str | None, dict[str, Any] | None]:
        item = self.client.get_item(TableName=self.table_name, Key=pk, ConsistentRead=True).get(
            "Item"
        )
        return final_value(item, value_attribute=VALUE), item
