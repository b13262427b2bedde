"""The lease decision (service/core/leases.py) in the cases a mutation check found untested."""

from __future__ import annotations

from service.core.leases import Lease, decide


def test_a_worker_that_has_not_seen_a_held_lease_yet_does_not_take_it() -> None:
    """A worker that starts (or lists the leases for the first time) cannot know when the
    holder last renewed: the holder's timer starts at this first sighting, so a live holder
    is never robbed by a newcomer. (A mutant that counted an unobserved lease as lapsed
    survived every lease test: the takeover is safe, the counter condition makes the old
    holder stop, but the shard changes hands for nothing and two consumers read it at once
    until the old one's renewal fails.)"""
    held = Lease(shard="s1", owner="w2", counter=5)
    plan = decide([held], ready=["s1"], me="w1", seen={}, now=1_000.0, lease_seconds=10.0)
    assert () == plan.take
    assert 0 == plan.want
