"""What ``georep status`` knows about a region, read from another process.

Nothing here asks the consumer: status reads what the consumer leaves behind and the stream
itself, so it works whether the consumer runs, halted or never started.

* checkpoints, the followed stream and needs-repair markers: the checkpoint table
  (service/adapters/checkpoints.py);
* the consumer's heartbeat (latest poll, last error, write-to-applied lag): the same table
  (service/engine/heartbeat.py);
* dead letters: the region's dead-letter table (only their ids are read);
* with the tombstone store (``[replication] tombstone_store``, issue 22), the region's store:
  whether it exists (DescribeTable, whose ItemCount is DynamoDB's estimate, refreshed about
  every six hours) and its TTL (DescribeTimeToLive);
* the stream's shards (DescribeStream) and, per unfinished shard, the oldest record after its
  checkpoint: one GetShardIterator (AFTER_SEQUENCE_NUMBER the checkpoint, or TRIM_HORIZON) and
  one GetRecords with Limit=1. Its ApproximateCreationDateTime gives the *iterator age*: how
  old the oldest record the consumer has not applied is (0 when nothing is waiting). How many
  records are behind is not counted: that would mean reading them all.

:func:`observe_region` does the reading (I/O); everything below it is plain functions of the
:class:`RegionView` it returns and the time, which the unit tests call directly.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.adapters.checkpoints import DynamoCheckpointTable, RepairMarker
from service.adapters.deadletter import DynamoDeadLetters
from service.adapters.dynamo import require, unless_missing
from service.config import Config
from service.core.version import TTL_ATTR
from service.engine.heartbeat import SAVE_EVERY_SECONDS
from service.engine.streams import AWS_ERRORS, error_code
from service.ports import ConsumerStatus, ShardState

ShardPhase = Literal["finished", "reading", "unread", "waiting", "gone"]

# A consumer that has not saved its status for this long is not polling (it saves every 5 s).
SILENT_AFTER_SECONDS = 12 * SAVE_EVERY_SECONDS


@dataclass(frozen=True)
class ShardView:
    """One shard of the followed stream. ``oldest_unread``: the creation time (epoch seconds)
    of the first record after the checkpoint, None if there is none or it was not looked for
    (finished shards); ``probe_error``: why it could not be looked for."""

    shard_id: str
    parent: str | None
    phase: ShardPhase
    checkpoint: str | None
    oldest_unread: float | None = None
    probe_error: str | None = None


@dataclass(frozen=True)
class StoreView:
    """The region's tombstone store (one per region, every table's tombstones).

    ``item_count``: DescribeTable's ItemCount, an estimate DynamoDB refreshes about every six
    hours (the tombstones of every table, and store items that only record deletions);
    ``ttl_status``: DescribeTimeToLive's (``ENABLED``, ``ENABLING``, ``DISABLED``,
    ``DISABLING``), ``ttl_attribute`` the attribute it is on."""

    table: str
    exists: bool
    item_count: int | None = None
    ttl_status: str | None = None
    ttl_attribute: str | None = None


@dataclass(frozen=True)
class RegionView:
    region: str
    table: str
    stream_arn: str | None = None  # the stream the consumer follows (or would start with)
    followed: bool = False  # False: no consumer ever followed a stream of this table
    latest_stream_arn: str | None = None  # the table's current stream
    shards: tuple[ShardView, ...] = ()
    consumer: ConsumerStatus | None = None
    dead_letters: int | None = None
    markers: tuple[RepairMarker, ...] = ()
    store: StoreView | None = None  # None: deletes leave tombstones in the table (no store)
    error: str | None = None  # what kept the region from being read


# -- reading (I/O) ---------------------------------------------------------------------------


def observe_region(
    config: Config, region: str, *, dynamodb: Any, streams: Any, letters_of: str | None = None
) -> RegionView:
    """Read everything status shows about ``region``'s table (``config`` names one). AWS
    errors end up in ``error`` (the region is then a problem), never raised: one unreachable
    region does not hide the others. ``letters_of``: count only that table's dead letters
    (several tables share the dead-letter table)."""
    table = config.table_name(region)
    checkpoints = DynamoCheckpointTable(
        dynamodb, table_name=config.replication.checkpoint_table, replica_table=table
    )
    letters = DynamoDeadLetters(dynamodb, table_name=config.replication.dead_letter_table)
    try:
        described = require(
            dynamodb.describe_table(TableName=table), "Table", operation="DescribeTable"
        )
        latest = described.get("LatestStreamArn")
        followed = unless_missing(checkpoints.followed_stream, None)
        consumer = unless_missing(checkpoints.consumer_status, None)
        markers = tuple(unless_missing(checkpoints.repair_markers, []))
        count = unless_missing(lambda: letters.count(table=letters_of), 0)
        arn = followed or latest
        shards: tuple[ShardView, ...] = ()
        if arn:
            saved = unless_missing(checkpoints.for_stream(arn).load, {})
            shards = tuple(_shards(streams, arn, saved))
        replication = config.replication
        store = (
            _store(dynamodb, replication.tombstone_table) if replication.tombstone_store else None
        )
    except AWS_ERRORS as error:
        return RegionView(region, table, error=f"{error_code(error)}: {error}")
    return RegionView(
        region,
        table,
        stream_arn=arn,
        followed=followed is not None,
        latest_stream_arn=latest,
        shards=shards,
        consumer=consumer,
        dead_letters=count,
        markers=markers,
        store=store,
    )


def _store(dynamodb: Any, name: str) -> StoreView:
    """The tombstone store ``name`` as DescribeTable and DescribeTimeToLive see it."""
    described = unless_missing(
        lambda: require(
            dynamodb.describe_table(TableName=name), "Table", operation="DescribeTable"
        ),
        None,
    )
    if described is None:
        return StoreView(name, exists=False)
    none: dict[str, Any] = {}
    ttl = unless_missing(
        lambda: dynamodb.describe_time_to_live(TableName=name).get("TimeToLiveDescription", {}),
        none,
    )
    count = described.get("ItemCount")
    return StoreView(
        name,
        exists=True,
        item_count=count if isinstance(count, int) else None,
        ttl_status=ttl.get("TimeToLiveStatus"),
        ttl_attribute=ttl.get("AttributeName"),
    )


def _listing(streams: Any, arn: str) -> list[Mapping[str, Any]]:
    shards: list[Mapping[str, Any]] = []
    start: str | None = None
    while True:
        kwargs = {"StreamArn": arn} | ({"ExclusiveStartShardId": start} if start else {})
        description = streams.describe_stream(**kwargs)["StreamDescription"]
        shards.extend(description.get("Shards", []))
        start = description.get("LastEvaluatedShardId")
        if not start:
            return shards


def _shards(streams: Any, arn: str, saved: Mapping[str, ShardState]) -> list[ShardView]:
    listed = {s["ShardId"]: s.get("ParentShardId") for s in _listing(streams, arn)}
    out = []
    for shard_id in sorted(set(listed) | {s for s, st in saved.items() if not st.finished}):
        state = saved.get(shard_id, ShardState())
        phase = shard_phase(shard_id, state=state, listed=listed, saved=saved)
        view = ShardView(shard_id, listed.get(shard_id), phase, state.sequence)
        if phase in ("reading", "unread", "waiting"):
            oldest, problem = _oldest_unread(streams, arn, shard_id, state.sequence)
            view = ShardView(shard_id, view.parent, phase, state.sequence, oldest, problem)
        out.append(view)
    return out


def _oldest_unread(
    streams: Any, arn: str, shard_id: str, sequence: str | None
) -> tuple[float | None, str | None]:
    """The creation time of the first record after ``sequence`` (None: nothing there)."""
    position: dict[str, str] = (
        {"ShardIteratorType": "AFTER_SEQUENCE_NUMBER", "SequenceNumber": sequence}
        if sequence
        else {"ShardIteratorType": "TRIM_HORIZON"}
    )
    try:
        iterator = streams.get_shard_iterator(StreamArn=arn, ShardId=shard_id, **position)
        records = streams.get_records(ShardIterator=iterator["ShardIterator"], Limit=1)
    except AWS_ERRORS as error:
        return None, error_code(error)
    for record in records.get("Records", []):
        created = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
        if isinstance(created, dt.datetime):
            return created.timestamp(), None
        if isinstance(created, int | float):
            return float(created), None
    return None, None


# -- what it means (pure) --------------------------------------------------------------------


def shard_phase(
    shard_id: str,
    *,
    state: ShardState,
    listed: Mapping[str, str | None],
    saved: Mapping[str, ShardState],
) -> ShardPhase:
    """Where the consumer is with a shard, by the reader's rules (service/engine/streams.py): a
    child
    waits for a listed parent that is not finished; a shard that left the listing unfinished
    took its unread records with it (the consumer marks that for repair)."""
    if state.finished:
        return "finished"
    if shard_id not in listed:
        return "gone"
    parent = listed[shard_id]
    if parent is not None and parent in listed and not saved.get(parent, ShardState()).finished:
        return "waiting"
    return "reading" if state.sequence is not None else "unread"


def iterator_age(view: RegionView, *, now: float) -> float | None:
    """Seconds since the oldest record the consumer has not applied was written (0: none);
    None when the stream could not be read."""
    if view.error is not None or view.stream_arn is None:
        return None
    ages = [max(now - s.oldest_unread, 0.0) for s in view.shards if s.oldest_unread is not None]
    return max(ages, default=0.0)


def needs_repair(view: RegionView) -> bool:
    return bool(view.markers)


def store_problem(view: RegionView) -> str | None:
    """What is wrong with the region's tombstone store, for people (None: nothing, or no store).

    A missing store stops more than deletes: with the store every write that reads the key
    (an insert, a delete, a conflict, an adoption) reads the store too, and fails until it
    exists. TTL off (or on another attribute) never collects tombstones: the store grows for
    ever, though replication stays correct. ENABLING counts as on (it is on its way).
    """
    store = view.store
    if store is None or view.error is not None:
        return None
    if not store.exists:
        return (
            f"tombstone store {store.table} does not exist: deletes and inserts cannot be "
            "applied in this region until it does (georep init, or starting a consumer, "
            "creates it)"
        )
    status = store.ttl_status or "DISABLED"
    if status not in ("ENABLED", "ENABLING"):
        return (
            f"tombstone store {store.table} has TTL {status}: its tombstones are never "
            f"collected (georep init turns TTL on, on {TTL_ATTR})"
        )
    if store.ttl_attribute != TTL_ATTR:
        return (
            f"tombstone store {store.table} has TTL on {store.ttl_attribute}, not {TTL_ATTR}: "
            "its tombstones are never collected (turn TTL off, then georep init turns it on "
            f"{TTL_ATTR})"
        )
    return None


def is_problem(view: RegionView) -> bool:
    """What makes ``georep status`` exit 1: a region needing repair, one it could not read, or
    a tombstone store that is missing or never collected (`store_problem`)."""
    return needs_repair(view) or view.error is not None or store_problem(view) is not None


def consumer_state(status: ConsumerStatus | None, *, now: float) -> str:
    """``polling``, ``stopped``, ``silent`` (no heartbeat for a minute: crashed, hung, or
    cut off) or ``never ran``."""
    if status is None:
        return "never ran"
    if status.stopped:
        return "stopped"
    if status.polled_at is None or now - status.polled_at > SILENT_AFTER_SECONDS:
        return "silent"
    return "polling"


def ago(seconds: float | None) -> str:
    """A duration for people: ``0.4 s``, ``12 s``, ``5 min``, ``3.2 h``, ``2.0 d``."""
    if seconds is None:
        return "-"
    seconds = max(seconds, 0.0)
    if seconds < 10:
        return f"{seconds:.1f} s"
    if seconds < 120:
        return f"{seconds:.0f} s"
    if seconds < 7200:
        return f"{seconds / 60:.0f} min"
    if seconds < 172_800:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86_400:.1f} d"


def at(epoch: float | None, *, now: float) -> str:
    """``2026-11-30 01:06:29 UTC (5 min ago)``."""
    if epoch is None:
        return "-"
    stamp = dt.datetime.fromtimestamp(epoch, tz=dt.UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
    return f"{stamp} ({ago(now - epoch)} ago)"


def stream_label(arn: str | None) -> str:
    """The part of a stream ARN that tells streams of one table apart (its label)."""
    if not arn:
        return "-"
    return arn.rsplit("/stream/", 1)[-1]


REGION_COLUMNS = (
    "region",
    "table",
    "stream",
    "shards",
    "iterator_age",
    "replication_lag",
    "dead_letters",
    "consumer",
    "needs_repair",
)
SHARD_COLUMNS = ("region", "table", "shard", "parent", "state", "checkpoint", "oldest_unread")


def region_record(view: RegionView, *, now: float) -> dict[str, Any]:
    """One region as data (``--json``): seconds as numbers, times as epoch seconds."""
    phases: dict[str, int] = {}
    for shard in view.shards:
        phases[shard.phase] = phases.get(shard.phase, 0) + 1
    status = view.consumer
    return {
        "region": view.region,
        "table": view.table,
        "stream": view.stream_arn,
        "shards": phases,
        "iterator_age": iterator_age(view, now=now),
        "replication_lag": status.lag_seconds if status else None,
        "dead_letters": view.dead_letters,
        "consumer": {
            "state": consumer_state(status, now=now),
            "polled_at": status.polled_at if status else None,
            "started_at": status.started_at if status else None,
            "applied": status.applied if status else 0,
            "dead_lettered": status.dead_lettered if status else 0,
            "follows_latest_stream": view.stream_arn == view.latest_stream_arn,
            "last_error": status.last_error if status else None,
            "last_error_at": status.last_error_at if status else None,
        },
        "needs_repair": [
            {"reason": m.reason, "marked_at": m.marked_at, "stream": m.stream_arn}
            for m in view.markers
        ],
        "error": view.error,
        "tombstone_store": store_record(view),
    }


def store_record(view: RegionView) -> dict[str, Any] | None:
    """The region's tombstone store as data (``None``: deletes use no store)."""
    store = view.store
    if store is None:
        return None
    return {
        "table": store.table,
        "exists": store.exists,
        "item_count": store.item_count,
        "ttl": store.ttl_status,
        "ttl_attribute": store.ttl_attribute,
        "problem": store_problem(view),
    }


