"""``check(resolver)``: Hypothesis tests a resolver against the laws of ``_protocol.py``.

It generates two or three pairwise concurrent versions of one item (key ``pk``; random data,
random tombstones, HLC ties across regions, field stamps when the resolver wants them) and
merges them through the core's :func:`service.core.apply.merge`, so a resolver is judged on
exactly what replication would write. The first broken law, on the smallest inputs Hypothesis
can find, is raised as :class:`service.errors.LawViolation`.

>>> from resolvers import LastWriterWins
>>> check(LastWriterWins(), max_examples=20)
"""

from __future__ import annotations

import time
from collections.abc import Mapping

import ulid
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from resolvers._protocol import Resolver
from service.core.apply import merge
from service.core.stored import Settings
from service.core.values import AttributeValue, canonical_bytes, digest
from service.core.version import FieldStamp, Meta, Version, VersionVector
from service.errors import LawViolation

REGIONS = ("r0", "r1", "r2")
KEY = {"pk": {"S": "item"}}

Data = Mapping[str, AttributeValue]


def _pn_map() -> st.SearchStrategy[AttributeValue]:
    count = st.integers(0, 5).map(lambda n: {"N": str(n)})
    entry = st.fixed_dictionaries({"p": count, "n": count}).map(lambda parts: {"M": parts})
    regions = st.dictionaries(st.sampled_from(REGIONS), entry, min_size=1, max_size=3)
    return regions.map(lambda doc: {"M": doc})


def default_data() -> st.SearchStrategy[dict[str, AttributeValue]]:
    """A few attributes of types S, N, SS and a PN-counter map; each may be absent."""
    small = st.sampled_from(["a", "b", "c"])
    return st.fixed_dictionaries(
        {},
        optional={
            "name": small.map(lambda s: {"S": s}),
            "score": st.sampled_from(["0", "1", "2", "2.0", "-3"]).map(lambda n: {"N": n}),
            "tags": st.lists(small, min_size=1, max_size=3, unique=True).map(lambda t: {"SS": t}),
            "likes": _pn_map(),
        },
    )


def _versions(
    data: st.SearchStrategy[dict[str, AttributeValue]],
    *,
    stamps: bool,
    count: int,
    keeps: bool = False,
) -> st.SearchStrategy[tuple[Version, ...]]:
    @st.composite
    def build(draw: st.DrawFn) -> tuple[Version, ...]:
        order = draw(st.permutations(list(REGIONS)))
        out = []
        for i in range(count):
            actor = order[i]
            deleted = draw(st.sampled_from([False, False, True]))
            # Under merge rules a tombstone keeps the data it deleted (keeps_deleted_data).
            body = dict(draw(data)) if (keeps or not deleted) else {}
            item = {**KEY, **body}
            hlc = draw(st.integers(1, 4))  # small: ties across regions are likely
            fields: tuple[tuple[str, FieldStamp], ...] | None = None
            if stamps:
                names = set(body) | set(draw(st.sets(st.sampled_from(["name", "score", "tags"]))))
                fields = tuple(
                    sorted(
                        (n, (draw(st.integers(0, hlc)), draw(st.sampled_from(REGIONS))))
                        for n in names
                    )
                )
            # Every version has its own actor's dot, so all of them are pairwise concurrent.
            write_id = str(ulid.from_bytes(bytes([0] * 15 + [i + 1])))
            meta = Meta(
                vv=VersionVector.of({actor: 10 + i}),
                actor=actor,
                write_id=write_id,
                hlc=hlc,
                digest=digest(item),
                count=draw(st.integers(1, 5)),
                deleted=deleted,
                fields=fields,
            )
            out.append(Version(data=item, meta=meta))
        return tuple(out)

    return build()


def _same(a: Version, b: Version) -> bool:
    """Equality of merged versions: data as DynamoDB compares it, and the whole metadata."""
    return canonical_bytes(a.data) == canonical_bytes(b.data) and a.meta == b.meta


def _show(versions: tuple[Version, ...]) -> str:
    return "\n".join(
        f"  {v.meta.actor} hlc={v.meta.hlc} deleted={v.meta.deleted} "
        f"data={dict(v.data)} fields={v.meta.fields}"
        for v in versions
    )


def check(
    resolver: Resolver,
    *,
    data: st.SearchStrategy[dict[str, AttributeValue]] | None = None,
    max_examples: int = 200,
) -> None:
    """Raise LawViolation unless ``resolver`` is deterministic, commutative, associative and
    absorbing (``merge(merge(a, b), b) == merge(a, b)``) on generated concurrent versions."""
    cfg = Settings(regions=REGIONS, key_attributes=("pk",), resolver=resolver)
    strategy = data if data is not None else default_data()
    triples = _versions(
        strategy, stamps=resolver.field_stamps, count=3, keeps=resolver.keeps_deleted_data
    )
    found: list[tuple[str, str, tuple[Version, ...]]] = []

    def m(x: Version, y: Version) -> Version:
        return merge(x, y, settings=cfg)

    def law(name: str, ok: bool, message: str, inputs: tuple[Version, ...]) -> None:
        if not ok:
            found.append((name, message, inputs))
            raise AssertionError(f"{name}: {message}")

    @settings(
        database=None,
        derandomize=True,
        max_examples=max_examples,
        deadline=None,
        report_multiple_bugs=False,
        suppress_health_check=list(HealthCheck),
    )
    @given(triples)
    def laws(versions: tuple[Version, ...]) -> None:
        a, b, c = versions
        ab = m(a, b)
        time.sleep(0.001)  # a rule that reads the clock now sees another value
        law("deterministic", _same(ab, m(a, b)), "merging a and b twice differs", (a, b))
        law("commutative", _same(ab, m(b, a)), "merge(a, b) != merge(b, a)", (a, b))
        law("idempotent", _same(ab, m(ab, b)), "merge(merge(a, b), b) != merge(a, b)", (a, b))
        law(
            "associative",
            _same(m(ab, c), m(a, m(b, c))),
            "merge(merge(a, b), c) != merge(a, merge(b, c))",
            (a, b, c),
        )

    try:
        laws()
    except AssertionError:
        if not found:
            raise
        name, message, inputs = found[-1]
        raise LawViolation(
            f"resolver {resolver.name!r} is not {name}: {message}, for\n{_show(inputs)}",
            law=name,
            counterexample=inputs,
        ) from None


__all__ = ["check", "default_data"]
