"""``georep chaos``: writers in every region, faults, then quiescence and the accounting.

A run, on the embedded backend:

1. a :class:`~service.engine.chaos.proxy.FaultProxy` per region, and the consumers (``georep run``
   processes, two for the first region when ``standby`` is on: a lease holder and a standby)
   reaching every region through the proxies;
2. writers in every region (:mod:`service.engine.chaos.workload`) for ``duration`` seconds,
   while the schedule drawn from ``seed`` (:func:`schedule`) kills and restarts consumers,
   throttles, fails, drops, truncates and delays requests, and partitions regions;
3. the faults end, every dead consumer is started again, and the run waits until every region
   holds the same items and they stay unchanged for ``settle`` seconds (divergent: they differ
   and nothing changed for ``converge_timeout`` seconds);
4. the verdict of :func:`service.core.chaos.judge`, over plain consistent Scans: lost writes
   under last-writer-wins and version counters, lost set elements under merge rules (every
   put adds one to ``plan.set_attribute``, which the rule must merge as a union).

Against a deployment that georep runs already (``target.embedded`` None), only step 2's writers
and steps 3 and 4 happen, on keys under a prefix of their own, which are deleted afterwards.
"""

from __future__ import annotations

import random
import sys
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO
from urllib.parse import urlsplit

from service.core.chaos import Lost, Verdict, differing, final_value, judge
from service.engine.chaos.processes import ConsumerProcesses
from service.engine.chaos.proxy import Fault, FaultProxy
from service.engine.chaos.workload import SET, VALUE, Ledger, StampedTable, Writer

# Faults a run can inject, by the name ``--faults`` takes.
PROXY_FAULTS: dict[str, Fault] = {
    "throttle": Fault.THROTTLE,
    "error_500": Fault.ERROR_500,
    "error_503": Fault.ERROR_503,
    "drop": Fault.DROP,
    "lost_response": Fault.LOST_RESPONSE,
    "half_close": Fault.HALF_CLOSE,
    "latency": Fault.LATENCY,
}
PROCESS_FAULTS = ("kill", "standby")
OTHER_FAULTS = ("partition", "skew")
FAULTS: tuple[str, ...] = (*PROCESS_FAULTS, *PROXY_FAULTS, *OTHER_FAULTS)
# What can be injected from the outside of a deployment georep runs already.
OUTSIDE_FAULTS = ("skew",)
# Resolvers that pick one version whole; any other (a user rule, field rules) merges.
PICKING_RESOLVERS = ("lww", "version-counter")


@dataclass(frozen=True)
class Plan:
    """A run's shape. ``rate``: writes per second per writer; ``skew_ms``: the largest clock
    skew a region's writers get, either way; ``set_attribute``: under a merge rule, the
    string set each put adds an element to (the rule must merge it as a union)."""

    duration: float = 60.0
    writers: int = 2
    keys: int = 5
    faults: frozenset[str] = frozenset(FAULTS)
    seed: int = 0
    rate: float = 4.0
    settle: float = 3.0
    converge_timeout: float = 120.0
    skew_ms: int = 3000
    set_attribute: str = SET


@dataclass(frozen=True)
class Event:
    """One fault of the schedule: at ``at`` seconds into the run, for ``seconds``."""

    at: float
    kind: str
    region: str
    seconds: float = 0.0
    probability: float = 0.0
    choice: int = 0


