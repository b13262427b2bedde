"""The Replicator's errors, destination by destination, over in-memory tables.

An error at one destination never keeps a version from the others. A permanent error (the
record cannot be applied there as it is) dead-letters the record with what happened at each
destination; a transient one reports it failed, to be retried.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import pytest
import ulid

from resolvers import LastWriterWins, Resolver, Side, UserRule
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.adapters.metrics import MemoryMetrics
from service.core import hlc
from service.core.apply import precondition_for
from service.core.stamp import stamp
from service.core.stored import Settings, read_item
from service.core.values import size_of
from service.core.version import encode_item
from service.engine.pipeline import MAX_ITEM_BYTES, RAW_NOT_ADOPTED, RecordResult, Replicator
from service.errors import ItemTooLargeError, RequestRejectedError
from service.ports import WriteResult
from tests.property.example_rules import union_tags

REGIONS = ("r0", "r1", "r2")
T0 = 1_700_000_000_000


def settings_for(resolver: Resolver) -> Settings:
    return Settings(regions=REGIONS, key_attributes=("pk",), resolver=resolver)


def write_locally(
    table: MemoryTable, data: dict[str, Any], *, at_ms: int, settings: Settings
) -> None:
    """A write through georep's stamping in ``table``'s region (what the SDK does)."""
    key = settings.keys_of(data)
    current = read_item(table.get(key), settings=settings)
    write_id = str(ulid.from_bytes(at_ms.to_bytes(6, "big") + at_ms.to_bytes(10, "big")))
    version = stamp(
        current,
        data,
        region=table.region,
        now_hlc=hlc.pack(at_ms),
        write_id=write_id,
        settings=settings,
    )
    assert version is not None
    item = encode_item(version, horizon_ms=settings.horizon_ms)
    assert table.write(key, item, precondition_for(current)).ok


def replicate(
    records: list[Any], *, settings: Settings, tables: Mapping[str, Any], dead: Any
) -> list[RecordResult]:
    """r0's Replicator (with its default thread pool) on one batch."""
    replicator = Replicator(
        region="r0", settings=settings, tables=tables, dead_letters=dead, metrics=MemoryMetrics()
    )
    try:
        return replicator.process(records)
    finally:
        replicator.close()


class WithDynamoDBSizeLimit:
    """An in-memory table that refuses items over 400 KB as DynamoDB does (DynamoTable turns
    that ValidationException into ItemTooLargeError)."""

    def __init__(self, inner: MemoryTable) -> None:
        self.inner = inner

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        return self.inner.get(key)

    def write(self, key: Mapping[str, Any], item: Any, precondition: Any) -> WriteResult:
        if item is not None and size_of(item) > MAX_ITEM_BYTES:
            raise ItemTooLargeError(f"{self.inner.region}: Item size has exceeded the limit")
        return self.inner.write(key, item, precondition)


class Refusing:
    """A table whose every request raises ``error`` (a rejection, or an outage)."""

    def __init__(self, error: Exception) -> None:
        self.error = error

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        raise self.error

    def write(self, key: Mapping[str, Any], item: Any, precondition: Any) -> WriteResult:
        raise self.error


def padded_to(limit: int, *, settings: Settings, at_ms: int) -> dict[str, Any]:
    """Data whose stamped item (georep metadata included) is exactly ``limit`` bytes."""
    data = {"pk": {"S": "big"}, "blob": {"S": ""}}
    scratch = MemoryTable("r0", ("pk",))
    for _ in range(3):
        write_locally(scratch, data, at_ms=at_ms, settings=settings)
        size = size_of(scratch.get({"pk": {"S": "big"}}) or {})
        data = {"pk": {"S": "big"}, "blob": {"S": "x" * (len(data["blob"]["S"]) + limit - size)}}
        scratch = MemoryTable("r0", ("pk",))
    write_locally(scratch, data, at_ms=at_ms, settings=settings)
    assert limit == size_of(scratch.get({"pk": {"S": "big"}}) or {})
    return data


