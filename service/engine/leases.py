"""Shard leases: several consumer processes of one region share its stream's shards, or stand by
and take over within seconds when a holder dies.

A lease per (stream ARN, shard id) lives in the consumer's checkpoint table (key ``shard``, S):
``lease/<stream arn>|<shard id>`` with ``owner`` (S, the holder's worker id; absent when free),
``counter`` (N, +1 on every take, renewal, release and hand-over) and ``wanted_by`` (S, a
worker under its fair share asking the holder to hand the lease over). The ``lease/`` prefix
keeps these items out of ``DynamoCheckpoints.load()`` (prefix ``<stream arn>|``) and
``repair_markers()`` (the part after the last ``|`` is a shard id, never ``__needs_repair__``).
The decisions are pure (service/core/leases.py); this module lists, writes and keeps time.

API::

    keeper = LeaseKeeper(table, stream_arn=arn, owner=new_worker_id())
    held = keeper.tick(ready_shards)     # every keeper.renew_every seconds
    keeper.holds(shard)                  # before reading a batch and before checkpointing
    keeper.last_taken                    # shards taken in the last tick: reload their checkpoint
    keeper.release(shard)                # a finished shard
    keeper.release_all()                 # on shutdown

How the consumer uses this
--------------------------
* Call ``tick(reader.ready_shards())`` at start and then every ``renew_every`` seconds
  (``lease_seconds / 3``) from the consumer loop, before choosing shards to read. Read only the
  shards it returns. A tick that raises (any DynamoDB error other than a lost conditional
  write) is a transient error: back off and tick again; the leases already held stay held
  until their time runs out (``holds`` says so), so a short outage loses nothing.
* For each shard in ``last_taken`` (newly held), load its checkpoint again from the table and
  drop any iterator or in-memory state: another worker may have moved it. The new holder
  starts after the last checkpoint.
* A shard that is no longer held (absent from ``tick``'s answer, or ``holds`` false): stop
  reading it, drop its iterator, let writes already in flight finish (they are idempotent),
  and do not checkpoint it: ask ``holds(shard)`` right before every checkpoint save and skip
  the save when false. (``holds`` can turn false between the check and the save; the save is
  then at most a few milliseconds late and names a position the old holder really applied,
  which the new holder may already be past: the checkpoint stores refuse any save that is not
  forward, service/core/checkpoints.py.)
* Tick on a cadence of its own, whatever the stream's backoff, and while draining before a
  stop (``tick(shards in flight, taking=False)``): a lease that lapses while the holder still
  writes hands the shard to a second reader.
* When a shard is finished (read to its end and checkpointed), call ``release(shard)``; on
  shutdown, ``release_all()``, so a standby takes over at once instead of after
  ``lease_seconds``.
* "Ready" must come from fresh checkpoints: a child shard becomes ready when its parent is
  finished, and another worker may have finished the parent.

Why duplicates after a takeover are safe: delivery is at-least-once anyway. The new holder
starts from the last checkpoint, which trails what the old holder applied, so records between
the two are applied again; the replication decision is idempotent (a record whose version is
already in the destination is skipped), so a replay changes nothing. Leases only make two
readers of one shard rare (a lost lease is noticed within ``lease_seconds``), they are not
needed for correctness.

Cost (bench/leases.py at 1,000 shards, docs/decisions.md): a listing is one consistent Scan of
the whole checkpoint table filtered by the prefix (885 ms on moto, 361 KB read = 91 read units
with 1,000 checkpoints beside the leases); renewals are one conditional PutItem per held lease
per ``renew_every``, ``renew_concurrency`` in flight at once (the consumer sends 8, its
client's control connections; one after another, 1,000 took 6.85 s on moto: keep
``last_tick_seconds`` well under ``renew_every``, or raise ``lease_seconds``).
"""

from __future__ import annotations

import os
import socket
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace

import ulid

from service.core.leases import (
    NEVER,
    Lease,
    Plan,
    Seen,
    decide,
    handed_over,
    holds,
    observe,
    released,
    renewed,
    requested,
    taken,
)
from service.ports import LeaseTable

