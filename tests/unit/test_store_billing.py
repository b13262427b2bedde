"""bench/store_billing.py, the pure half of bench/store_cost.py: item sizes, DynamoDB's billing
rules applied to requests as the counting server records them, and the printed table, on a
tiny input. No timing here: the rates live in the benchmark's results, never in tests."""

from __future__ import annotations

from typing import Any

from bench.store_billing import Biller, Request, Roles, item_size, value_size
from bench.store_cost import KINDS, WORKLOADS, table, total

ROLES = Roles("orders", "tombstones")


def s(value: str) -> dict[str, str]:
    return {"S": value}


def put(table: str, item: dict[str, Any]) -> dict[str, Any]:
    return {"Put": {"TableName": table, "Item": item}}


def test_item_size_counts_names_and_values_by_dynamodbs_rules() -> None:
    """A string is its UTF-8 bytes, a number 1 byte per two significant digits plus 1, a map
    3 bytes plus each entry's name, value and 1 byte; names count as their bytes."""
    assert 3 == value_size(s("abc"))
    assert 2 == value_size({"N": "12"})
    assert 2 == value_size({"N": "1000"})  # trailing zeros trimmed: one significant digit
    assert 3 + (1 + 1 + 1) == value_size({"M": {"a": {"BOOL": True}}})
    assert len("pk") + 5 + len("v") + 40 == item_size({"pk": s("order"), "v": s("x" * 40)})


def test_a_transaction_bills_two_units_per_action_a_condition_check_included() -> None:
    """An insert with the store: Put on the table and a ConditionCheck on the store, one
    request of two actions, 4 write units; a plain PutItem, 1; a 1.5 KB item, 2."""
    insert = Request(
        "TransactWriteItems",
        "eu-west-1",
        body={
            "TransactItems": [
                put("orders", {"pk": s("a")}),
                {"ConditionCheck": {"TableName": "tombstones", "Key": {"k": s("orders|a")}}},
            ]
        },
    )
    plain = Request("PutItem", "eu-west-1", body={"TableName": "orders", "Item": {"pk": s("b")}})
    large = Request(
        "PutItem", "eu-west-1", body={"TableName": "orders", "Item": {"pk": s("c" * 1534)}}
    )

    tally = Biller(ROLES).tally([insert, plain, large])

    assert {"table": 2 + 1 + 2, "store": 2} == dict(tally.wcu)
    assert 3 == tally.write_requests
    assert 4 == tally.write_actions
    assert {
        "TransactWriteItems[Put:table+ConditionCheck:store]": 1,
        "PutItem:table": 2,
    } == dict(tally.writes)


def test_a_delete_is_sized_by_the_largest_item_written_to_its_table() -> None:
    """A DeleteItem does not carry the item it removes: it is billed at the largest item the
    run put into that table, at least 1 unit."""
    biller = Biller(ROLES)
    biller.tally(
        [Request("PutItem", "r", body={"TableName": "orders", "Item": {"pk": s("x" * 2000)}})]
    )
    delete = Request("DeleteItem", "r", body={"TableName": "orders", "Key": {"pk": s("x")}})
    assert {"table": 2} == dict(biller.tally([delete]).wcu)
    assert {"table": 1} == dict(Biller(ROLES).tally([delete]).wcu)


def test_reads_bill_consistent_eventual_and_missing_items() -> None:
    """A consistent GetItem 1 unit per 4 KB, an eventual one half that; an item not found
    still costs the minimum; a BatchGetItem bills each key asked for."""
    found = {"pk": s("a")}
    reads = [
        Request(
            "GetItem",
            "r",
            body={"TableName": "orders", "Key": found, "ConsistentRead": True},
            response={"Item": found},
        ),
        Request("GetItem", "r", body={"TableName": "tombstones", "Key": {"k": s("a")}}),
        Request(
            "BatchGetItem",
            "r",
            body={"RequestItems": {"orders": {"Keys": [found, {"pk": s("b")}]}}},
            response={"Responses": {"orders": [found]}},
        ),
    ]
    tally = Biller(ROLES).tally(reads)
    assert {"table": 1.0 + 0.5 * 2, "store": 0.5} == dict(tally.rcu)
    assert 3 == tally.read_requests


def test_bookkeeping_streams_and_failures_are_counted_apart() -> None:
    """Checkpoint writes and stream reads are not a change's units; a failed condition is
    billed and counted."""
    requests = [
        Request("PutItem", "r", body={"TableName": "cp", "Item": {"id": s("shard")}}),
        Request("GetRecords", "r", streams=True),
        Request("DescribeTable", "r", body={"TableName": "orders"}),
        Request("PutItem", "r", ok=False, body={"TableName": "orders", "Item": {"pk": s("a")}}),
    ]
    tally = Biller(ROLES).tally(requests)
    assert {"PutItem:bookkeeping": 1} == dict(tally.bookkeeping)
    assert {"GetRecords": 1} == dict(tally.streams)
    assert {"DescribeTable": 1} == dict(tally.control)
    assert {"table": 1} == dict(tally.wcu)
    assert 1 == tally.failed


def test_the_report_renders_from_tallies_per_change() -> None:
    """The per-change figures and the printed table come from tallies alone: a result of two
    changes of every kind renders, with the totals over every place."""
    biller = Biller(ROLES)
    app = biller.tally(
        [Request("PutItem", "r", body={"TableName": "orders", "Item": {"pk": s("a")}})] * 2
    )
    point = {
        "application": app.per(2),
        "replication_at_source": biller.tally([]).per(2),
        "replication_per_destination": app.per(2),
        "total": total(app, app, changes=2),
    }
    expected = {"wcu": 2.0, "rcu": 0.0, "requests": 2.0, "write_requests": 2.0, "server_ms": 0.0}
    assert expected == point["total"]
    rate = {"changes_per_s": 10.0}
    result = {
        "run": {"delays_ms": [0.0, 40.0]},
        "cost": {"before": dict.fromkeys(KINDS, point)},
        "rates": {"before": {d: dict.fromkeys(WORKLOADS, rate) for d in ("0", "40")}},
    }
    printed = table(result)
    assert "1 PutItem:table" in printed
    assert "raw_delete" in printed