def schedule(plan: Plan, regions: tuple[str, ...]) -> list[Event]:
    """The faults of a run, a function of the plan (its seed) only: ``--seed`` replays it. Every
    enabled fault happens at least once, evenly spread, then more at random, one every few
    seconds; a kill comes with a partition of another region around it when both are enabled;
    nothing starts in the last fifth, so the run ends calm."""
    rng = random.Random(f"schedule-{plan.seed}")
    kinds = sorted(set(plan.faults) - {"skew"})
    window = plan.duration * 0.8
    times = [window * (i + 0.5) / max(1, len(kinds)) for i in range(len(kinds))]
    order = rng.sample(kinds, len(kinds))
    extra = int(window / 4) - len(kinds)
    for _ in range(max(0, extra)):
        times.append(rng.uniform(0, window))
        order.append(rng.choice(kinds) if kinds else "")
    events = []
    for at, kind in zip(times, order, strict=True):
        if not kind:
            continue
        region = regions[0] if kind == "standby" else rng.choice(regions)
        seconds = rng.uniform(1.0, 4.0) if kind != "kill" else rng.uniform(0.5, 3.0)
        probability = rng.uniform(0.1, 0.5)
        events.append(Event(at, kind, region, seconds, probability, rng.randrange(1 << 16)))
        others = [r for r in regions if r != region]
        if kind in PROCESS_FAULTS and "partition" in kinds and others:
            # NOTE: a kill while another region is cut off, from 1.5 s before to 1.5 s after:
            # the killed consumer then holds records read and not yet applied everywhere,
            # which its successor must replay (a kill between two idle polls proves little).
            cut = rng.choice(others)
            events.append(Event(max(0.0, at - 1.5), "partition", cut, 3.0, 0.0, 0))
    return sorted(events, key=lambda e: e.at)


def skews(plan: Plan, regions: tuple[str, ...]) -> dict[str, int]:
    """Each region's clock skew in milliseconds (0 without ``skew``)."""
    rng = random.Random(f"skew-{plan.seed}")
    if "skew" not in plan.faults:
        return {r: 0 for r in regions}
    return {r: rng.randint(-plan.skew_ms, plan.skew_ms) for r in regions}


@dataclass(frozen=True)
class Embedded:
    """What a run on the embedded backend needs to start consumers: the georep.toml of the
    replica set (every region at ``endpoint_url``) and the environment of a consumer process."""

    config_path: Path
    endpoint_url: str
    env: dict[str, str]
    workdir: Path


@dataclass(frozen=True)
class Target:
    """Where the run writes. ``client(region)``: a DynamoDB client of the region's table;
    ``stamped(region, skew_ms)``: georep's SDK for that region, its clock ``skew_ms`` off."""

    regions: tuple[str, ...]
    table_names: dict[str, str]
    resolver: str
    client: Callable[[str], Any]
    stamped: Callable[[str, int], StampedTable]
    embedded: Embedded | None = None
    key_prefix: str = ""
    partition_key: str = "pk"
    conflict_table: str | None = None
    checkpoint_table: str | None = None
    dead_letter_table: str | None = None
    # With the tombstone store: a region's deleted keys of the run, each as the item its
    # tombstone was before the store (what the accounting judges; None: no store).
    tombstones: Callable[[str], dict[str, dict[str, Any]]] | None = None


@dataclass
class Report:
    seed: int
    regions: tuple[str, ...]
    resolver: str
    duration: float
    writes: Counter[str]
    writes_failed: int
    faults: Counter[str]
    restarts: int
    skew_ms: dict[str, int]
    verdict: Verdict
    converged_after: float | None
    conflicts: int | None
    merging: bool  # a merge rule: lost set elements judged, not lost values
    # Records georep dead-lettered during the run (None: the table could not be read). The
    # workload writes only well-formed items, so any is a failure (a lost response's retry
    # refused as permanent shows only here: docs/decisions.md, chaos teeth).
    dead_letters: int | None
    # Each divergent key's attributes that differ between regions (for the report).
    differing: dict[str, list[str]] = field(default_factory=dict)
    events: list[Event] = field(default_factory=list)
    # Consumers that exited by themselves during the run (`ConsumerProcesses.exited`): a
    # failure, whatever the data (a consumer that gives up under a fault replicates nothing
    # until someone restarts it; found in session 37: a store read during a partition).
    exits: list[str] = field(default_factory=list)

    @property
    def writes_acknowledged(self) -> int:
        return sum(self.writes.values())

    @property
    def lost(self) -> tuple[Lost, ...]:
        return self.verdict.lost

    @property
    def ok(self) -> bool:
        return (
            self.verdict.ok
            and self.converged_after is not None
            and not self.dead_letters
            and not self.exits
        )


