"""A Hypothesis state machine: regions, local writers, stream consumers and a hostile network.

Each region's consumer is the product's: a :class:`service.engine.pipeline.Replicator` over the
in-memory tables (its lanes run inline, so the schedule is Hypothesis's) and the
:class:`service.engine.checkpoint.CheckpointTracker`. The model only reads streams, hands batches to
the Replicator and keeps what it reports failed for redelivery; every decision (echo, adoption,
coalescing, the fast path, conflict retries) is the product's own code.

Fault model (STYLE.md 17): delivery is at-least-once and ordered only per item per source
stream; deliveries are delayed arbitrarily and reordered across keys and sources (a batch takes
the first waiting records of some keys); a consumer may crash and restart from its last
checkpoint (later records are redelivered); region clocks are skewed and biased towards ties;
just before any of the Replicator's conditional writes, a local write of the same item (stamped
or raw) or an outage of that destination may land (MemoryTable's ``before_write`` hook). Writes
are acknowledged with unique values, so every final state traces to exactly one version (the
idea behind Elle).

Subclasses choose the resolver and how a writer builds new data from what it read.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from decimal import Decimal
from typing import Any, ClassVar, Literal

import ulid
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from resolvers import LastWriterWins, Resolver, VersionCounter
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable, key_string
from service.adapters.metrics import MemoryMetrics
from service.core import hlc
from service.core.adopt import Adopt, Forward
from service.core.apply import merge, precondition_for
from service.core.places import KeyState, commit_for, read_key
from service.core.residency import identity, residency_of
from service.core.stamp import stamp, waits_for_adoption
from service.core.stored import Raw, Settings, Stamped, read_item, tombstone_expired
from service.core.values import digest
from service.core.version import META_ATTR, Meta, Order, Version, data_of, encode_item
from service.engine.checkpoint import CheckpointTracker
from service.engine.pipeline import RAW_NOT_ADOPTED, InlineExecutor, RecordResult, Replicator
from tests.property.truth import Truth

KEYS = ("k0", "k1", "k2")
HORIZON_MS = 10**12  # no tombstone expires here; test_collection.py models collection
# Wider than the 60 attributes the conditions once pinned, and than DynamoDB's 4 KB expression
# limit could pin (test_a_raw_rmw_overwritten_before_adoption_with_62_attributes...).
WIDE_ATTRIBUTES = 61


def item_for(version: Version, horizon_ms: int = HORIZON_MS) -> dict[str, Any] | None:
    """The item a version is written as (``None`` would be a hard delete). A seam so the
    teeth tests can break tombstones."""
    return encode_item(version, horizon_ms=horizon_ms)


class Unreachable(ConnectionError):
    """The model's network fault: a destination that cannot be reached right now (transient,
    so the Replicator reports the record failed and the consumer redelivers it)."""


# The failures a delivery may report in the model: an injected outage, or (under merge rules)
# a version deferred behind a raw item its destination's consumer has not adopted yet.
OUTAGES = frozenset({Unreachable.__name__, RAW_NOT_ADOPTED})


# What may land just before one of the Replicator's conditional writes (weights by repetition;
# the first is "nothing", what Hypothesis shrinks towards): a local write of the same item, or
# an outage of the destination.
RACES = (
    ("none",) * 6
    + ("sdk_put", "sdk_delete", "raw_put", "raw_rmw", "raw_delete")
    + ("unreachable",) * 2
)
MAX_RACES = 3  # local writes per delivery: contention stays far below the Replicator's limit

Race = Callable[[], None]
Position = int
Pending = tuple[Position, dict[str, Any]]


class ReplicationMachine(RuleBasedStateMachine):
    resolver: ClassVar[Resolver]
    horizon_ms: ClassVar[int] = HORIZON_MS
    # Raw copies of another region's item (backups, copy scripts) and items wider than any
    # condition could pin. Merge-rule machines leave both out: a copy of older data removes
    # merged elements only where it is not merged with a concurrent version, so the oracle's
    # "resolver folded over the frontier" does not describe it (docs/design.md).
    copies: ClassVar[bool] = True
    wide_items: ClassVar[bool] = True
    # An application's read-modify-write whose read and write are two requests, with other
    # writes (a replicated delete, a version) landing between them: it writes back the
    # ``_georep`` it read over whatever the table holds by then (the chaos workload's raw
    # read-modify-write). Merge-rule machines leave it out, as copies: data read before a
    # concurrent write drops that write's elements without merging them.
    stale_reads: ClassVar[bool] = True
    # Tombstones in each region's tombstone store, not the table (issue 22): the table holds
    # live items only, and a key's state is the table's item, else the store's tombstone.
    store: ClassVar[bool] = False

    # -- how writers build data (overridden for rule resolvers) ------------------------------

    def new_data(self, key: str, value: str, current: dict[str, Any] | None) -> dict[str, Any]:
        return {"pk": {"S": key}, "val": {"S": value}}

    def widen(self, data: dict[str, Any], value: str) -> dict[str, Any]:
        """Make ``data`` wider than any condition could pin: WIDE_ATTRIBUTES more attributes,
        one of them carrying the write's unique value (so two wide writes differ in it)."""
        extra = {f"w{i:03d}": {"S": value if i == 0 else "pad"} for i in range(WIDE_ATTRIBUTES)}
        return {**data, **extra}

    # -- set-up ------------------------------------------------------------------------------

    @initialize(
        n=st.integers(2, 5),
        nkeys=st.integers(2, 3),
        skews=st.lists(st.sampled_from([0, 0, 0, 1, -1, 2, -250, 900]), min_size=5, max_size=5),
    )
    def setup(self, n: int, nkeys: int, skews: list[int]) -> None:
        self.start(n, nkeys, skews)

    def make_settings(self) -> Settings:
        """The core's settings for this run (the residency machine adds its rules)."""
        return Settings(
            regions=tuple(self.regions),
            key_attributes=("pk",),
            resolver=self.resolver,
            horizon_ms=self.horizon_ms,
            tombstone_store=self.store,
        )

    def start(self, n: int, nkeys: int, skews: list[int]) -> None:
        self.regions = [f"r{i}" for i in range(n)]
        self.keys = KEYS[:nkeys]
        self.now = 1_700_000_000_000
        self.skew = dict(zip(self.regions, skews, strict=False))
        self.tables = {
            r: MemoryTable(r, ("pk",), now_ms=lambda r=r: self.now + self.skew[r])
            for r in self.regions
        }
        self.clock = dict.fromkeys(self.regions, 0)
        self.settings = self.make_settings()
        # Each region's consumer: the product's Replicator (over the in-memory tables, its lanes
        # run inline) and checkpoint tracker, and the records it has read but not yet had
        # acknowledged, per key in stream order (the hostile network delays them).
        self.dead_letters = MemoryDeadLetters()
        self.metrics = MemoryMetrics()
        self.replicators = {r: self._replicator(r) for r in self.regions}
        self.trackers = {r: CheckpointTracker() for r in self.regions}
        self.checkpoints = dict.fromkeys(self.regions, 0)
        self.inflight: dict[str, dict[str, list[Pending]]] = {
            r: defaultdict(list) for r in self.regions
        }
        # Who decides what lands before the Replicator's next write (None: nothing).
        self.races: Callable[[str, str], Race | None] | None = None
        self.racing = False
        for region, table in self.tables.items():
            table.before_write = lambda key, region=region: self._before_write(region, key)
        self.versions: dict[str, list[Version]] = defaultdict(list)
        self.seen: dict[tuple[str, str], Version] = {}
        self.by_vector: dict[tuple[str, Any], tuple[str, Any, Meta]] = {}
        self.forwarders: dict[str, set[str]] = defaultdict(set)
        self.serial = 0
        # (region, sequence number) of every record an application's raw write made: the only
        # records georep may adopt (adopting its own write would hide a lost update).
        self.raw_records: set[tuple[str, str]] = set()
        # Raw items written between a consumer's read and its conditional write (`RACES`).
        self.raced: list[tuple[str, dict[str, Any]]] = []
        # The ground truth, kept apart from everything the product computes (truth.py).
        self.truth = Truth()
        # What an application read for a read-modify-write it has not written yet (`read`).
        self.reads: dict[tuple[str, str], dict[str, Any] | None] = {}

    # -- local writers -----------------------------------------------------------------------

    def _tick(self, region: str) -> int:
        self.clock[region] = hlc.tick(self.clock[region], self.now + self.skew[region])
        return self.clock[region]

    def _write_id(self, region: str) -> str:
        self.serial += 1
        ms = hlc.wall_ms(self.clock[region]) % (1 << 48)
        return str(
            ulid.from_bytes(ms.to_bytes(6, "big") + ((1 << 79) | self.serial).to_bytes(10, "big"))
        )

    def _value(self) -> str:
        self.serial += 1
        return f"w{self.serial}"

    def _pick(self, data: st.DataObject) -> tuple[str, str]:
        return data.draw(st.sampled_from(self.regions)), data.draw(st.sampled_from(self.keys))

    @rule(data=st.data(), wide=st.sampled_from([False] * 7 + [True]))
    def sdk_put(self, data: st.DataObject, wide: bool) -> None:
        self.do_sdk_put(*self._pick(data), wide=wide and self.wide_items)

    @rule(data=st.data())
    def sdk_delete(self, data: st.DataObject) -> None:
        self.do_sdk_delete(*self._pick(data))

    @rule(data=st.data(), copy_meta=st.booleans(), wide=st.sampled_from([False] * 7 + [True]))
    def raw_put(self, data: st.DataObject, copy_meta: bool, wide: bool) -> None:
        self.do_raw_put(*self._pick(data), copy_meta=copy_meta, wide=wide and self.wide_items)

    @precondition(lambda self: self.stale_reads)
    @rule(data=st.data())
    def read(self, data: st.DataObject) -> None:
        """An application's GetItem, the first half of a read-modify-write (`write_back`)."""
        region, key = self._pick(data)
        self.reads[(region, key)] = self.tables[region].get({"pk": {"S": key}})

    @precondition(lambda self: self.reads)
    @rule(data=st.data())
    def write_back(self, data: st.DataObject) -> None:
        """The second half: a plain PutItem of new data with the ``_georep`` read, whatever
        the table holds now."""
        region, key = data.draw(st.sampled_from(sorted(self.reads)))
        self.do_raw_put(region, key, copy_meta=True, read=self.reads.pop((region, key)))

    @precondition(lambda self: self.copies)
    @rule(data=st.data())
    def raw_copy(self, data: st.DataObject) -> None:
        """A copy script, or a restore from a backup of another region: one region's item,
        metadata included, written raw into another region."""
        source, key = self._pick(data)
        self.do_raw_copy(source, data.draw(st.sampled_from(self.regions)), key)

    @rule(data=st.data())
    def raw_delete(self, data: st.DataObject) -> None:
        self.do_raw_delete(*self._pick(data))

    def key_state(self, region: str, key: str, item: dict[str, Any] | None = None) -> KeyState:
        """``region``'s state of ``key`` across its table (``item``, if already read) and,
        with the store, its tombstone store."""
        table = self.tables[region]
        if item is None:
            item = table.get({"pk": {"S": key}})
        stored = table.get_stored({"pk": {"S": key}}) if self.store else None
        return read_key(item, stored, settings=self.settings)

    def image(self, region: str, key: str) -> dict[str, Any] | None:
        """What ``region`` holds for ``key`` as one item: the table's, else (with the store)
        its tombstone written as the item it was before the store."""
        item = self.tables[region].get({"pk": {"S": key}})
        if item is None and self.store:
            tombstone = self.key_state(region, key).tombstone
            if tombstone is not None:
                return encode_item(tombstone, horizon_ms=self.horizon_ms)
        return item

    def _visible(self, item: dict[str, Any] | None) -> dict[str, Any] | None:
        """What an application reading ``item`` sees (a tombstone reads as absent)."""
        stored = read_item(item, settings=self.settings)
        return None if _is_tombstone(stored) else item

    def do_sdk_put(
        self, region: str, key: str, *, wide: bool = False, at_once: bool = False
    ) -> None:
        """A write through georep's stamping (the SDK path), acknowledged as a version.
        ``at_once``: as an SDK from before writes over raw items waited for their adoption
        under merge rules wrote it (tables written by earlier versions hold such items)."""
        self._sdk_write(region, key, delete=False, wide=wide, at_once=at_once)

    def do_sdk_delete(self, region: str, key: str) -> None:
        self._sdk_write(region, key, delete=True)

    def _sdk_write(
        self, region: str, key: str, *, delete: bool, wide: bool = False, at_once: bool = False
    ) -> None:
        table = self.tables[region]
        current_item = table.get({"pk": {"S": key}})
        state = self.key_state(region, key, current_item)
        current = state.current
        if self.store and current_item is None and state.tombstone is not None:
            # What the write replaced, for the account: the key's tombstone (as the item it
            # was before the store), though the application read nothing.
            current_item = encode_item(state.tombstone, horizon_ms=self.horizon_ms)
        if not at_once and waits_for_adoption(current, settings=self.settings):
            return  # the SDK waits for the raw write's adoption: the application gave up here
        data, value = None, None
        if not delete:
            value = self._value()
            data = self.new_data(key, value, self._visible(current_item))
            data = self.widen(data, value) if wide else data
        version = stamp(
            current,
            data,
            region=region,
            now_hlc=self._tick(region),
            write_id=self._write_id(region),
            settings=self.settings,
        )
        if version is None:
            return  # a delete of nothing
        if self.store:
            steps = commit_for(
                state, version, local=True, table=table.table_name, settings=self.settings
            )
            assert table.commit({"pk": {"S": key}}, table=steps[0], store=steps[1]).ok
        else:
            result = table.write(
                {"pk": {"S": key}}, item_for(version, self.horizon_ms), precondition_for(current)
            )
            assert result.ok
        self.versions[key].append(version)
        self.truth.record(
            key,
            region=region,
            kind="delete" if delete else "put",
            value=value,
            replaced=current_item,
            written=data,
        )

    def do_raw_put(
        self,
        region: str,
        key: str,
        *,
        copy_meta: bool = False,
        wide: bool = False,
        read: dict[str, Any] | Literal["now"] | None = "now",
    ) -> None:
        """A plain boto3 PutItem: blind, or a read-modify-write that copies metadata back
        (``read``: what it read, if that was earlier than now)."""
        table = self.tables[region]
        current_item = table.get({"pk": {"S": key}})
        value = self._value()
        was = current_item if read == "now" else read
        item = self.new_data(key, value, self._visible(was))
        item = self.widen(item, value) if wide else item
        if copy_meta and was is not None and META_ATTR in was:
            item[META_ATTR] = was[META_ATTR]
        self._raw_write(region, lambda: table.put_raw(item))
        if self.racing:
            self.raced.append((region, item))
        self.truth.record(
            key,
            region=region,
            kind="put",
            value=value,
            replaced=current_item,
            written=item,
            raced_raw=self.racing,
            raw=True,
        )

    def do_raw_copy(self, source: str, destination: str, key: str) -> None:
        item = self.tables[source].get({"pk": {"S": key}})
        if item is not None:
            replaced = self.tables[destination].get({"pk": {"S": key}})
            self._raw_write(destination, lambda: self.tables[destination].put_raw(item))
            value = item.get("val", {}).get("S")
            self.truth.record(key, region=destination, kind="copy", value=value, replaced=replaced)
            # The application moved the item itself (possibly back to an older version): the
            # never-moves-back invariant restarts from here, as after any raw write.
            self.seen.pop((destination, key), None)

    def do_raw_delete(self, region: str, key: str) -> None:
        replaced = self.tables[region].get({"pk": {"S": key}})
        self._raw_write(region, lambda: self.tables[region].delete_raw({"pk": {"S": key}}))
        if replaced is not None:
            self.truth.record(key, region=region, kind="delete", value=None, replaced=replaced)

    def _raw_write(self, region: str, write: Callable[[], None]) -> None:
        """Do an application's raw write (or TTL's deletion) and note the record it made."""
        stream = self.tables[region].stream
        before = len(stream)
        write()
        if len(stream) > before:
            self.raw_records.add((region, stream[-1]["dynamodb"]["SequenceNumber"]))

    @rule(step=st.sampled_from([0, 0, 1, 3, 1000]))
    def advance_time(self, step: int) -> None:
        self.now += step

    # -- consumers ---------------------------------------------------------------------------

    def _replicator(self, region: str) -> Replicator:
        return Replicator(
            region=region,
            settings=self.settings,
            tables=self.tables,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            now_ms=lambda: self.now,
            executor=InlineExecutor(),
        )

    def _poll(self, region: str, limit: int = 1) -> bool:
        """Read up to ``limit`` records of ``region``'s stream (they wait to be delivered)."""
        tracker = self.trackers[region]
        position = tracker.read_position
        records = self.tables[region].records_after(position, limit=limit)
        for offset, record in enumerate(records):
            tracker.read(position + offset, tasks=1)  # the task: the Replicator acknowledges it
            key = record["dynamodb"]["Keys"]["pk"]["S"]
            self.inflight[region][key].append((position + offset, record))
        return bool(records)

    @rule(data=st.data(), limit=st.sampled_from([1, 1, 2, 5]))
    def poll(self, data: st.DataObject, limit: int) -> None:
        self._poll(data.draw(st.sampled_from(self.regions)), limit)

    def pending_records(self, region: str) -> list[dict[str, Any]]:
        """``region``'s records not yet acknowledged: read and waiting, or not read yet."""
        waiting = [record for lane in self.inflight[region].values() for _, record in lane]
        return waiting + self.tables[region].records_after(self.trackers[region].read_position)

    def _sources(self) -> list[str]:
        """Regions with records waiting to be delivered."""
        return [r for r in self.regions if any(self.inflight[r].values())]

    @precondition(lambda self: bool(self._sources()))
    @rule(data=st.data())
    def deliver(self, data: st.DataObject) -> None:
        """One batch to one source's Replicator: the first records of some of its keys (so
        keys and sources are reordered, each key's records stay in order), with local writes
        and outages drawn to land just before the Replicator's conditional writes."""
        source = data.draw(st.sampled_from(self._sources()))
        lanes = self.inflight[source]
        keys = sorted(key for key, lane in lanes.items() if lane)
        chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
        batch: list[Pending] = []
        for key in chosen:
            batch += lanes[key][: data.draw(st.integers(1, len(lanes[key])))]
        self.deliver_batch(source, sorted(batch, key=lambda p: p[0]), races=self._drawn(data))

    @precondition(lambda self: self.store and bool(self._sources()))
    @rule(data=st.data())
    def deliver_with_its_store_down(self, data: st.DataObject) -> None:
        """`deliver`, while the source region's tombstone store cannot be read (a partition of
        its own region): the store reads `submit` makes for a REMOVE or a stamped INSERT fail,
        as do its adoptions' reads. The records fail and are delivered again later; nothing
        escapes the Replicator (a chaos run found `georep run` exiting on it, session 37)."""
        source = data.draw(st.sampled_from(self._sources()))
        with self.store_down(source):
            lanes = self.inflight[source]
            keys = sorted(key for key, lane in lanes.items() if lane)
            chosen = data.draw(st.lists(st.sampled_from(keys), min_size=1, unique=True))
            batch = [p for key in chosen for p in lanes[key][: data.draw(st.integers(1, 3))]]
            self.deliver_batch(source, sorted(batch, key=lambda p: p[0]), races=None)

    @contextmanager
    def store_down(self, region: str) -> Iterator[None]:
        """``region``'s tombstone store cannot be read while the block runs."""
        table = self.tables[region]

        def unreachable(key: Mapping[str, Any]) -> dict[str, Any] | None:
            raise Unreachable(f"{region}'s tombstone store is unreachable")

        table.get_stored = unreachable  # type: ignore[method-assign]
        try:
            yield
        finally:
            del table.get_stored

    def _drawn(self, data: st.DataObject) -> Callable[[str, str], Race | None]:
        budget = [MAX_RACES]

        def race(region: str, key: str) -> Race | None:
            kind = data.draw(st.sampled_from(RACES))
            if kind == "unreachable":
                return lambda: self._unreachable(region)
            if kind == "none" or not budget[0]:
                return None
            budget[0] -= 1
            return {
                "sdk_put": lambda: self.do_sdk_put(region, key),
                "sdk_delete": lambda: self.do_sdk_delete(region, key),
                "raw_put": lambda: self.do_raw_put(region, key),
                "raw_rmw": lambda: self.do_raw_put(region, key, copy_meta=True),
                "raw_delete": lambda: self.do_raw_delete(region, key),
            }[kind]

        return race

    @staticmethod
    def _unreachable(region: str) -> None:
        raise Unreachable(f"{region} is unreachable")

    def _before_write(self, region: str, key: Mapping[str, Any]) -> None:
        """MemoryTable's hook: run whatever the schedule lands before this write."""
        if self.races is None or self.racing:
            return  # not a Replicator's write, or the racing write itself
        action = self.races(region, key["pk"]["S"])
        if action is None:
            return
        # The invariant looks on each side of the racing write, as it would between rules.
        self.metadata_is_valid_and_never_moves_backwards()
        self.racing = True
        try:
            action()
        finally:
            self.racing = False
        self.metadata_is_valid_and_never_moves_backwards()

    def deliver_batch(
        self,
        source: str,
        batch: Sequence[Pending],
        *,
        races: Callable[[str, str], Race | None] | None = None,
    ) -> list[RecordResult]:
        """Hand ``batch`` to ``source``'s Replicator; acknowledge what it settled (the
        checkpoint rule) and keep what failed for redelivery."""
        self.races = races
        try:
            results = self.replicators[source].process([record for _, record in batch])
        finally:
            self.races = None
        for (position, record), result in zip(batch, results, strict=True):
            self._observe(source, record, result)
            if result.status == "failed":
                continue
            lane = self.inflight[source][record["dynamodb"]["Keys"]["pk"]["S"]]
            lane[:] = [pending for pending in lane if pending[0] != position]
            self.trackers[source].done(position)
        return results

    def _observe(self, source: str, record: Mapping[str, Any], result: RecordResult) -> None:
        """What the oracle learns from a result, and what the model never allows: a dead
        letter (nothing here is permanent), or a failure other than an injected outage."""
        assert result.status != "dead-lettered", f"{source}: dead-lettered: {result.reason}"
        for destination, delivery in result.deliveries.items():
            assert delivery.handled != "failed" or delivery.error in OUTAGES, (
                f"{source} -> {destination}: {delivery}"
            )
        if isinstance(result.outcome, Forward):
            # Echo suppression: in a full mesh each write is forwarded by one region only.
            version = result.outcome.version
            self.forwarders[version.meta.write_id].add(source)
            assert len(self.forwarders[version.meta.write_id]) == 1, version.meta
            self._learn(version)
        elif isinstance(result.outcome, Adopt):
            sequence = record["dynamodb"]["SequenceNumber"]
            assert (
                (source, sequence) in self.raw_records
                or _annotation(record)
                or self._copied_again(source, record)
                or self._raced_delete(source, record)
            ), f"{source} adopted a write georep made itself: {record}"
            version = result.outcome.version
            own = result.deliveries.get(source)
            gated = self.resolver.keeps_deleted_data or self.store
            if own is not None and own.replacement is not None:
                # With the store: a successor written to the store alone, sent to the other
                # regions instead. On a replay, the region's tombstone that succeeds the
                # adoption: a merge or an adoption holds only versions learnt already (the
                # successor among them, learnt from the attempt that wrote it).
                replacement = own.replacement
                if not replacement.meta.merged and not replacement.meta.adopted:
                    self._learn(replacement)
                return
            if gated and own is not None and own.detail in ("succeeded", "covered"):
                # Under merge rules an adoption its own region superseded (a successor written
                # there, or already covered) goes nowhere: no version to expect (`_Gate`).
                others = [d for r, d in result.deliveries.items() if r != source]
                assert all(d.handled in ("skipped", "waiting") for d in others), result
                return
            if gated and own is not None and own.handled in ("failed", "waiting"):
                return  # nowhere yet, and its retry may find it superseded
            self.versions[version.data["pk"]["S"]].append(version)

    def _learn(self, version: Version) -> None:
        """A successor of what replaced a raw write before its adoption (`decide`) is the one
        kind of version georep writes that no writer or adoption made: learn it."""
        known = self.versions[version.data["pk"]["S"]]
        if not any(v.meta.write_id == version.meta.write_id for v in known):
            assert not version.meta.adopted and not version.meta.merged, version.meta
            known.append(version)

    def _raced_delete(self, region: str, record: Mapping[str, Any]) -> bool:
        """With the store: whether georep deleted a raw item written between its read and its
        delete (the conditions compare only ``_georep``: docs/design.md, "Not closed"). The
        REMOVE's old image is not the one the deletion recorded, so it is adopted as the
        application's delete of that raw write, which the account already exempts."""
        if not self.store or record["eventName"] != "REMOVE":
            return False
        old = record["dynamodb"].get("OldImage")
        return any(r == region and item == old for r, item in self.raced)

    def _copied_again(self, region: str, record: Mapping[str, Any]) -> bool:
        """With the store: whether an application's copy later put an item identical to this
        INSERT's image beside a tombstone. The two records' images are the same bytes, so
        the consumer, reading the earlier one while the copy is in the table, cannot tell
        them apart; adopting either adopts the copy's data over the tombstone."""
        if not self.store or record["eventName"] != "INSERT":
            return False
        image = record["dynamodb"]["NewImage"]
        sequence = record["dynamodb"]["SequenceNumber"]
        return any(
            later["dynamodb"]["SequenceNumber"] > sequence
            and (region, later["dynamodb"]["SequenceNumber"]) in self.raw_records
            and later["dynamodb"].get("NewImage") == image
            for later in self.tables[region].stream
        )

    def do_deliver(
        self, source: str, destination: str, key: str, *, race: Sequence[Race | None] = ()
    ) -> None:
        """Scripted: the first waiting record of ``source``'s ``key`` reaches ``destination``
        only (the others are unreachable for now). ``race[i]`` lands just before the
        Replicator's i-th conditional write there (``None``: nothing); every one must land.
        Nothing happens if no record of ``key`` is waiting."""
        lane = self.inflight[source][key]
        if not lane:
            assert not race, f"no record of {key} waiting at {source} for the race to meet"
            return
        landing = list(race)

        def scripted(region: str, _key: str) -> Race | None:
            if region != destination:
                return lambda: self._unreachable(region)
            return landing.pop(0) if landing else None

        self.deliver_batch(source, lane[:1], races=scripted)
        assert not landing, f"{len(landing)} scripted race(s) found no write at {destination}"

    @rule(data=st.data())
    def checkpoint(self, data: st.DataObject) -> None:
        self.checkpoint_region(data.draw(st.sampled_from(self.regions)))

    def checkpoint_region(self, region: str) -> None:
        self.checkpoints[region] = self.trackers[region].safe_position()

    @rule(data=st.data())
    def crash(self, data: st.DataObject) -> None:
        """kill -9: in-flight work is lost; the consumer restarts from its checkpoint."""
        self.crash_region(data.draw(st.sampled_from(self.regions)))

    def crash_region(self, region: str) -> None:
        self.inflight[region] = defaultdict(list)
        self.trackers[region] = CheckpointTracker(start=self.checkpoints[region])
        self.replicators[region] = self._replicator(region)

    # -- invariants --------------------------------------------------------------------------

    @invariant()
    def metadata_is_valid_and_never_moves_backwards(self) -> None:
        """Stored metadata always parses; a region's stamped version of an item never moves
        back causally. (A raw write or raw delete in between is the application moving the
        item itself; the order restarts from the next stamped version.)"""
        if not hasattr(self, "tables"):
            return
        for region, table in self.tables.items():
            for key in self.keys:
                item = table.items.get(key_of(key))
                state = self.key_state(region, key, item)  # raises if invalid
                if self.store:
                    self._places_agree(region, key, state, settled=False)
                stored = state.current
                if not isinstance(stored, Stamped):
                    self.seen.pop((region, key), None)
                    continue
                before = self.seen.get((region, key))
                if before is not None:
                    order = oracle_order(stored.version.meta, before.meta)
                    assert order is not Order.BEFORE, (
                        f"{(region, key)} moved back from {before.meta} to {stored.version.meta}"
                    )
                self.seen[(region, key)] = stored.version
                self._one_version_per_vector(region, key, stored.version)

    @staticmethod
    def _places_agree(region: str, key: str, state: KeyState, *, settled: bool) -> None:
        """With the store: the table never holds a tombstone. Once settled, a stamped item
        succeeds any tombstone beside it (every write georep makes that leaves the item live
        drops the tombstone or succeeds it; a copy the application put beside one is adopted
        over it). In between, a copy not adopted yet may sit beside a tombstone it does not
        succeed."""
        if isinstance(state.table, Stamped):
            meta = state.table.version.meta
            assert not meta.deleted, f"{(region, key)}: a tombstone item"
            tombstone = state.tombstone
            assert (
                not settled
                or tombstone is None
                or oracle_order(meta, tombstone.meta) is Order.AFTER
            ), f"{(region, key)}: a stamped item {meta} beside the tombstone {tombstone}"

    def _one_version_per_vector(self, region: str, key: str, version: Version) -> None:
        """A version vector names one version: two stored versions with the same vector hold
        the same data, field stamps and deletion (else `decide` sees them equal and neither
        region replaces its copy: they never converge)."""
        meta = version.meta
        content: tuple[object, ...] = (meta.digest, meta.fields, meta.deleted)
        if residency_of(self.settings) is not None:
            # NOTE: under residency rules each region holds a version in its own form (a
            # withheld marker, no redacted attributes: `project`), and `decide_for` skips one
            # it holds in another form by its identity: so one vector names one identity.
            content = identity(meta)
        first = self.by_vector.setdefault((key, meta.vv), (region, content, meta))
        assert first[1] == content, (
            f"{key}: one version vector, two versions: {first[0]} stored {first[2]}, "
            f"{region} stores {meta}"
        )

    # -- quiescence --------------------------------------------------------------------------

    def drain(self) -> None:
        """Every consumer reads its whole stream and delivers everything, until quiet."""
        for _ in range(5_000):  # a quiescent run needs a few hundred rounds
            progressed = False
            for region in self.regions:
                progressed |= self._poll(region, limit=1_000)
            for region in self._sources():
                waiting = [p for lane in self.inflight[region].values() for p in lane]
                self.deliver_batch(region, sorted(waiting, key=lambda p: p[0]))
                progressed = True
            if not progressed:
                return
        raise AssertionError("replication did not quiesce")

    def collected(self, version: Version) -> bool:
        """Whether TTL has removed this version everywhere by the end (see CollectingMachine)."""
        return False

    def combine(self, a: Version, b: Version) -> Version:
        """The oracle's join of two versions: the later one if ordered; else a tombstone past
        its horizon relative to the other counts as absence; else the resolver's merge (under
        last-writer-wins, the larger (HLC, writer, write id), and under version counters the
        larger (counter, HLC, writer, write id), computed here).

        NOTE: the order comes from `oracle_order`, not the core's `compare`, so a wrong order
        in the core cannot move the oracle along with it (the review's "equal vectors count
        as after" mutant passed every machine when both used `compare`). Under version
        counters the winner is one of the two, whole, not the core's merge: its joined vector
        could cover a third version of the frontier that neither input holds, which a later
        step of the fold then dropped (a deep run, seed 4282501956, found the fold disagreeing
        with regions that had merged that version;
        test_the_oracle_folds_version_counters_over_the_frontier_in_any_grouping)."""
        order = oracle_order(b.meta, a.meta)
        if order is Order.AFTER:
            return b
        if order in (Order.BEFORE, Order.EQUAL):
            return a
        for x, y in ((a, b), (b, a)):
            if tombstone_expired(x.meta, at_hlc=y.meta.hlc, settings=self.settings):
                return y
        if isinstance(self.resolver, LastWriterWins):
            return max(a, b, key=lambda v: v.meta.lww_key)
        if isinstance(self.resolver, VersionCounter):
            return max(a, b, key=self._rank)
        return merge(a, b, settings=self.settings)

    def _rank(self, version: Version) -> tuple[Decimal, bool, tuple[int, str, str]]:
        """A version's place under version counters: its counter, then, with an application
        counter, a tombstone just above the version it deleted (whose counter it keeps), then
        its clock."""
        assert isinstance(self.resolver, VersionCounter)
        deleted = self.resolver.attribute is not None and version.meta.deleted
        return (self._counter(version), deleted, version.meta.lww_key)

    def _counter(self, version: Version) -> Decimal:
        """A version's counter under version counters, read here, not asked of the resolver:
        the application's numeric attribute if the version holds it, else its update count."""
        assert isinstance(self.resolver, VersionCounter)
        name = self.resolver.attribute
        value = version.data.get(name) if name is not None else None
        if value is not None and "N" in value:
            return Decimal(value["N"])
        return Decimal(version.meta.count)

    def expected(self, key: str) -> Version | None:
        """The resolver folded over the frontier of all versions written to ``key``."""
        versions = self.versions.get(key, [])
        frontier = [
            v
            for v in versions
            if not any(oracle_order(w.meta, v.meta) is Order.AFTER for w in versions)
        ]
        ordered = sorted({id(v): v for v in frontier}.values(), key=lambda v: v.meta.lww_key)
        if not ordered:
            return None
        result = ordered[0]
        for v in ordered[1:]:
            result = self.combine(result, v)
        return result

    def settle(self) -> None:
        """Writers stopped: drain every stream."""
        self.drain()

    def teardown(self) -> None:
        if not hasattr(self, "tables"):
            return
        self.settle()
        for key in self.keys:
            images = {r: self.image(r, key) for r in self.regions}
            first = images[self.regions[0]]
            for region, image in images.items():
                assert image == first, (
                    f"{key}: {region} differs from {self.regions[0]}:\n{image}\n{first}"
                )
            if self.store:
                for region in self.regions:
                    state = self.key_state(region, key)
                    self._places_agree(region, key, state, settled=True)
                # What every reader sees: a deleted key is absent from every table.
                tables = {r: self.tables[r].get({"pk": {"S": key}}) for r in self.regions}
                if first is not None and _is_tombstone(read_item(first, settings=self.settings)):
                    assert not any(tables.values()), f"{key}: a deleted key is in {tables}"
            self.truth.check(key, first, merge_rules=self.resolver.keeps_deleted_data)
            expected = self.expected(key)
            if expected is None or self.collected(expected):
                # Nothing was ever written, or a tombstone TTL has collected everywhere: the
                # item must be gone (an oracle that accepts anything here is vacuous).
                assert first is None, f"{key}: expected no item, found {first}"
                continue
            assert first is not None, f"{key}: expected {expected} but the item is gone"
            stored = read_item(first, settings=self.settings)
            assert not isinstance(stored, Raw), f"{key}: a raw write was never adopted: {first}"
            assert isinstance(stored, Stamped)
            got = stored.version
            assert (expected.data, expected.meta.deleted) == (got.data, got.meta.deleted), (
                f"{key}: expected {expected.data} deleted={expected.meta.deleted}, "
                f"got {got.data} deleted={got.meta.deleted}"
            )
            assert expected.meta.lww_key == got.meta.lww_key


