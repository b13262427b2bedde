"""With the tombstone store (issue 22): regions converge to the resolver folded over all
acknowledged writes, tables and stores alike, and a deleted key is absent from every table
(what plain boto3 readers see), whatever the schedule."""

from __future__ import annotations

from resolvers import LastWriterWins, VersionCounter
from tests.property.machine import ReplicationMachine


class StoreLWWMachine(ReplicationMachine):
    resolver = LastWriterWins()
    store = True
    # NOTE: an application's copy of a georep item put beside a tombstone is adopted over it
    # only while the table still holds the copy when its INSERT is read (`translate`'s
    # ``beside``); a version written over the copy first (the no-read path cannot see the
    # store) leaves a live item beside a tombstone it does not succeed. Open: docs/design.md.
    copies = False


class StoreVersionCounterMachine(ReplicationMachine):
    resolver = VersionCounter()
    store = True
    copies = False


TestLastWriterWinsConvergesWithTheStore = StoreLWWMachine.TestCase
TestVersionCounterConvergesWithTheStore = StoreVersionCounterMachine.TestCase
