"""What DynamoDB would bill for the requests a server saw: the pure half of bench/store_cost.py.

No I/O: bench/counting_moto.py records each request (operation, signing region, body, whether
it succeeded, and the items a read returned) and `tally` turns a list of them into requests
and capacity units by place (the user's table, the tombstone store, georep's bookkeeping
tables, the streams). tests/unit/test_store_billing.py runs it on a tiny input.

The billing rules, as DynamoDB documents them (on-demand request units and provisioned
capacity units are counted the same way), stated once in `RULES`:

- a standard write (PutItem, UpdateItem, DeleteItem, each request of a BatchWriteItem) costs
  1 write unit per 1 KB of the item, rounded up; a PutItem is sized by the item written, an
  UpdateItem or DeleteItem by the item it changes, which the request does not carry, so it is
  sized by the largest item written to that table in the run (every item of this benchmark is
  under 1 KB: each such write is 1 unit, `largest_item_bytes` in the results shows it);
- TransactWriteItems costs 2 write units per 1 KB per action, ConditionCheck included;
- a consistent read costs 1 read unit per 4 KB (eventual: half), a transactional read 2; a
  GetItem or a BatchGetItem key that finds nothing still costs the minimum;
- Query and Scan: the items returned, summed, per 4 KB;
- a conditional write whose condition fails (or a cancelled transaction) is billed as if it
  had written: DynamoDB consumes the capacity; they are also counted apart (`failed`);
- DynamoDB Streams requests (GetRecords, GetShardIterator, DescribeStream) are not read
  units: counted as requests only;
- table management (CreateTable, DescribeTable, time to live, ...) is not billed per request.
"""

from __future__ import annotations

import base64
import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal, InvalidOperation
from typing import Any

RULES = (
    "DynamoDB billing: a standard write 1 WCU per 1 KB (rounded up, an update or delete sized "
    "by the largest item the run wrote to that table); TransactWriteItems 2 WCU per action per "
    "1 KB, ConditionCheck included; a consistent read 1 RCU per 4 KB, eventual 0.5, "
    "transactional 2, a read that finds nothing the minimum; failed conditions billed as "
    "written; stream reads and table management not billed in capacity units"
)

WRITES = frozenset({"PutItem", "UpdateItem", "DeleteItem", "BatchWriteItem", "TransactWriteItems"})
READS = frozenset({"GetItem", "BatchGetItem", "TransactGetItems", "Query", "Scan"})
DATA_ROLES = ("table", "store")


# -- item sizes -----------------------------------------------------------------------------------


def _number_size(text: str) -> int:
    """1 byte per two significant digits, plus 1 (leading and trailing zeros trimmed)."""
    try:
        digits = Decimal(text).normalize().as_tuple().digits
    except InvalidOperation:
        digits = tuple(int(c) for c in text if c.isdigit())
    significant = len(digits) if any(digits) else 1
    return math.ceil(significant / 2) + 1


def value_size(value: Mapping[str, Any]) -> int:
    """The size of one attribute value in DynamoDB JSON, by DynamoDB's item size rules."""
    ((kind, inner),) = value.items()
    match kind:
        case "S":
            return len(str(inner).encode())
        case "N":
            return _number_size(str(inner))
        case "B":
            return len(base64.b64decode(inner))
        case "BOOL" | "NULL":
            return 1
        case "SS":
            return sum(len(str(s).encode()) for s in inner)
        case "NS":
            return sum(_number_size(str(n)) for n in inner)
        case "BS":
            return sum(len(base64.b64decode(b)) for b in inner)
        case "L":
            return 3 + sum(value_size(v) + 1 for v in inner)
        case "M":
            return 3 + sum(len(k.encode()) + value_size(v) + 1 for k, v in inner.items())
    raise ValueError(f"not a DynamoDB attribute value: {kind!r}")


def item_size(item: Mapping[str, Any]) -> int:
    """Attribute names plus values, in bytes (how DynamoDB sizes an item for billing)."""
    return sum(len(name.encode()) + value_size(value) for name, value in item.items())