__all__ = ["Lease", "LeaseKeeper", "Plan", "new_worker_id", "process_gone"]


def new_worker_id() -> str:
    """Unique per process (a ULID), readable by people (where its pid means something, and
    the pid, first): ``host/4026531836:1234:01J...``."""
    return f"{_pid_space()}:{os.getpid()}:{ulid.new()}"


def _pid_space() -> str:
    """Where this process's pids mean something: the host's name and, on Linux, its pid
    namespace (containers sharing a host name, e.g. Kubernetes hostNetwork pods, each have
    their own: a pid from another one names nothing here)."""
    try:
        namespace = os.readlink("/proc/self/ns/pid")  # "pid:[4026531836]"
    except OSError:
        return socket.gethostname()
    return f"{socket.gethostname()}/{namespace.removeprefix('pid:[').removesuffix(']')}"


def process_gone(owner: str) -> bool:
    """Whether ``owner`` (a `new_worker_id`) names a process of this host and pid namespace
    that has exited. (A zombie, exited but not yet reaped by its parent, still counts as
    running: its lease then runs out after ``lease_seconds``.)

    NOTE: hosts are told apart by name. Two machines with one host name (and, on Linux, pid
    namespaces with one inode number) would take each other's leases early: two readers of a
    shard for a while, which replication tolerates (at-least-once, idempotent), never a loss."""
    space, _, rest = owner.partition(":")
    pid, _, _ = rest.partition(":")
    if space != _pid_space() or not pid.isdigit() or int(pid) == os.getpid():
        return False
    try:
        os.kill(int(pid), 0)
    except ProcessLookupError:
        return True
    except OSError:  # exists, owned by someone else
        return False
    return False