def test_an_item_too_large_once_merged_at_one_destination_still_reaches_the_others() -> None:
    """r0 writes an item of 409,600 bytes (DynamoDB's limit, metadata included) while r1
    holds a concurrent small write. At r1 the merge outgrows the limit (the big write wins,
    and the joined vector is longer); r2, after it, must still get the big item, and the dead
    letter says what each destination did. (Issue 7, finding 4: r2 ended with neither.)"""
    settings = settings_for(LastWriterWins())
    memory = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    tables = {r: WithDynamoDBSizeLimit(t) for r, t in memory.items()}
    big = padded_to(MAX_ITEM_BYTES, settings=settings, at_ms=T0 + 1_000)
    write_locally(
        memory["r1"], {"pk": {"S": "big"}, "v": {"S": "small"}}, at_ms=T0, settings=settings
    )
    write_locally(memory["r0"], big, at_ms=T0 + 1_000, settings=settings)
    dead = MemoryDeadLetters()

    (result,) = replicate(
        memory["r0"].records_after(0), settings=settings, tables=tables, dead=dead
    )

    assert memory["r0"].get({"pk": {"S": "big"}}) == memory["r2"].get({"pk": {"S": "big"}})
    assert {"r1": "rejected", "r2": "applied"} == {
        d: x.handled for d, x in result.deliveries.items()
    }
    assert "dead-lettered" == result.status
    (entry,) = dead.entries
    assert "ItemTooLargeError" == entry["error"]
    assert ["r1", "r2"] == sorted(entry["destinations"])
    assert entry["destinations"]["r1"].startswith("rejected (ItemTooLargeError: item is 4")
    assert "applied (written)" == entry["destinations"]["r2"]


def explode(a: Side, b: Side) -> Mapping[str, Any]:
    raise ValueError("the user's rule has a bug")


def test_a_user_rule_raising_at_one_destination_does_not_skip_the_next() -> None:
    """A rule that raises on r1's conflict dead-letters the record for r1 only; r2, with
    nothing to merge, is written."""
    settings = settings_for(UserRule(explode, "explode"))
    tables = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    write_locally(tables["r1"], {"pk": {"S": "k"}, "v": {"S": "r1"}}, at_ms=T0, settings=settings)
    write_locally(tables["r0"], {"pk": {"S": "k"}, "v": {"S": "r0"}}, at_ms=T0, settings=settings)
    dead = MemoryDeadLetters()

    (result,) = replicate(
        tables["r0"].records_after(0), settings=settings, tables=tables, dead=dead
    )

    assert tables["r0"].get({"pk": {"S": "k"}}) == tables["r2"].get({"pk": {"S": "k"}})
    assert "dead-lettered" == result.status
    assert ["RuleError"] == [e["error"] for e in dead.entries]
    assert "applied (written)" == dead.entries[0]["destinations"]["r2"]


def test_a_rejected_request_is_dead_lettered_and_an_outage_is_retried() -> None:
    """A destination that rejects the request (permanent) dead-letters the record, one that
    is unreachable (transient) reports it failed without a dead letter; either way the other
    destination is written."""
    settings = settings_for(LastWriterWins())
    for error, status, letters in (
        (RequestRejectedError("r1: ValidationException: Type mismatch"), "dead-lettered", 1),
        (ConnectionError("r1 is unreachable"), "failed", 0),
    ):
        tables: dict[str, Any] = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
        tables["r1"] = Refusing(error)
        write_locally(
            tables["r0"], {"pk": {"S": "k"}, "v": {"S": "1"}}, at_ms=T0, settings=settings
        )
        dead = MemoryDeadLetters()

        (result,) = replicate(
            tables["r0"].records_after(0), settings=settings, tables=tables, dead=dead
        )

        assert status == result.status
        assert letters == len(dead.entries)
        assert tables["r0"].get({"pk": {"S": "k"}}) == tables["r2"].get({"pk": {"S": "k"}})


def test_a_later_version_waits_only_where_an_earlier_one_failed() -> None:
    """Two versions of one key in a batch, r1 unreachable: r2 gets both, r1 neither, and both
    records are reported failed (a retry must not let the later one overtake at r1)."""
    settings = settings_for(LastWriterWins())
    tables: dict[str, Any] = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    tables["r1"] = Refusing(ConnectionError("r1 is unreachable"))
    # An adopted raw write (to every region), then a stamped write on it (to the others):
    # different destinations, so neither is coalesced into the other.
    tables["r0"].put_raw({"pk": {"S": "k"}, "v": {"S": "1"}})
    write_locally(tables["r0"], {"pk": {"S": "k"}, "v": {"S": "2"}}, at_ms=T0, settings=settings)
    dead = MemoryDeadLetters()

    results = replicate(tables["r0"].records_after(0), settings=settings, tables=tables, dead=dead)

    assert ["failed", "failed"] == [r.status for r in results]
    assert "waiting" == results[1].deliveries["r1"].handled
    assert {"S": "2"} == tables["r2"].get({"pk": {"S": "k"}})["v"]
    assert [] == dead.entries


class UnreachableDeadLetters:
    def put(self, **_: Any) -> None:
        raise ConnectionError("the dead-letter table is unreachable")