def store_cell(view: RegionView) -> str:
    """The region's tombstone store in one cell: ``georep-tombstones, ~12 items, TTL on``."""
    store = view.store
    if store is None or view.error is not None:
        return "-"
    if not store.exists:
        return f"{store.table} MISSING"
    count = store.item_count
    count_text = "? items" if count is None else f"~{count:,} item{'' if count == 1 else 's'}"
    status = store.ttl_status or "DISABLED"
    ttl = {"ENABLED": "on", "ENABLING": "turning on"}.get(status, status.lower())
    if status in ("ENABLED", "ENABLING") and store.ttl_attribute != TTL_ATTR:
        ttl = f"on {store.ttl_attribute}"
    problem = " (PROBLEM)" if store_problem(view) is not None else ""
    return f"{store.table}, {count_text}, TTL {ttl}{problem}"


def region_row(view: RegionView, *, now: float) -> tuple[str, ...]:
    """One region for people."""
    if view.error is not None:
        return (view.region, view.table, f"unreadable: {view.error}", *(("-",) * 5), "unknown")
    record = region_record(view, now=now)
    stream = stream_label(view.stream_arn)
    if not view.followed:
        stream += " (not followed yet)"
    elif view.latest_stream_arn and view.latest_stream_arn != view.stream_arn:
        stream += f" (then {stream_label(view.latest_stream_arn)})"
    shards = ", ".join(f"{n} {phase}" for phase, n in sorted(record["shards"].items())) or "-"
    status = view.consumer
    if status is None:
        lag = "-"
    else:
        lag = "idle" if status.lag_seconds is None else ago(status.lag_seconds)
    consumer = consumer_state(status, now=now)
    if status is not None and status.polled_at is not None:
        consumer += f", polled {ago(now - status.polled_at)} ago"
    repair = f"YES ({len(view.markers)})" if view.markers else "no"
    dead = "-" if view.dead_letters is None else str(view.dead_letters)
    age = ago(record["iterator_age"])
    return (view.region, view.table, stream, shards, age, lag, dead, consumer, repair)


