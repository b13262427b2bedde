"""Regions converge to the resolver folded over all acknowledged writes, whatever the schedule."""

from __future__ import annotations

from resolvers import LastWriterWins, VersionCounter
from tests.property.machine import ReplicationMachine


class LWWMachine(ReplicationMachine):
    resolver = LastWriterWins()


class VersionCounterMachine(ReplicationMachine):
    resolver = VersionCounter()


TestLastWriterWinsConverges = LWWMachine.TestCase
TestVersionCounterConverges = VersionCounterMachine.TestCase
