"""Write groups (issue 24): the conditional writes bound for one region, several keys at once,
sent as one TransactWriteItems instead of one request each.

A group is all or nothing, and DynamoDB bounds it: at most 100 actions (a key written with its
tombstone-store place is two) and 4 MB of items, and no two actions on the same item. Two
changes to one key never share a group (the second is decided on what the first wrote), so
`split` starts a new group at a key already in the current one, and keeps the order given:
a key's entries stay in their order across groups.

Pure: the adapters send the groups (`Table.commit_group`), the pipeline chooses what goes in
(docs/design.md, "Write groups").
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from service.core.places import Step
from service.core.values import size_of

MAX_GROUP_ACTIONS = 100  # DynamoDB's limit per TransactWriteItems
MAX_GROUP_BYTES = 4 * 1024 * 1024  # DynamoDB's limit on a transaction's items


@dataclass(frozen=True)
class Entry:
    """One key's steps in a group: its table's and its store's (either may be absent)."""

    key: Mapping[str, Any]
    table: Step | None = None
    store: Step | None = None

    @property
    def actions(self) -> int:
        return sum(step is not None for step in (self.table, self.store))

    @property
    def size(self) -> int:
        """Bytes of the items it writes (a check or a delete writes none: its key counts)."""
        total = 0
        for step in (self.table, self.store):
            if step is not None:
                written = step.item if step.item is not None and not step.check else self.key
                total += size_of(dict(written))
        return total


def key_of(entry: Entry) -> str:
    return json.dumps(entry.key, sort_keys=True, default=str)


def split(
    entries: Sequence[Entry],
    *,
    max_actions: int = MAX_GROUP_ACTIONS,
    max_bytes: int = MAX_GROUP_BYTES,
) -> Iterator[list[Entry]]:
    """``entries`` in order, cut into groups within the limits, a key at most once per group.
    An entry over a limit on its own is a group of its own (the backend refuses it, alone).

    >>> e = [Entry({"pk": {"S": k}}, table=None) for k in "abca"]
    >>> [[x.key["pk"]["S"] for x in g] for g in split(e, max_actions=2)]
    [['a', 'b'], ['c', 'a']]
    """
    group: list[Entry] = []
    keys: set[str] = set()
    actions = size = 0
    for entry in entries:
        key = key_of(entry)
        weight = max(entry.actions, 1)
        if group and (
            key in keys or actions + weight > max_actions or size + entry.size > max_bytes
        ):
            yield group
            group, keys, actions, size = [], set(), 0, 0
        group.append(entry)
        keys.add(key)
        actions += weight
        size += entry.size
    if group:
        yield group


def check_group(entries: Sequence[Entry]) -> None:
    """What DynamoDB refuses before looking at any item: more than `MAX_GROUP_ACTIONS`
    actions, or two entries of one key (`split` never makes either). A caller's error."""
    if sum(entry.actions for entry in entries) > MAX_GROUP_ACTIONS:
        raise ValueError(f"a group of more than {MAX_GROUP_ACTIONS} actions")
    if len({key_of(entry) for entry in entries}) < len(entries):
        raise ValueError("a group with two entries of one key")


__all__ = ["MAX_GROUP_ACTIONS", "MAX_GROUP_BYTES", "Entry", "check_group", "key_of", "split"]