class LeaseKeeper:
    """One worker's leases on one stream. Not thread-safe: call it from the consumer loop."""

    def __init__(
        self,
        table: LeaseTable,
        *,
        stream_arn: str,
        owner: str,
        lease_seconds: float = 10.0,
        clock: Callable[[], float] = time.monotonic,
        gone: Callable[[str], bool] = lambda owner: False,
        renew_concurrency: int = 1,
    ) -> None:
        """``gone(owner)``: whether a lease's owner is known to be dead (`process_gone`: a
        process of this host that no longer runs), so its leases are taken at once rather
        than after ``lease_seconds`` (a consumer restarted after kill -9).
        ``renew_concurrency``: renewals in flight at once in a tick (1: one after another, the
        schedule the property tests drive; the table must then take concurrent puts)."""
        self.table, self.stream_arn, self.owner = table, stream_arn, owner
        self.gone = gone
        self.lease_seconds, self.clock = lease_seconds, clock
        self.renew_concurrency = max(1, renew_concurrency)
        # NOTE: three renewals per lease period, as KCL: one lost renewal is not a lost lease.
        self.renew_every = lease_seconds / 3
        self.seen: dict[str, Seen] = {}
        self.last_taken: frozenset[str] = frozenset()
        self.last_plan: Plan | None = None
        # How long the last tick took: log a warning when this nears ``renew_every``
        # (bench/leases.py: 1,000 renewals one after another took 6.85 s on moto).
        self.last_tick_seconds = 0.0

    def tick(self, ready_shards: Sequence[str], *, taking: bool = True) -> frozenset[str]:
        """List the leases, renew ours, release what we should, take our fair share, ask for one
        if still short. Returns the shards held now. DynamoDB errors other than a lost
        conditional write propagate (the writes done before stay done).

        ``taking`` False (a consumer draining before it stops): renew the leases of
        ``ready_shards`` and release the others, but take, hand over and ask for none."""
        started = self.clock()
        leases = self.table.list(stream_arn=self.stream_arn)
        now = self.clock()  # NOTE: after the listing returned, so others' timers start late
        self.seen = observe(self.seen, leases, me=self.owner, at=now)
        for shard, seen in list(self.seen.items()):
            if seen.owner not in (None, self.owner) and self.gone(seen.owner):
                self.seen[shard] = Seen(seen.owner, seen.counter, NEVER)  # lapsed
        plan = decide(
            leases,
            ready=ready_shards,
            me=self.owner,
            seen=self.seen,
            now=now,
            lease_seconds=self.lease_seconds,
        )
        if not taking:
            # NOTE: a lease asked for is renewed, not handed over, while draining: the asker
            # would start from a checkpoint this consumer is still moving (renewing drops the
            # ask; the asker asks again, or takes the lease once it is released).
            plan = replace(
                plan,
                renew=plan.renew + plan.hand_over,
                hand_over=(),
                take=(),
                want=0,
                request=None,
            )
        self.last_plan = plan
        for lease in plan.release:
            self._write(lease, released(lease))
        for lease in plan.hand_over:
            self._write(lease, handed_over(lease))
        self._renew(plan.renew)
        got: set[str] = set()
        for lease in plan.take:
            if len(got) >= plan.want:
                break
            if self._write(lease, taken(lease, by=self.owner)):
                got.add(lease.shard)
        self.last_taken = frozenset(got)
        if plan.request is not None:
            # NOTE: an ask changes no counter, so it must not restart our timer on that lease.
            self._write(plan.request, requested(plan.request, by=self.owner), remember=False)
        self.last_tick_seconds = self.clock() - started
        return self.held()

    def held(self) -> frozenset[str]:
        now = self.clock()
        return frozenset(
            shard
            for shard, seen in self.seen.items()
            if holds(seen, me=self.owner, now=now, lease_seconds=self.lease_seconds)
        )

    def holds(self, shard: str) -> bool:
        """This worker may read (and checkpoint) ``shard`` now."""
        return holds(
            self.seen.get(shard), me=self.owner, now=self.clock(), lease_seconds=self.lease_seconds
        )

    def release(self, shard: str) -> None:
        """Let the shard go (finished, or shutting down): others may take it at once."""
        seen = self.seen.get(shard)
        if seen is not None and seen.owner == self.owner:
            lease = Lease(shard, owner=self.owner, counter=seen.counter)
            self._write(lease, released(lease))

    def release_all(self) -> None:
        for shard in sorted(self.seen):
            self.release(shard)

    def _renew(self, leases: Sequence[Lease]) -> None:
        """Renew ``leases``, ``renew_concurrency`` conditional writes in flight. Each outcome is
        remembered as `_write` remembers it, timed from before the first was sent (no later
        than its own: our hold never outlasts the table's); the first error is raised once
        every write has answered (the writes that succeeded stay done and remembered)."""
        if self.renew_concurrency == 1 or len(leases) < 2:
            for lease in leases:
                self._write(lease, renewed(lease))
            return
        sent = self.clock()
        with ThreadPoolExecutor(min(self.renew_concurrency, len(leases))) as pool:
            futures = [
                pool.submit(
                    self.table.put, renewed(lease), stream_arn=self.stream_arn, expected=lease
                )
                for lease in leases
            ]
        error: Exception | None = None
        for lease, future in zip(leases, futures, strict=True):
            try:
                ok = future.result()
            except Exception as failure:  # as in `_write`: seen stays as it was
                error = error or failure
                continue
            self._remember(renewed(lease), ok=ok, sent=sent)
        if error is not None:
            raise error

    def _write(self, expected: Lease, new: Lease, *, remember: bool = True) -> bool:
        """One conditional write; on success remember it, timed from before it was sent.

        An error leaves ``seen`` as it was: the write may or may not have happened, what we saw
        before still times our lease out, and the next listing shows the outcome."""
        if new.owner != self.owner and expected.owner == self.owner:
            # NOTE: giving a lease up (release, hand-over) ends our hold before the request
            # leaves: once it lands another worker may hold the shard, answer or no answer.
            self.seen[new.shard] = Seen(expected.owner, expected.counter, NEVER)
        sent = self.clock()
        ok = self.table.put(new, stream_arn=self.stream_arn, expected=expected)
        if remember:
            self._remember(new, ok=ok, sent=sent)
        return ok

    def _remember(self, new: Lease, *, ok: bool, sent: float) -> None:
        if ok:
            self.seen[new.shard] = Seen(new.owner, new.counter, sent)
        else:
            self.seen.pop(new.shard, None)  # the next listing starts its timer afresh
