"""Regions converge to the resolver folded over all acknowledged writes, whatever the schedule."""

from __future__ import annotations

from typing import Any

from resolvers import LastWriterWins, VersionCounter
from tests.property.machine import ReplicationMachine


class LWWMachine(ReplicationMachine):
    resolver = LastWriterWins()


class VersionCounterMachine(ReplicationMachine):
    resolver = VersionCounter()


class SharedCounterWrites:
    """Version counters on an application counter (``attribute = "version"``), kept as the
    resolver asks (resolvers/version_counter.py): every write counts above every version it
    replaces, deleted ones included, here with one counter shared by every writer (the
    machine's serial, as in tests/integration/test_many_tables.py). Mixed into a machine."""

    resolver = VersionCounter("version")
    # A copy puts an older version back: a write counting below what it replaces, which the
    # application's counter must not do.
    copies = False
    serial: int

    def new_data(self, key: str, value: str, current: dict[str, Any] | None) -> dict[str, Any]:
        return {"pk": {"S": key}, "val": {"S": value}, "version": {"N": str(self.serial)}}


class VersionCounterAttributeMachine(SharedCounterWrites, ReplicationMachine):
    pass


TestLastWriterWinsConverges = LWWMachine.TestCase
TestVersionCounterConverges = VersionCounterMachine.TestCase
TestVersionCounterAttributeConverges = VersionCounterAttributeMachine.TestCase
