"""Shard leases, decided: which leases a worker renews, takes, releases or asks for.

Plain functions over frozen values; the worker's clock reading is an argument. The edge
(service/engine/leases.py) lists the leases, calls :func:`observe` and :func:`decide`, and performs
the plan with conditional writes built from :func:`condition_holds`'s rule.

Laws the edge and the fakes rely on:

* A lease item's ``counter`` grows by one on every write that changes who holds it or proves
  its holder alive (take, renew, release, hand-over); items are never deleted, so
  ``(owner, counter)`` never repeats, and ``counter == 0`` stands for "no item yet".
* Every write is conditional on the ``(owner, counter)`` the writer listed: a write decided on
  a stale listing fails, and a failed write means "not held", never an error.
* Expiry is KCL's: a worker thinks another's lease lapsed once it has seen the same
  ``(owner, counter)`` for ``lease_seconds`` on its own monotonic clock (no clocks compared
  across hosts). A worker times its own lease from the moment it *sent* the write that made
  it, so it stops believing it holds a lease no later than anyone else may take it (clocks
  running at the same rate is the one assumption, as in KCL).
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace

NEVER = -math.inf  # a ``since`` that has always lapsed


@dataclass(frozen=True)
class Lease:
    """One shard's lease as stored. ``owner`` None: free (released, or no item yet when
    ``counter`` is 0). ``wanted_by``: a worker under its fair share asked the holder to let
    the lease go (a cooperative steal)."""

    shard: str
    owner: str | None
    counter: int
    wanted_by: str | None = None


def absent(shard: str) -> Lease:
    """The lease of a shard that has no item yet."""
    return Lease(shard, owner=None, counter=0)


@dataclass(frozen=True)
class Seen:
    """What one worker saw of a lease: ``(owner, counter)`` and since when (its own clock)."""

    owner: str | None
    counter: int
    since: float


# -- the write rule: one copy, used by the in-memory table and mirrored by DynamoDB's condition


def condition_holds(current: Lease | None, expected: Lease) -> bool:
    """A conditional lease write succeeds iff the item is still as the writer listed it."""
    if expected.counter == 0:
        return current is None  # first take: no item yet
    return (
        current is not None
        and current.counter == expected.counter  # nobody wrote since the listing
        and current.owner == expected.owner  # same holder (or still free)
    )


def taken(lease: Lease, *, by: str) -> Lease:
    return Lease(lease.shard, owner=by, counter=lease.counter + 1)


def renewed(lease: Lease) -> Lease:
    # NOTE: a renewal drops a ``wanted_by`` written after the listing; the asker asks again.
    return Lease(lease.shard, owner=lease.owner, counter=lease.counter + 1)


def released(lease: Lease) -> Lease:
    return Lease(lease.shard, owner=None, counter=lease.counter + 1)


def handed_over(lease: Lease) -> Lease:
    """Give an asked-for lease to the asker directly: were it only freed, its old holder (who
    no longer counts the asker among the workers) could take it back first."""
    return Lease(lease.shard, owner=lease.wanted_by, counter=lease.counter + 1)


def requested(lease: Lease, *, by: str) -> Lease:
    """Ask the holder for the lease: the counter stays, so nobody's expiry timer restarts."""
    return replace(lease, wanted_by=by)


# -- observation and expiry


def lapsed(seen: Seen, *, now: float, lease_seconds: float) -> bool:
    return now - seen.since >= lease_seconds


def holds(seen: Seen | None, *, me: str, now: float, lease_seconds: float) -> bool:
    """This worker may read the shard: its own write made the lease, less than
    ``lease_seconds`` ago (timed from when the write was sent)."""
    return (
        seen is not None
        and seen.owner == me
        and not lapsed(seen, now=now, lease_seconds=lease_seconds)
    )


def observe(
    seen: Mapping[str, Seen], leases: Iterable[Lease], *, me: str, at: float
) -> dict[str, Seen]:
    """The observations after a listing that *returned* at ``at``: an unchanged
    ``(owner, counter)`` keeps its time; a new one is timed from ``at``, except one naming
    this worker that it did not record itself (a write whose answer was lost): when it
    happened is unknown, so it counts as lapsed until renewed."""
    out: dict[str, Seen] = {}
    for lease in leases:
        before = seen.get(lease.shard)
        if before is not None and (before.owner, before.counter) == (lease.owner, lease.counter):
            out[lease.shard] = before
        else:
            since = NEVER if lease.owner == me else at
            out[lease.shard] = Seen(lease.owner, lease.counter, since)
    return out