def write_units(size: int) -> int:
    return max(1, math.ceil(size / 1024))


def read_units(size: int) -> int:
    return max(1, math.ceil(size / 4096))


# -- requests -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Request:
    """One request as the server saw it. ``response`` holds what a read returned (``Item``,
    ``Items``, ``Responses``), nothing for other operations."""

    op: str
    region: str
    ok: bool = True
    body: Mapping[str, Any] = field(default_factory=dict)
    response: Mapping[str, Any] | None = None
    streams: bool = False
    seconds: float = 0.0  # the server's time on it (moto serves one request at a time)

    @classmethod
    def from_record(cls, record: Mapping[str, Any]) -> Request:
        return cls(
            op=record["op"],
            region=record.get("region", ""),
            ok=record.get("ok", True),
            body=record.get("body") or {},
            response=record.get("response"),
            streams=record.get("service") == "streams",
            seconds=record.get("seconds", 0.0),
        )


@dataclass(frozen=True)
class Roles:
    """Which place each table name is: the user's table, the tombstone store, or georep's
    own bookkeeping (checkpoints, leases, dead letters, conflicts: anything else)."""

    table: str
    store: str | None = None

    def of(self, name: str) -> str:
        if name == self.table:
            return "table"
        if self.store is not None and name == self.store:
            return "store"
        return "bookkeeping"


@dataclass(frozen=True)
class Action:
    """One billed unit of work inside a request: a write or read of one item in one place."""

    kind: str  # Put, Update, Delete, ConditionCheck, Get, Query...
    role: str
    size: int | None  # None: the request does not say (an update, a delete, a check)


def actions(request: Request, roles: Roles) -> list[Action]:
    """The items ``request`` writes or reads, each with its place and size if known."""
    body, op = request.body, request.op
    response = request.response or {}
    match op:
        case "PutItem":
            return [Action("Put", roles.of(body["TableName"]), item_size(body["Item"]))]
        case "UpdateItem" | "DeleteItem":
            return [Action(op.removesuffix("Item"), roles.of(body["TableName"]), None)]
        case "BatchWriteItem":
            out = []
            for table, writes in body.get("RequestItems", {}).items():
                for write in writes:
                    if "PutRequest" in write:
                        size = item_size(write["PutRequest"]["Item"])
                        out.append(Action("Put", roles.of(table), size))
                    else:
                        out.append(Action("Delete", roles.of(table), None))
            return out
        case "TransactWriteItems":
            out = []
            for entry in body.get("TransactItems", []):
                ((kind, inner),) = entry.items()
                known = item_size(inner["Item"]) if kind == "Put" else None
                out.append(Action(kind, roles.of(inner["TableName"]), known))
            return out
        case "GetItem":
            found = response.get("Item")
            size = item_size(found) if found else 0
            return [Action("Get", roles.of(body["TableName"]), size)]
        case "BatchGetItem":
            out = []
            returned = response.get("Responses", {})
            for table, asked in body.get("RequestItems", {}).items():
                sizes = [item_size(i) for i in returned.get(table, [])]
                misses = max(0, len(asked.get("Keys", [])) - len(sizes))
                out += [Action("Get", roles.of(table), s) for s in sizes + [0] * misses]
            return out
        case "TransactGetItems":
            out = []
            results = response.get("Responses", [])
            for i, entry in enumerate(body.get("TransactItems", [])):
                found = results[i].get("Item") if i < len(results) else None
                size = item_size(found) if found else 0
                out.append(Action("TransactGet", roles.of(entry["Get"]["TableName"]), size))
            return out
        case "Query" | "Scan":
            size = sum(item_size(i) for i in response.get("Items", []))
            return [Action(op, roles.of(body["TableName"]), size)]
    return []


def label(request: Request, found: list[Action]) -> str:
    """``PutItem:table``, ``TransactWriteItems[Delete:table+Put:store]``."""
    if request.op.startswith("Transact"):
        return f"{request.op}[{'+'.join(f'{a.kind}:{a.role}' for a in found)}]"
    places = sorted({a.role for a in found})
    return f"{request.op}:{'+'.join(places)}" if places else request.op


