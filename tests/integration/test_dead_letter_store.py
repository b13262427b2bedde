"""The dead-letter table over HTTP against its in-memory fake: the same letters, updates and
removals, and records (binary values, stream times) back exactly as they were read."""

from __future__ import annotations

import dataclasses
import datetime as dt
import random
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.adapters.deadletter import DeadLetter, DynamoDeadLetters, MemoryDeadLetters

pytestmark = pytest.mark.integration

REGION = "eu-west-1"

RECORD: dict[str, Any] = {
    "eventName": "MODIFY",
    "dynamodb": {
        "Keys": {"pk": {"B": b"\x00\xffkey"}},
        "NewImage": {
            "pk": {"B": b"\x00\xffkey"},
            "bs": {"BS": [b"\x01", b"\x02"]},
            "n": {"N": "1.50"},
            "m": {"M": {"s": {"S": "héllo"}, "l": {"L": [{"NULL": True}]}}},
        },
        "SequenceNumber": "1100000000017454423009",
        "ApproximateCreationDateTime": dt.datetime(2026, 11, 30, 1, 6, 29, tzinfo=dt.UTC),
    },
}


def comparable(letter: DeadLetter) -> DeadLetter:
    """Ids and times are each store's own."""
    replayed = None if letter.replayed_at is None else 0
    return dataclasses.replace(letter, id="", at=0, replayed_at=replayed)


def test_the_dead_letter_table_and_its_fake_agree_and_records_come_back_exactly(
    backend: EmbeddedBackend,
) -> None:
    client = backend.client("dynamodb", REGION)
    real = DynamoDeadLetters(client, table_name="georep-dead-letters")
    real.ensure_table()
    fake = MemoryDeadLetters()
    # Incompressible: stored in two parts (service/adapters/deadletter.py's PART_BYTES).
    big = {"eventName": "INSERT", "blob": random.Random(0).randbytes(400_000)}
    for store in (real, fake):
        store.put(
            region=REGION,
            record=RECORD,
            reason="rejected by us-east-1: RuleError: rule raised",
            error="RuleError",
            destinations={"us-east-1": "rejected (RuleError: ...)", "ap-southeast-2": "applied"},
        )
        store.put(
            region=REGION,
            record=big,
            reason="too large",
            error="ItemTooLargeError",
            destinations={},
        )
    assert [comparable(x) for x in fake.letters()] == [comparable(x) for x in real.letters()]
    first, second = real.letters()
    assert (RECORD, big) == (first.record, second.record)
    assert 2 == real.count() == fake.count()
    items = lambda: client.scan(TableName=real.table_name, Select="COUNT")["Count"]  # noqa: E731
    assert 3 == items()  # the large record in two parts
    assert first == real.letter(first.id)
    assert None is real.letter("01NOSUCHLETTER00000000000")

    for store in (real, fake):
        [one, _] = store.letters()
        assert store.update(one.id, reason="still", error="RuleError", destinations={"a": "b"})
        [two] = [x for x in store.letters() if x.id != one.id]
        assert store.remove(two.id)
        assert not store.remove(two.id)
        assert not store.update(two.id, reason="x", error="y", destinations={})
    assert [comparable(x) for x in fake.letters()] == [comparable(x) for x in real.letters()]
    [kept] = real.letters()
    assert (1, "still", {"a": "b"}) == (kept.replays, kept.reason, dict(kept.destinations))
    assert 1 == real.count() == items()  # the large one removed with its part
