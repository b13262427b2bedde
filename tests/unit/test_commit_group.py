"""`commit_group` (issue 24): what each entry of a cancelled TransactWriteItems became, as the
DynamoDB adapter reads DynamoDB's reasons, and the model's ClientRequestToken. The outcomes
against the moto server are in tests/integration/test_differential.py."""

from __future__ import annotations

from typing import Any

import pytest
from botocore.exceptions import ClientError

from service.adapters.dynamo import DynamoTable
from service.adapters.memory import MemoryTable
from service.core.apply import ExpectAbsent
from service.core.groups import Entry
from service.errors import RequestRejectedError
from service.ports import Step

KEYS = [{"pk": {"S": k}} for k in ("a", "b", "c")]


def put(key: dict[str, Any]) -> Entry:
    return Entry(key, table=Step(ExpectAbsent(), {**key, "v": {"S": "1"}}))


class Cancelling:
    """A client whose TransactWriteItems is cancelled with ``reasons``, one per action."""

    def __init__(self, reasons: list[dict[str, Any]], code: str = "TransactionCanceledException"):
        self.reasons, self.code = reasons, code
        self.requests: list[dict[str, Any]] = []

    def transact_write_items(self, **request: Any) -> None:
        self.requests.append(request)
        response: Any = {
            "Error": {"Code": self.code, "Message": "cancelled"},
            "CancellationReasons": self.reasons,
        }
        raise ClientError(response, "TransactWriteItems")


def adapter(client: Any) -> DynamoTable:
    return DynamoTable(client, table_name="orders", key_attributes=("pk",))


def test_each_entry_of_a_cancelled_group_is_refused_rejected_or_not_applied() -> None:
    held = {**KEYS[0], "v": {"S": "there"}}
    client = Cancelling(
        [
            {"Code": "ConditionalCheckFailed", "Item": held},
            {"Code": "None"},
            {"Code": "ValidationError", "Message": "Item size has exceeded the maximum"},
        ]
    )
    refused, untouched, rejected = adapter(client).commit_group([put(k) for k in KEYS], token="t-1")
    assert refused is not None and not isinstance(refused, Exception)
    assert (False, frozenset({"table"}), held) == (refused.ok, refused.failed, refused.table)
    assert untouched is None
    assert isinstance(rejected, RequestRejectedError) and "size" in str(rejected)
    assert "t-1" == client.requests[0]["ClientRequestToken"]


@pytest.mark.parametrize(
    "reasons",
    [
        [{"Code": "None"}, {"Code": "TransactionConflict"}, {"Code": "None"}],
        [{"Code": "ThrottlingError"}, {"Code": "None"}, {"Code": "None"}],
        [],  # no reasons at all: nothing to blame an entry for
    ],
)
def test_a_group_cancelled_for_no_entrys_fault_raises_to_be_sent_again_whole(
    reasons: list[dict[str, Any]],
) -> None:
    with pytest.raises(ClientError):
        adapter(Cancelling(reasons)).commit_group([put(k) for k in KEYS])


def test_a_group_over_the_limit_or_with_a_key_twice_is_the_callers_error() -> None:
    table = MemoryTable("r0", ("pk",))
    with pytest.raises(ValueError, match="one key"):
        table.commit_group([put(KEYS[0]), put(KEYS[0])])
    many = [put({"pk": {"S": str(n)}}) for n in range(101)]
    with pytest.raises(ValueError, match="100"):
        table.commit_group(many)


def test_the_models_group_retried_with_its_token_is_applied_once() -> None:
    table = MemoryTable("r0", ("pk",))
    entries = [put(k) for k in KEYS]
    assert all(r is not None and r.ok for r in table.commit_group(entries, token="t"))
    records = len(table.stream)
    # The answer was lost; the same group is sent again with the same token.
    assert all(r is not None and r.ok for r in table.commit_group(entries, token="t"))
    assert records == len(table.stream) == 3
    # Without the token its conditions are evaluated again: every entry is refused.
    again = table.commit_group(entries)
    assert all(r is not None and not r.ok for r in again)
