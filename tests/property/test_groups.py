"""`service.core.groups.split`: groups within DynamoDB's transaction limits, a key at most once
per group, the entries' order kept, and no group cut without a reason."""

from __future__ import annotations

from itertools import pairwise

from hypothesis import given
from hypothesis import strategies as st

from service.core.apply import ExpectAbsent
from service.core.groups import MAX_GROUP_ACTIONS, Entry, key_of, split
from service.core.places import Step

STEP = Step(ExpectAbsent(), {"pk": {"S": "x"}, "v": {"S": "payload"}})
CHECK = Step(ExpectAbsent(), check=True)


@st.composite
def entries(draw: st.DrawFn) -> list[Entry]:
    out = []
    for _ in range(draw(st.integers(0, 60))):
        key = {"pk": {"S": draw(st.sampled_from("abcdefgh"))}}
        padding = draw(st.integers(0, 300))
        table = Step(ExpectAbsent(), {**key, "v": {"S": "x" * padding}})
        store = draw(st.sampled_from([None, STEP, CHECK]))
        out.append(Entry(key, table=table, store=store))
    return out


@given(entries(), st.integers(1, 12), st.integers(64, 2000))
def test_groups_keep_order_limits_and_one_entry_per_key(
    given_entries: list[Entry], max_actions: int, max_bytes: int
) -> None:
    groups = list(split(given_entries, max_actions=max_actions, max_bytes=max_bytes))
    assert [e for g in groups for e in g] == given_entries
    for group in groups:
        assert group
        assert len({key_of(e) for e in group}) == len(group)
        if len(group) > 1:  # an entry over a limit alone is a group of its own
            assert sum(e.actions for e in group) <= max_actions
            assert sum(e.size for e in group) <= max_bytes
    for group, after in pairwise(groups):
        first = after[0]
        cut = (
            key_of(first) in {key_of(e) for e in group}
            or sum(e.actions for e in group) + first.actions > max_actions
            or sum(e.size for e in group) + first.size > max_bytes
        )
        assert cut, "a group was cut although the next entry fitted"


def test_the_default_limit_is_dynamodbs_hundred_actions() -> None:
    many = [Entry({"pk": {"S": str(n)}}, table=STEP, store=CHECK) for n in range(120)]
    assert [50, 50, 20] == [len(g) for g in split(many)]
    assert 100 == MAX_GROUP_ACTIONS