class _Progress:
    def __init__(self, out: TextIO | None, every: float = 2.0) -> None:
        self.out, self.every, self.last = out, every, 0.0

    def line(self, text: str, *, force: bool = False) -> None:
        now = time.monotonic()
        if self.out is None or (not force and now - self.last < self.every):
            return
        self.last = now
        print(f"chaos: {text}", file=self.out, flush=True)


def run(target: Target, plan: Plan, *, progress: TextIO | None = sys.stderr) -> Report:
    """One chaos run (module docstring); everything it starts is stopped when it returns or
    raises (KeyboardInterrupt included)."""
    regions = target.regions
    keys = [f"{target.key_prefix}k{i}" for i in range(plan.keys)]
    cold_keys = [f"{target.key_prefix}c{i}" for i in range(8 * plan.keys)]
    skew = skews(plan, regions)
    events = schedule(plan, regions) if target.embedded is not None else []
    faults: Counter[str] = Counter()
    ledger = Ledger()
    say = _Progress(progress)
    merging = target.resolver not in PICKING_RESOLVERS
    say.line(
        f"seed {plan.seed}, {len(regions)} regions, {plan.writers} writers each, "
        f"{plan.keys} keys, {plan.duration:g} s, faults {','.join(sorted(plan.faults)) or '-'}",
        force=True,
    )
    with ExitStack() as stack:
        proxies: dict[str, FaultProxy] = {}
        consumers: ConsumerProcesses | None = None
        if target.embedded is not None:
            proxies, consumers = stack.enter_context(_embedded(target, target.embedded, plan))
        letters_before = _count_items(target, target.dead_letter_table)
        stop = threading.Event()
        writers = [
            Writer(
                region=region,
                name=f"{region}/w{i}",
                client=target.client(region),
                table_name=target.table_names[region],
                stamped=target.stamped(region, skew[region]),
                keys=keys,
                cold_keys=cold_keys,
                ledger=ledger,
                seed=_stable(plan.seed, region, i),
                rate=plan.rate,
                partition_key=target.partition_key,
                set_attribute=plan.set_attribute if merging else None,
            )
            for region in regions
            for i in range(plan.writers)
        ]
        threads = [threading.Thread(target=w.run, args=(stop,), daemon=True) for w in writers]
        started = time.monotonic()
        for t in threads:
            t.start()
        try:
            restarts: list[tuple[float, str]] = []
            pending = list(events)
            while (elapsed := time.monotonic() - started) < plan.duration:
                while pending and pending[0].at <= elapsed:
                    event = pending.pop(0)
                    restarts += _inject(event, proxies, consumers, faults, target)
                for due, region in [r for r in restarts if r[0] <= elapsed]:
                    restarts.remove((due, region))
                    if consumers is not None:
                        consumers.start(region)
                say.line(
                    f"{elapsed:4.0f}/{plan.duration:g} s: {ledger.acknowledged} writes "
                    f"acknowledged, {_faults_so_far(faults, proxies)} faults, "
                    f"{faults['kill'] + faults['standby']} kills"
                )
                time.sleep(0.05)
        finally:
            stop.set()
            for t in threads:
                t.join(timeout=30)
        # The end of the faults: calm proxies, every region's consumers running again.
        for proxy in proxies.values():
            proxy.calm()
        if consumers is not None:
            wanted = _wanted(plan, regions)
            for region in regions:
                for _ in range(wanted[region] - consumers.alive(region)):
                    consumers.start(region)
        say.line(
            f"writers stopped after {ledger.acknowledged} acknowledged writes; waiting for "
            "the regions to converge",
            force=True,
        )
        calm = time.monotonic()
        snapshot, converged = _quiesce(target, plan, say)
        converged_after = converged - calm if converged is not None else None
        exits = consumers.exited() if consumers is not None else []
        for gone in exits:
            say.line(f"a consumer of {gone} exited by itself: see its log", force=True)
        conflicts = _count_items(target, target.conflict_table)
        letters_after = _count_items(target, target.dead_letter_table)
        dead_letters = (
            letters_after - letters_before
            if letters_after is not None and letters_before is not None
            else None
        )
        for name, proxy in proxies.items():
            for fault, count in proxy.injected.items():
                faults[str(fault)] += count
            del name
        restarts_total = (
            (consumers.started - sum(_wanted(plan, regions).values())) if consumers else 0
        )
    final = {
        key: final_value(item, value_attribute=VALUE) for key, item in snapshot[regions[0]].items()
    }
    verdict = judge(
        ledger.writes,
        regions=snapshot,
        final=final,
        judge_lost=not merging,
        set_attribute=plan.set_attribute if merging else None,
    )
    if target.embedded is None:
        _clean_up(target, keys + cold_keys)
    return Report(
        seed=plan.seed,
        regions=regions,
        resolver=target.resolver,
        duration=plan.duration,
        writes=Counter(str(w.kind) for w in ledger.writes if w.acked is not None),
        writes_failed=ledger.errors,
        faults=faults,
        restarts=max(0, restarts_total),
        skew_ms=skew,
        verdict=verdict,
        converged_after=converged_after,
        conflicts=conflicts,
        merging=merging,
        dead_letters=dead_letters,
        differing={k: differing([snapshot[r].get(k) for r in regions]) for k in verdict.divergent},
        events=events,
        exits=exits,
    )


