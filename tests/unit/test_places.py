"""One key across the user's table and the tombstone store (service/core/places.py, issue 22):
what the core reads from both places, and the commit that writes a version there.

The property: whatever the two places hold, committing the version `decide` wants written
makes it the key's state (read back from both places), a tombstone never stays in the user's
table, and the invariant holds (a live stamped item has no tombstone beside it). A commit
whose read went stale changes nothing.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from resolvers import LastWriterWins, field_rules, union
from service.adapters.memory import MemoryTable
from service.core.apply import Skip, Write, decide
from service.core.places import KeyState, commit_for, read_key
from service.core.stored import Absent, Raw, Settings, Stamped
from service.core.tombstones import explain_remove, with_tombstone
from service.core.values import digest
from service.core.version import META_ATTR, Meta, Order, Version, VersionVector, compare

REGIONS = ("eu", "us")
NAME = "orders"
KEY = {"pk": {"S": "k"}}
SETTINGS = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())


def version(actor: str, counter: int, *, deleted: bool = False, value: str = "v") -> Version:
    data = dict(KEY) if deleted else {**KEY, "v": {"S": value}}
    meta = Meta(
        vv=VersionVector.of({actor: counter}),
        actor=actor,
        write_id=f"01HF7YASR9G0000000000000{counter:02d}",
        hlc=counter << 16,
        digest=digest(data),
        count=1,
        deleted=deleted,
    )
    return Version(data=data, meta=meta)


def table() -> MemoryTable:
    return MemoryTable(region="eu", key_attributes=("pk",), table_name=NAME)


def state_of(t: MemoryTable) -> KeyState:
    return read_key(t.get(KEY), t.get_stored(KEY), settings=SETTINGS)


def commit(t: MemoryTable, state: KeyState, v: Version, *, local: bool = False) -> bool:
    table_step, store_step = commit_for(state, v, local=local, table=NAME, settings=SETTINGS)
    return t.commit(KEY, table=table_step, store=store_step).ok


def test_a_deleted_key_is_absent_from_the_table_and_its_tombstone_is_the_keys_state() -> None:
    t = table()
    live = version("eu~AAAAAAAA", 1)
    assert commit(t, state_of(t), live)
    tomb = version("us~BBBBBBBB", 2, deleted=True)
    assert commit(t, state_of(t), tomb)

    assert t.get(KEY) is None
    state = state_of(t)
    assert Stamped(version=tomb, meta_attr=state.store_attr) == state.current
    deletion = explain_remove(state.store, t.stream[-1]["dynamodb"]["OldImage"])
    assert deletion is not None and not deletion.local and tomb == deletion.tombstone
    assert "REMOVE" == t.stream[-1]["eventName"]


def test_a_write_over_a_deleted_key_drops_its_tombstone() -> None:
    t = table()
    tomb = version("us~BBBBBBBB", 2, deleted=True)
    assert commit(t, state_of(t), tomb)
    later = version("eu~AAAAAAAA", 3)
    assert Order.CONCURRENT == compare(later.meta, tomb.meta)  # decide merged them; any live

    assert commit(t, state_of(t), later)

    state = state_of(t)
    assert state.tombstone is None and isinstance(state.current, Stamped)
    assert later == state.current.version


def test_a_raw_item_beside_a_tombstone_was_written_after_it() -> None:
    """Its copied context holds the tombstone, so its adoption succeeds the delete."""
    t = table()
    tomb = version("us~BBBBBBBB", 2, deleted=True)
    assert commit(t, state_of(t), tomb)
    t.put_raw({**KEY, "v": {"S": "raw"}})

    current = state_of(t).current
    assert isinstance(current, Raw) and current.copied is not None
    assert Order.EQUAL == compare(current.copied, tomb.meta)


def test_a_commit_whose_read_went_stale_changes_neither_place() -> None:
    t = table()
    assert commit(t, state_of(t), version("eu~AAAAAAAA", 1))
    read = state_of(t)
    t.put_raw({**KEY, "v": {"S": "raced"}})
    before = (t.get(KEY), t.get_stored(KEY))

    assert not commit(t, read, version("us~BBBBBBBB", 2, deleted=True))
    assert before == (t.get(KEY), t.get_stored(KEY))
    # And the other way round: the store changed since the read.
    absent = table()
    read = state_of(absent)
    assert commit(absent, state_of(absent), version("us~BBBBBBBB", 2, deleted=True))
    assert not commit(absent, read, version("eu~AAAAAAAA", 3))
    assert absent.get(KEY) is None


ACTORS = ("eu~AAAAAAAA", "us~BBBBBBBB", "eu~CCCCCCCC")
versions = st.builds(
    version,
    st.sampled_from(ACTORS),
    st.integers(1, 9),
    deleted=st.booleans(),
    value=st.sampled_from(["a", "b"]),
)


@given(
    history=st.lists(st.tuples(st.sampled_from(["replicate", "raw", "raw-delete"]), versions)),
    merge_rules=st.booleans(),
)
def test_every_decision_written_through_both_places_is_the_keys_state_after(
    history: list[tuple[str, Version]], merge_rules: bool
) -> None:
    """Replicated versions (decided and committed as the Replicator does) and applications'
    raw writes in any order: after each commit the written version is what both places read
    back as, a tombstone is never a table item, and a stamped item has no tombstone beside
    it."""
    settings = replace(
        SETTINGS, resolver=field_rules(tags=union()) if merge_rules else LastWriterWins()
    )
    t = table()
    for kind, v in history:
        if kind == "raw":
            t.put_raw({**KEY, "v": {"S": "raw"}})
            continue
        if kind == "raw-delete":
            t.delete_raw(KEY)
            continue
        state = read_key(t.get(KEY), t.get_stored(KEY), settings=settings)
        decision = decide(state.current, v, settings=settings)
        if not isinstance(decision, Write):
            assert isinstance(decision, Skip) or merge_rules  # merge rules defer at raw items
            continue
        steps = commit_for(state, decision.version, local=False, table=NAME, settings=settings)
        assert t.commit(KEY, table=steps[0], store=steps[1]).ok
        after = read_key(t.get(KEY), t.get_stored(KEY), settings=settings)
        assert isinstance(after.current, Stamped)
        assert decision.version == after.current.version
        item: dict[str, Any] | None = t.get(KEY)
        assert (item is None) == decision.version.meta.deleted
        if item is not None:
            assert META_ATTR in item and after.tombstone is None
        else:
            assert after.tombstone == decision.version


def test_a_store_item_with_only_deletions_is_checked_as_holding_no_tombstone() -> None:
    """An insert over a key whose store item keeps only deletions (the key lived again)
    checks that it still holds no tombstone, and keeps those deletions."""
    t = table()
    assert commit(t, state_of(t), version("eu~AAAAAAAA", 1))
    assert commit(t, state_of(t), version("us~BBBBBBBB", 2, deleted=True))
    assert commit(t, state_of(t), version("eu~AAAAAAAA", 3))
    stored = state_of(t).store
    assert stored is not None and stored.tombstone is None and stored.deletions
    assert commit(t, state_of(t), version("us~BBBBBBBB", 4, deleted=True))
    assert isinstance(state_of(t).current, Stamped)
    assert with_tombstone(None, None).tombstone is None
    assert isinstance(read_key(None, None, settings=SETTINGS).current, Absent)
