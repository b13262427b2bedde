"""Failing schedules the state machines printed, kept as regression tests (`replay`): each is
replayed rule by rule, with the values each rule drew, against today's machine."""

from __future__ import annotations

import ast
import re
from pathlib import Path
from typing import Any

from tests.property.machine import ReplicationMachine

HERE = Path(__file__).parent


class _Drawn:
    """Stands in for Hypothesis's ``data()``: hands back the values the schedule recorded."""

    def __init__(self, values: list[Any]) -> None:
        self.values = values

    def draw(self, strategy: object, label: object = None) -> Any:
        return self.values.pop(0)


def replay(machine: ReplicationMachine, name: str) -> None:
    """Run the schedule ``name`` on ``machine``, the invariant after every rule, then its
    teardown (the end checks)."""
    drawn: list[Any] = []
    for line in (HERE / name).read_text().splitlines():
        if not line or line.startswith("#") or line.startswith("state = "):
            continue
        if match := re.match(r"Draw \d+: (.*)$", line):
            drawn.append(ast.literal_eval(match.group(1)))
            continue
        call = re.match(r"state\.(\w+)\((.*)\)$", line)
        assert call is not None, line
        rule, arguments = call.group(1), call.group(2)
        if rule == "teardown":
            break
        kwargs: dict[str, Any] = {}
        for key, value in re.findall(r"(\w+)=(data\(\.\.\.\)|\[[^\]]*\]|[^,]+)", arguments):
            kwargs[key] = _Drawn(drawn) if value == "data(...)" else ast.literal_eval(value.strip())
        getattr(machine, rule)(**kwargs)
        if rule != "setup":
            machine.metadata_is_valid_and_never_moves_backwards()
        drawn = [] if "data(...)" in arguments else drawn
    machine.teardown()