def _stable(*parts: object) -> int:
    """A seed derived from ``parts``, the same in every process (``hash`` of a string is not:
    PYTHONHASHSEED)."""
    return random.Random("/".join(map(str, parts))).getrandbits(32)


def _wanted(plan: Plan, regions: tuple[str, ...]) -> dict[str, int]:
    """How many consumers each region runs: two (holder and standby) for the first region
    when ``standby`` is on."""
    return {r: 2 if ("standby" in plan.faults and r == regions[0]) else 1 for r in regions}


def _faults_so_far(faults: Counter[str], proxies: dict[str, FaultProxy]) -> int:
    return sum(faults.values()) + sum(sum(p.injected.values()) for p in proxies.values())


def _inject(
    event: Event,
    proxies: dict[str, FaultProxy],
    consumers: ConsumerProcesses | None,
    faults: Counter[str],
    target: Target,
) -> list[tuple[float, str]]:
    """Start ``event``; returns the restarts it calls for (when, region), relative to the run."""
    if event.kind in PROXY_FAULTS and event.region in proxies:
        proxies[event.region].storm(
            PROXY_FAULTS[event.kind], probability=event.probability, seconds=event.seconds
        )
    elif event.kind == "partition" and event.region in proxies:
        proxies[event.region].partition(seconds=event.seconds)
        faults["partition_windows"] += 1
    elif event.kind in PROCESS_FAULTS and consumers is not None:
        holder = _lease_holder(target, event.region) if event.kind == "standby" else None
        if consumers.kill(event.region, pid=holder, choice=event.choice) is not None:
            faults[event.kind] += 1
            return [(event.at + event.seconds, event.region)]
    return []


def _lease_holder(target: Target, region: str) -> int | None:
    """The pid in the owner of ``region``'s first shard lease (service.engine.leases'
    worker id, ``host/ns:pid:ulid``), to kill the holder and not the standby."""
    if target.checkpoint_table is None:
        return None
    client = target.client(region)
    try:
        items = client.scan(TableName=target.checkpoint_table, ConsistentRead=True)
    except Exception:
        return None
    for item in items.get("Items", []):
        owner = item.get("owner", {}).get("S")
        if item["shard"]["S"].startswith("lease/") and owner:
            pid = owner.split(":")[1]
            return int(pid) if pid.isdigit() else None
    return None