# -- the decision


@dataclass(frozen=True)
class Plan:
    """What a worker does this tick. ``take``: every orphaned lease, in this worker's order of
    preference; ``want``: how many of them to acquire (all, today). ``hand_over``: leases
    another worker asked for. ``request``: a lease to ask its holder for."""

    renew: tuple[Lease, ...] = ()
    release: tuple[Lease, ...] = ()
    hand_over: tuple[Lease, ...] = ()
    take: tuple[Lease, ...] = ()
    want: int = 0
    request: Lease | None = None
    workers: int = 1
    target: int = 0


def fair_share(shards: int, workers: int) -> int:
    return math.ceil(shards / max(workers, 1))


def _order(me: str, shard: str) -> str:
    # Each worker prefers a different order, so standby workers seldom race for one shard.
    return hashlib.sha256(f"{me}|{shard}".encode()).hexdigest()


def decide(
    leases: Iterable[Lease],
    *,
    ready: Sequence[str],
    me: str,
    seen: Mapping[str, Seen],
    now: float,
    lease_seconds: float,
) -> Plan:
    """Renew this worker's leases of ready shards; release those of shards no longer ready;
    hand those asked for to the asker; take every free or lapsed lease; if still under the fair
    share ``ceil(ready / live workers)``, ask the busiest worker above it for one lease (one ask
    at a time).

    Live workers are the holders of leases that have not lapsed, those asking for one, and
    this worker (there is no other membership list: KCL counts workers the same way).

    >>> p = decide([], ready=["s1", "s2"], me="w", seen={}, now=0.0, lease_seconds=10.0)
    >>> (sorted(l.shard for l in p.take), p.want)
    (['s1', 's2'], 2)
    """
    listed = {lease.shard: lease for lease in leases}
    ready_set = set(ready)

    def alive(lease: Lease) -> bool:
        """Held by another worker that renewed it within lease_seconds, as far as we saw."""
        if lease.owner is None or lease.owner == me:
            return False
        observed = seen.get(lease.shard)
        if observed is None or (observed.owner, observed.counter) != (lease.owner, lease.counter):
            return True  # NOTE: not observed yet: its timer starts now, never assume it lapsed
        return not lapsed(observed, now=now, lease_seconds=lease_seconds)

    others = [lease for lease in listed.values() if alive(lease)]
    workers = {me} | {lease.owner for lease in others if lease.owner is not None}
    workers |= {lease.wanted_by for lease in others if lease.wanted_by is not None}
    target = fair_share(len(ready_set), len(workers))

    mine = sorted((lease for lease in listed.values() if lease.owner == me), key=lambda x: x.shard)
    # NOTE: a lease of ours is renewed even if our own clock says it lapsed (a pause, a lost
    # answer): the write is conditional on the counter, so it fails if anyone took it since.
    release = tuple(lease for lease in mine if lease.shard not in ready_set)
    hand_over = tuple(
        lease for lease in mine if lease not in release and lease.wanted_by not in (None, me)
    )
    renew = tuple(lease for lease in mine if lease not in release and lease not in hand_over)

    takeable = [
        listed.get(shard, absent(shard))
        for shard in ready_set
        if shard not in listed or (listed[shard].owner != me and not alive(listed[shard]))
    ]
    take = tuple(sorted(takeable, key=lambda lease: _order(me, lease.shard)))
    # NOTE: every orphaned shard is taken, beyond the fair share if need be: the share counts
    # workers that may be dead but not yet lapsed (or whose view is younger than lease_seconds),
    # and capping takes by it left a dead holder's shard unread for lease_seconds more (found
    # by tests/property/test_leases.py). Asks even the shares out afterwards.
    want = len(take)

    request = None
    expected = len(renew) + min(want, len(take))
    asking = any(lease.wanted_by == me for lease in others)
    if expected < target and not asking:
        counts = Counter(lease.owner for lease in others if lease.shard in ready_set)
        if counts:
            victim, held = min(counts.items(), key=lambda kv: (-kv[1], kv[0] or ""))
            if held > target or (held == target and expected < target - 1):
                theirs = [x for x in others if x.owner == victim and x.shard in ready_set]
                request = min(theirs, key=lambda lease: _order(me, lease.shard))
    return Plan(
        renew=renew,
        release=release,
        hand_over=hand_over,
        take=take,
        want=want,
        request=request,
        workers=len(workers),
        target=target,
    )
