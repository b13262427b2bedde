"""What each helper means, not only that it is lawful.

The law checker proves a merge is commutative, associative and idempotent; a `minimum()` that
computes the maximum passes it. These properties state the meaning (the mutation check of the
review left such mutants alive), and pin number spellings, which DynamoDB treats as equal
(``1.5`` == ``1.50``) but a replica set must store byte for byte the same.
"""

from __future__ import annotations

from decimal import Decimal
from typing import Any

from hypothesis import given
from hypothesis import strategies as st

from resolvers.fields import maximum, minimum, pn_counter, union
from service.core.values import canonical, digest
from service.core.version import Meta, Order, VersionVector, compare

STAMP = (1, "eu-west-1")
integers = st.integers(-(10**6), 10**6)


def spellings(n: int) -> st.SearchStrategy[str]:
    """Ways DynamoDB accepts to write the number ``n``."""
    return st.sampled_from([str(n), f"{n}.0", f"{n}.00", f"{Decimal(n):E}"])


@given(a=integers, b=integers, data=st.data())
def test_maximum_is_the_numeric_maximum_and_minimum_the_minimum(
    a: int, b: int, data: st.DataObject
) -> None:
    x, y = {"N": data.draw(spellings(a))}, {"N": data.draw(spellings(b))}
    biggest, _ = maximum().merge((x, STAMP), (y, STAMP))
    smallest, _ = minimum().merge((x, STAMP), (y, STAMP))
    assert biggest is not None and smallest is not None
    assert max(a, b) == Decimal(biggest["N"])
    assert min(a, b) == Decimal(smallest["N"])


@given(a=integers, data=st.data())
def test_equal_numbers_spelled_differently_merge_to_one_spelling_in_either_order(
    a: int, data: st.DataObject
) -> None:
    """Two regions holding 5 and 5.0 must end with the same bytes, whichever merges first."""
    x, y = {"N": data.draw(spellings(a))}, {"N": data.draw(spellings(a))}
    for helper in (maximum(), minimum()):
        assert helper.merge((x, STAMP), (y, STAMP)) == helper.merge((y, STAMP), (x, STAMP))


def counter(entries: dict[str, tuple[str, str]]) -> dict[str, Any]:
    return {"M": {r: {"M": {"p": {"N": p}, "n": {"N": n}}} for r, (p, n) in entries.items()}}


regions = st.sampled_from(["eu-west-1", "us-east-1"])
counts = st.integers(0, 50)


@given(
    a=st.dictionaries(regions, st.tuples(counts, counts)),
    b=st.dictionaries(regions, st.tuples(counts, counts)),
    data=st.data(),
)
def test_a_pn_counter_merge_is_the_pointwise_maximum_with_one_spelling(
    a: dict[str, tuple[int, int]], b: dict[str, tuple[int, int]], data: st.DataObject
) -> None:
    x = counter({r: (data.draw(spellings(p)), data.draw(spellings(n))) for r, (p, n) in a.items()})
    y = counter({r: (data.draw(spellings(p)), data.draw(spellings(n))) for r, (p, n) in b.items()})
    merged, _ = pn_counter().merge((x, STAMP), (y, STAMP))
    assert (merged, STAMP) == pn_counter().merge((y, STAMP), (x, STAMP))
    assert merged is not None
    got = {
        r: (Decimal(e["M"]["p"]["N"]), Decimal(e["M"]["n"]["N"])) for r, e in merged["M"].items()
    }
    expected = {
        r: (
            Decimal(max(a.get(r, (0, 0))[0], b.get(r, (0, 0))[0])),
            Decimal(max(a.get(r, (0, 0))[1], b.get(r, (0, 0))[1])),
        )
        for r in set(a) | set(b)
    }
    assert expected == got


@given(
    a=st.lists(st.integers(0, 20), min_size=1, unique=True),
    b=st.lists(st.integers(0, 20), min_size=1, unique=True),
)
def test_union_holds_every_element_of_both_sets_once(a: list[int], b: list[int]) -> None:
    x, y = {"NS": [str(n) for n in a]}, {"NS": [f"{n}.0" for n in b]}
    merged, _ = union().merge((x, STAMP), (y, STAMP))
    assert merged is not None
    assert sorted(set(a) | set(b)) == sorted(int(Decimal(n)) for n in merged["NS"])


@given(
    numbers=st.lists(st.integers(-1000, 1000), min_size=1, max_size=5, unique=True),
    data=st.data(),
)
def test_a_number_set_has_one_digest_whatever_its_order_and_spelling(
    numbers: list[int], data: st.DataObject
) -> None:
    """DynamoDB stores sets unordered and numbers by value: a set read back from another
    region, reordered and respelled, is the same data and must not look like a raw write."""
    respelled = [data.draw(spellings(n)) for n in data.draw(st.permutations(numbers))]
    expected = digest({"pk": {"S": "k"}, "ns": {"NS": [str(n) for n in numbers]}})
    assert expected == digest({"pk": {"S": "k"}, "ns": {"NS": respelled}})
    assert canonical({"NS": [str(n) for n in numbers]}) == canonical({"NS": respelled})


def test_equal_vectors_are_equal_for_one_version_and_concurrent_for_two() -> None:
    """`compare` is the causal order: a version equals itself; two different versions with
    one vector (unreachable while dots are unique, so no state machine can see it) are
    concurrent, never one after the other, so the resolver settles them."""
    vv = VersionVector.of({"eu-west-1": 3})
    one = Meta(
        vv=vv, actor="eu-west-1", write_id="01HF7YAT00G000000000000001", hlc=3, digest="a", count=1
    )
    other = Meta(
        vv=vv, actor="eu-west-1", write_id="01HF7YAT00G000000000000002", hlc=3, digest="b", count=1
    )
    later = Meta(
        vv=VersionVector.of({"eu-west-1": 4}),
        actor="eu-west-1",
        write_id="01HF7YAT00G000000000000003",
        hlc=4,
        digest="c",
        count=2,
    )
    assert Order.EQUAL == compare(one, one)
    assert Order.CONCURRENT == compare(one, other) == compare(other, one)
    assert (Order.AFTER, Order.BEFORE) == (compare(later, one), compare(one, later))