@contextmanager
def _embedded(
    target: Target, embedded: Embedded, plan: Plan
) -> Iterator[tuple[dict[str, FaultProxy], ConsumerProcesses]]:
    """A fault proxy per region and the consumers behind them; all stopped on exit."""
    parts = urlsplit(embedded.endpoint_url)
    host, port = parts.hostname or "127.0.0.1", parts.port or 80
    proxies = {
        r: FaultProxy(host, port, seed=_stable(plan.seed, r)).start() for r in target.regions
    }
    consumers: ConsumerProcesses | None = None
    try:
        text = embedded.config_path.read_text()
        for region, proxy in proxies.items():
            block = f'name = "{region}"\nendpoint_url = "{embedded.endpoint_url}"'
            if block not in text:
                raise ValueError(f"no [[regions]] block for {region} at {embedded.endpoint_url}")
            text = text.replace(block, f'name = "{region}"\nendpoint_url = "{proxy.url}"')
        config = embedded.workdir / "consumers.toml"
        config.write_text(text)
        logs = embedded.workdir / "logs"
        consumers = ConsumerProcesses(config=config, logs=logs, env=embedded.env)
        for region, count in _wanted(plan, target.regions).items():
            for _ in range(count):
                consumers.start(region)
        consumers.wait_ready()
        yield proxies, consumers
    finally:
        if consumers is not None:
            for proxy in proxies.values():
                proxy.calm()
            consumers.stop()
        for proxy in proxies.values():
            proxy.stop()


def scan(target: Target, region: str) -> dict[str, dict[str, Any]]:
    """Every item of the run's keys in ``region``, by partition key (consistent reads)."""
    client = target.client(region)
    items: dict[str, dict[str, Any]] = {}
    for page in client.get_paginator("scan").paginate(
        TableName=target.table_names[region], ConsistentRead=True
    ):
        for item in page["Items"]:
            key = item[target.partition_key]["S"]
            if key.startswith(target.key_prefix):
                items[key] = item
    if target.tombstones is not None:
        # A key deleted with the store is absent from the table; its tombstone (and under
        # merge rules the data it keeps) is in the store.
        for key, image in target.tombstones(region).items():
            items.setdefault(key, image)
    return items


def _quiesce(
    target: Target, plan: Plan, say: _Progress
) -> tuple[dict[str, dict[str, dict[str, Any]]], float | None]:
    """Scan every region until all hold the same items, unchanged for ``plan.settle`` seconds;
    returns the last scans and when they first agreed (None: they still differed after
    ``plan.converge_timeout`` seconds in which no region changed).

    NOTE: the timeout counts from the last change, not from the start: a loaded machine drains
    a long run's backlog slowly, and slowness is not divergence. Regions that differ and stay
    unchanged with every consumer running and no fault left are stuck."""
    last_change = time.monotonic()
    agreed_at: float | None = None
    previous: dict[str, dict[str, dict[str, Any]]] | None = None
    while True:
        snapshot = {r: scan(target, r) for r in target.regions}
        first = snapshot[target.regions[0]]
        same = all(items == first for items in snapshot.values())
        now = time.monotonic()
        if snapshot != previous:
            last_change = now
            agreed_at = now if same else None
        elif same:
            assert agreed_at is not None
            if now - agreed_at >= plan.settle:
                return snapshot, agreed_at
        previous = snapshot
        if now - last_change > plan.converge_timeout:
            return snapshot, None
        differ = sum(
            1
            for k in set().union(*snapshot.values())
            if any(items.get(k) != first.get(k) for items in snapshot.values())
        )
        say.line(f"converging: {differ} keys differ between regions")
        time.sleep(0.5)


def _count_items(target: Target, table: str | None) -> int | None:
    """How many items ``table`` holds over every region (conflicts logged, records
    dead-lettered); None if there is no such table or it cannot be read."""
    if table is None:
        return None
    total = 0
    for region in target.regions:
        try:
            pages = (
                target.client(region)
                .get_paginator("scan")
                .paginate(TableName=table, Select="COUNT")
            )
            total += sum(page["Count"] for page in pages)
        except Exception:
            return None
    return total


def _clean_up(target: Target, keys: list[str]) -> None:
    """Delete the run's keys through georep (tombstones that TTL collects after the horizon)."""
    sdk = target.stamped(target.regions[0], 0)
    for key in keys:
        sdk.delete({target.partition_key: {"S": key}})
