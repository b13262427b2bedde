"""A merge's digest is always the digest of the data it holds, whichever resolver decided:
where the resolver kept one side's data whole (last-writer-wins, version counters) `merge`
reuses that side's digest instead of hashing again (issue 24: hashing was half of a
conflict's cost), and everywhere else it hashes. A wrong digest would make every region
read the merge as a raw item with copied metadata."""

from __future__ import annotations

from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from resolvers import LastWriterWins, UserRule, VersionCounter
from resolvers._protocol import Resolver
from service.core.apply import merge
from service.core.stamp import stamp
from service.core.stored import Absent, Settings, Stamped
from service.core.values import digest
from service.core.version import Version, encode_meta
from tests.property import example_rules

RESOLVERS: list[Resolver] = [
    LastWriterWins(),
    VersionCounter(),
    UserRule(example_rules.union_tags, "union_tags"),
]
KEY = {"pk": {"S": "k"}}

data = st.fixed_dictionaries(
    {"val": st.text(max_size=5).map(lambda s: {"S": s})},
    optional={"tags": st.sets(st.sampled_from("abc"), min_size=1).map(lambda t: {"SS": sorted(t)})},
)


def _write(
    settings: Settings, base: Version, region: str, at: int, fields: dict[str, Any], n: int
) -> Version:
    version = stamp(
        Stamped(version=base, meta_attr=encode_meta(base.meta)),
        {**KEY, **fields},
        region=region,
        now_hlc=at << 16,
        write_id=f"01J0000000000000000000{n:04d}",
        settings=settings,
    )
    assert version is not None
    return version


@given(
    resolver=st.sampled_from(RESOLVERS),
    first=data,
    second=data,
    at=st.tuples(st.integers(1, 5), st.integers(1, 5)),
)
def test_a_merge_holds_the_digest_of_its_data_under_every_resolver(
    resolver: Resolver, first: dict[str, Any], second: dict[str, Any], at: tuple[int, int]
) -> None:
    settings = Settings(regions=("r0", "r1"), key_attributes=("pk",), resolver=resolver)
    base = stamp(
        Absent(),
        {**KEY, "val": {"S": "base"}},
        region="r0",
        now_hlc=1 << 16,
        write_id="01J00000000000000000000000",
        settings=settings,
    )
    assert base is not None
    a = _write(settings, base, "r0", 10 + at[0], first, 1)
    b = _write(settings, base, "r1", 10 + at[1], second, 2)

    for merged in (merge(a, b, settings=settings), merge(b, a, settings=settings)):
        assert digest(merged.data) == merged.meta.digest