@pytest.mark.parametrize("record", [{"eventName": "TRUNCATE"}, None])
def test_a_record_that_cannot_be_dead_lettered_is_reported_failed(
    record: dict[str, Any] | None,
) -> None:
    """A record is only let go once it is safe somewhere: if the dead-letter table cannot
    take it, it is reported failed and retried. (Both kinds: refused before any destination,
    and rejected at one.)"""
    settings = settings_for(LastWriterWins())
    tables: dict[str, Any] = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    tables["r1"] = Refusing(RequestRejectedError("r1: AccessDeniedException: not authorized"))
    write_locally(tables["r0"], {"pk": {"S": "k"}, "v": {"S": "1"}}, at_ms=T0, settings=settings)
    records = [record] if record is not None else tables["r0"].records_after(0)

    (result,) = replicate(records, settings=settings, tables=tables, dead=UnreachableDeadLetters())

    assert "failed" == result.status
    assert result.reason.startswith("dead-lettering failed: ConnectionError")


def test_under_merge_rules_an_adoption_reaches_other_regions_only_after_its_own_with_threads() -> (
    None
):
    """The adoption gate with real writer threads: while r0's own table holds its write back,
    no other region is written; a second raw write of the key, submitted meanwhile, keeps its
    order behind the first everywhere; once r0's write lands, the first reaches every region,
    and the second as the successor r0 wrote for it."""
    import threading

    from tests.property import example_rules

    settings = settings_for(UserRule(example_rules.union_tags, "union_tags"))
    tables = {r: MemoryTable(r, ("pk",), now_ms=lambda: T0) for r in REGIONS}
    release, holding = threading.Event(), threading.Event()

    def hold(key: Mapping[str, Any]) -> None:
        holding.set()
        assert release.wait(10)

    tables["r0"].before_write = hold
    tables["r0"].put_raw({"pk": {"S": "k"}, "val": {"S": "a"}})
    tables["r0"].put_raw({"pk": {"S": "k"}, "val": {"S": "b"}})
    replicator = Replicator(
        region="r0",
        settings=settings,
        tables=tables,
        dead_letters=MemoryDeadLetters(),
        metrics=MemoryMetrics(),
        now_ms=lambda: T0,
    )
    try:
        first = replicator.submit(tables["r0"].records_after(0, limit=1))
        assert holding.wait(10)
        second = replicator.submit(tables["r0"].records_after(1, limit=1))
        assert tables["r1"].get({"pk": {"S": "k"}}) is None
        assert tables["r2"].get({"pk": {"S": "k"}}) is None
        tables["r0"].before_write = None
        release.set()
        first.wait()
        second.wait()
        # The second raw write's adoption met its data annotated with the first's and wrote a
        # successor of both in r0, which goes out from its own record (`_Gate`, superseded).
        rest = replicator.process(tables["r0"].records_after(2))
    finally:
        replicator.close()
    assert [r.status for r in first.results + second.results] == ["ok", "ok"]
    assert all(r.status == "ok" for r in rest)
    values = {r: tables[r].get({"pk": {"S": "k"}})["val"]["S"] for r in ("r1", "r2")}  # type: ignore[index]
    assert {"r1": "b", "r2": "b"} == values


def test_under_merge_rules_a_version_meeting_a_raw_item_waits_until_it_is_adopted() -> None:
    """r0's write reaches r1 while r1 holds a raw write its own consumer has not adopted:
    the delivery fails (retried, nothing dead-lettered), r2 is written, and r1 is left raw,
    even though the item holds exactly the metadata the no-read path would expect (none).
    Once r1's consumer has adopted its raw write, the retry merges the two."""
    settings = settings_for(UserRule(union_tags, "union_tags"))
    tables: dict[str, Any] = {r: MemoryTable(r, ("pk",)) for r in REGIONS}
    for region in ("r0", "r1"):  # the same raw item in both: r0's write is over "no metadata"
        tables[region].put_raw({"pk": {"S": "k"}, "tags": {"SS": ["raw"]}})
    write_locally(
        tables["r0"], {"pk": {"S": "k"}, "tags": {"SS": ["r0"]}}, at_ms=T0, settings=settings
    )
    dead = MemoryDeadLetters()
    forward = tables["r0"].records_after(1)
    metrics = MemoryMetrics()
    replicator = Replicator(
        region="r0", settings=settings, tables=tables, dead_letters=dead, metrics=metrics
    )

    (result,) = replicator.process(forward)

    assert "failed" == result.status
    assert RAW_NOT_ADOPTED == result.deliveries["r1"].error
    assert {"SS": ["raw"]} == tables["r1"].get({"pk": {"S": "k"}})["tags"]
    assert "applied" == result.deliveries["r2"].handled
    assert [] == dead.entries
    assert 1 == metrics.total("deferred_behind_raw")

    adopting = Replicator(
        region="r1", settings=settings, tables=tables, dead_letters=dead, metrics=metrics
    )
    assert ["ok"] == [r.status for r in adopting.process(tables["r1"].records_after(0))]
    (retried,) = replicator.process(forward)
    replicator.close()
    adopting.close()

    assert "ok" == retried.status
    assert {"SS": ["r0", "raw"]} == tables["r1"].get({"pk": {"S": "k"}})["tags"]