def _is_tombstone(stored: object) -> bool:
    return isinstance(stored, Stamped) and stored.version.meta.deleted


def _annotation(record: Mapping[str, Any]) -> bool:
    """Whether ``record`` is georep annotating a raw item with an adoption (`Annotate`): only
    the metadata changed, so what is adopted is the application's raw data. Under merge rules
    also a version kept beside a raw item (`beside_raw`): the raw data merged with it, still
    raw, its metadata new. Either way the old image is a raw item and the new one too (a
    blind replication write over a version would leave a stamped new image)."""
    body = record["dynamodb"]
    old, new = body.get("OldImage"), body.get("NewImage")
    if old is None or new is None:
        return False
    data_only = {k: v for k, v in old.items() if k != META_ATTR} == {
        k: v for k, v in new.items() if k != META_ATTR
    }
    return data_only or (
        old.get(META_ATTR) != new.get(META_ATTR)
        and new.get(META_ATTR) is not None
        and _raw_image(old)
        and _raw_image(new)
    )


def _raw_image(image: Mapping[str, Any]) -> bool:
    attr = image.get(META_ATTR)
    if attr is None:
        return True
    return bool(attr["M"]["h"]["S"] != digest(data_of(image)))


def oracle_order(a: Meta, b: Meta) -> Order:
    """How ``a`` relates to ``b`` by their vectors, written here independently of the core's
    `compare`: dominance entry by entry; equal vectors of different versions are concurrent."""
    left, right = dict(a.vv.entries), dict(b.vv.entries)
    covers = all(left.get(actor, 0) >= n for actor, n in right.items())
    covered = all(right.get(actor, 0) >= n for actor, n in left.items())
    if covers and covered:
        return Order.EQUAL if a == b else Order.CONCURRENT
    if covers:
        return Order.AFTER
    return Order.BEFORE if covered else Order.CONCURRENT


def key_of(key: str) -> str:
    return key_string({"pk": {"S": key}})