# -- tallies --------------------------------------------------------------------------------------


@dataclass
class Tally:
    """Requests and capacity units over some requests, split by what they touched."""

    writes: Counter[str] = field(default_factory=Counter)  # data-writing requests by label
    reads: Counter[str] = field(default_factory=Counter)  # data-reading requests by label
    wcu: Counter[str] = field(default_factory=Counter)  # write units by place
    rcu: defaultdict[str, float] = field(default_factory=lambda: defaultdict(float))  # by place
    write_actions: int = 0  # items written or checked, over every data write
    bookkeeping: Counter[str] = field(default_factory=Counter)  # georep's own tables
    streams: Counter[str] = field(default_factory=Counter)
    control: Counter[str] = field(default_factory=Counter)
    failed: int = 0
    server_seconds: float = 0.0  # the server's time on the data requests

    @property
    def write_requests(self) -> int:
        return sum(self.writes.values())

    @property
    def read_requests(self) -> int:
        return sum(self.reads.values())

    def per(self, changes: int) -> dict[str, Any]:
        """Everything divided by ``changes`` (rounded for reading), for the results JSON."""

        def each(counter: Mapping[str, float]) -> dict[str, float]:
            return {k: round(v / changes, 3) for k, v in sorted(counter.items())}

        return {
            "write_requests": round(self.write_requests / changes, 3),
            "write_actions": round(self.write_actions / changes, 3),
            "wcu": round(sum(self.wcu.values()) / changes, 3),
            "wcu_by_place": each(self.wcu),
            "writes": each(self.writes),
            "read_requests": round(self.read_requests / changes, 3),
            "rcu": round(sum(self.rcu.values()) / changes, 3),
            "rcu_by_place": each(self.rcu),
            "reads": each(self.reads),
            "bookkeeping_requests": each(self.bookkeeping),
            "stream_requests": round(sum(self.streams.values()) / changes, 3),
            "failed_conditions": round(self.failed / changes, 3),
            "server_ms": round(1000 * self.server_seconds / changes, 2),
        }


@dataclass
class Biller:
    """Bills requests by `RULES`. Remembers the largest item written to each place, which
    sizes the updates, deletes and checks whose requests do not carry the item."""

    roles: Roles
    largest: Counter[str] = field(default_factory=Counter)

    def tally(self, requests: Iterable[Request]) -> Tally:
        out = Tally()
        for request in requests:
            self.add(out, request)
        return out

    def add(self, out: Tally, request: Request) -> None:
        if request.streams:
            out.streams[request.op] += 1
            return
        if request.op not in WRITES | READS:
            out.control[request.op] += 1
            return
        found = actions(request, self.roles)
        if not any(a.role in DATA_ROLES for a in found):
            out.bookkeeping[label(request, found)] += 1
            return
        out.server_seconds += request.seconds
        if not request.ok:
            out.failed += 1
        for action in found:
            if action.size is not None and action.kind == "Put":
                self.largest[action.role] = max(self.largest[action.role], action.size)
        if request.op in WRITES:
            out.writes[label(request, found)] += 1
            out.write_actions += len(found)
            double = 2 if request.op == "TransactWriteItems" else 1
            for action in found:
                size = action.size if action.size is not None else self.largest[action.role]
                out.wcu[action.role] += double * write_units(size)
            return
        out.reads[label(request, found)] += 1
        consistent = request.op == "TransactGetItems" or bool(
            request.body.get("ConsistentRead")
            or any(t.get("ConsistentRead") for t in request.body.get("RequestItems", {}).values())
        )
        factor = 2.0 if request.op == "TransactGetItems" else 1.0 if consistent else 0.5
        for action in found:
            out.rcu[action.role] += factor * read_units(action.size or 0)


__all__ = [
    "RULES",
    "Action",
    "Biller",
    "Request",
    "Roles",
    "Tally",
    "actions",
    "item_size",
    "label",
    "read_units",
    "value_size",
    "write_units",
]
