"""Why a write under merge rules must be an inflation of what it read (docs/design.md,
"Deletes under merge rules"), shown on the core itself.

Found by the short chaos run under the union rule (issue 16), whose workload let one
read-modify-write in four drop an element it read: one key in 40 runs ended with every region
holding the same version vector and different tags. georep keeps one version per item, a merge
of everything it received. A region that merged a version A with a concurrent C before B
(which read A and dropped an element of it) arrived keeps A's element, merged in with C; a
region that received B first replaced A with it and never merges A's element again. Both
hold the join of A, B and C. With inflations (B holds what it read) every order agrees.
"""

from __future__ import annotations

from typing import Any

from resolvers import UserRule
from service.core.apply import Skip, Write, decide
from service.core.stamp import stamp
from service.core.stored import Absent, Settings, Stamped, Stored
from service.core.version import Version, encode_meta
from tests.property import example_rules

SETTINGS = Settings(
    regions=("r0", "r1", "r2"),
    key_attributes=("pk",),
    resolver=UserRule(example_rules.union_tags, "union_tags"),
)
KEY = {"pk": {"S": "k"}}


def _data(value: str, tags: set[str]) -> dict[str, Any]:
    return {**KEY, "val": {"S": value}, "tags": {"SS": sorted(tags)}}


def _stored(version: Version) -> Stored:
    return Stamped(version=version, meta_attr=encode_meta(version.meta))


def _write(over: Version | None, region: str, at: int, value: str, tags: set[str]) -> Version:
    version = stamp(
        _stored(over) if over is not None else Absent(),
        _data(value, tags),
        region=region,
        now_hlc=at << 16,
        write_id=f"01J00000000000000000000{at:03d}",
        settings=SETTINGS,
    )
    assert version is not None
    return version


def _receive(held: Version, incoming: Version) -> Version:
    decision = decide(_stored(held), incoming, settings=SETTINGS)
    if isinstance(decision, Skip):
        return held
    assert isinstance(decision, Write)
    return decision.version


def _orders(b_keeps_what_it_read: bool) -> tuple[Version, Version]:
    a = _write(None, "r0", 1, "a", {"a"})
    b = _write(a, "r1", 2, "b", {"a", "b"} if b_keeps_what_it_read else {"b"})
    c = _write(None, "r2", 3, "c", {"c"})
    c_first = _receive(_receive(a, c), b)
    b_first = _receive(_receive(a, b), c)
    return c_first, b_first


def _tags(version: Version) -> set[str]:
    return set(version.data["tags"]["SS"])


def test_a_write_that_drops_an_element_it_read_leaves_one_vector_with_two_values() -> None:
    c_first, b_first = _orders(b_keeps_what_it_read=False)
    assert c_first.meta.vv == b_first.meta.vv
    assert {"a", "b", "c"} == _tags(c_first)
    assert {"b", "c"} == _tags(b_first)


def test_inflations_merge_to_one_value_in_every_order() -> None:
    c_first, b_first = _orders(b_keeps_what_it_read=True)
    assert c_first.meta.vv == b_first.meta.vv
    assert c_first.data == b_first.data
    assert {"a", "b", "c"} == _tags(c_first)