def shard_rows(view: RegionView, *, now: float, finished: bool = False) -> list[tuple[Any, ...]]:
    """The region's shards for people (finished ones only if ``finished``)."""
    rows = []
    for shard in view.shards:
        if shard.phase == "finished" and not finished:
            continue
        if shard.probe_error is not None:
            unread = f"unknown ({shard.probe_error})"
        elif shard.oldest_unread is None:
            unread = "none" if shard.phase != "finished" else "-"
        else:
            unread = f"{ago(now - shard.oldest_unread)} old"
        rows.append(
            (
                view.region,
                view.table,
                shard.shard_id,
                shard.parent,
                shard.phase,
                shard.checkpoint,
                unread,
            )
        )
    return rows


def shard_record(view: RegionView, shard: ShardView) -> dict[str, Any]:
    return {
        "region": view.region,
        "table": view.table,
        "shard": shard.shard_id,
        "parent": shard.parent,
        "state": shard.phase,
        "checkpoint": shard.checkpoint,
        "oldest_unread": shard.oldest_unread,
        "probe_error": shard.probe_error,
    }


def notes(view: RegionView, *, now: float, tables: bool = False) -> dict[str, str]:
    """The long lines a table cell cannot hold: each repair marker's reason, the last error
    (``tables``: several tables are shown, so each line names its table too)."""
    out = {}
    where = f"{view.region} {view.table}" if tables else view.region
    for number, marker in enumerate(view.markers, start=1):
        suffix = f" #{number}" if len(view.markers) > 1 else ""
        out[f"{where} needs repair{suffix}"] = (
            f"{marker.reason} (marked {at(marker.marked_at or None, now=now)}; "
            "georep verify --repair mends and clears it)"
        )
    problem = store_problem(view)
    if problem is not None:
        out[f"{where} tombstone store"] = problem
    status = view.consumer
    if status is not None and status.last_error is not None:
        out[f"{where} last error"] = f"{status.last_error} ({at(status.last_error_at, now=now)})"
    return out
