"""The tombstone store's items (service/core/tombstones.py, issue 22): they round-trip through
their wire format, explain the REMOVE records georep's own deletes make, forget deletions past
the horizon, and refuse what georep did not write."""

from __future__ import annotations

from dataclasses import replace

import pytest
from hypothesis import given
from hypothesis import strategies as st

from service.core import tombstones
from service.core.tombstones import (
    Deletion,
    StoreItem,
    decode_store_item,
    encode_store_item,
    explain_remove,
    store_key,
    with_deletion,
    with_tombstone,
)
from service.core.version import TTL_ATTR, Meta, Version, VersionVector
from service.errors import MetadataError
from tests.property.test_core import REGIONS, metas

HORIZON_MS = 7 * 24 * 3600 * 1000
KEY = {"pk": {"S": "k"}, "sk": {"N": "1"}}


def tombstone(meta: Meta) -> Version:
    return Version(data=dict(KEY), meta=replace(meta, deleted=True))


images = st.dictionaries(
    st.sampled_from(["v", "n", "_georep"]),
    st.one_of(st.builds(lambda s: {"S": s}, st.text(max_size=3)), st.just({"N": "1"})),
).map(lambda data: {**KEY, **data})


@given(
    tomb=st.none() | metas().map(tombstone),
    deletions=st.dictionaries(
        st.text(min_size=1, max_size=4),
        st.builds(Deletion, metas().map(tombstone), st.booleans()),
        max_size=3,
    ),
)
def test_a_store_item_round_trips_through_its_wire_format(
    tomb: Version | None, deletions: dict[str, Deletion]
) -> None:
    item = StoreItem(tombstone=tomb, deletions=deletions)
    encoded = encode_store_item("orders", KEY, item, horizon_ms=HORIZON_MS)
    assert item == decode_store_item(encoded, regions=frozenset(REGIONS))
    assert (TTL_ATTR in encoded) == bool(tomb is not None or deletions)


@given(meta=metas(), image=images, other=images, local=st.booleans())
def test_a_deletion_explains_the_remove_of_exactly_the_image_it_deleted(
    meta: Meta, image: dict[str, object], other: dict[str, object], local: bool
) -> None:
    stored = with_deletion(None, tombstone(meta), image, local=local, horizon_ms=HORIZON_MS)
    assert Deletion(tombstone(meta), local) == explain_remove(stored, image)
    if other != image:
        assert explain_remove(stored, other) is None
    # The key living again keeps the deletion: its REMOVE may still be waiting in the stream.
    assert explain_remove(with_tombstone(stored, None), image) is not None


def test_deletions_past_the_horizon_are_forgotten_on_the_next_write() -> None:
    def at(ms: int, writer: str) -> Version:
        meta = Meta(
            vv=VersionVector.of({writer: ms << 16}),
            actor=writer,
            write_id="01HF7YASR9G000000000000002",
            hlc=ms << 16,
            digest="x" * 22,
            count=1,
            deleted=True,
        )
        return Version(data=dict(KEY), meta=meta)

    first, second = {**KEY, "v": {"S": "1"}}, {**KEY, "v": {"S": "2"}}
    stored = with_deletion(None, at(1_000, "eu-west-1~AAAAAAAA"), first, local=True, horizon_ms=10)
    kept = with_deletion(
        stored, at(1_005, "eu-west-1~BBBBBBBB"), second, local=False, horizon_ms=10
    )
    assert explain_remove(kept, first) is not None
    later = with_deletion(
        stored, at(1_011, "eu-west-1~BBBBBBBB"), second, local=False, horizon_ms=10
    )
    assert explain_remove(later, first) is None
    assert explain_remove(later, second) is not None


def test_one_store_table_keys_many_tables_and_key_types_apart() -> None:
    assert store_key("orders", {"pk": {"S": "1"}}) != store_key("orders", {"pk": {"N": "1"}})
    assert store_key("orders", {"pk": {"S": "1"}}) != store_key("order", {"pk": {"S": "1"}})
    assert store_key("t", {"a": {"S": "1"}, "b": {"S": "2"}}) == store_key(
        "t", {"b": {"S": "2"}, "a": {"S": "1"}}
    )


@pytest.mark.parametrize(
    "tamper",
    [
        lambda item: item.pop(tombstones.DATA_ATTR),
        lambda item: item.update({tombstones.DELETIONS_ATTR: {"S": "x"}}),
        lambda item: item[tombstones.DELETIONS_ATTR]["M"].update({"i": {"M": {"l": {"S": "1"}}}}),
        lambda item: item[tombstones.DELETIONS_ATTR]["M"].update(
            {"i": {"M": {"l": {"BOOL": True}}}}
        ),
    ],
    ids=["no data", "deletions not a map", "local not a bool", "no tombstone"],
)
def test_a_store_item_georep_did_not_write_is_refused(tamper: object) -> None:
    meta = Meta(
        vv=VersionVector.of({"eu-west-1~AAAAAAAA": 1 << 16}),
        actor="eu-west-1~AAAAAAAA",
        write_id="01HF7YASR9G000000000000002",
        hlc=1 << 16,
        digest="x" * 22,
        count=1,
        deleted=True,
    )
    item = encode_store_item(
        "t",
        KEY,
        with_deletion(None, Version(dict(KEY), meta), {**KEY}, local=True, horizon_ms=HORIZON_MS),
        horizon_ms=HORIZON_MS,
    )
    tamper(item)  # type: ignore[operator]
    with pytest.raises(MetadataError):
        decode_store_item(item, regions=frozenset(REGIONS))


def test_the_module_examples_hold() -> None:
    import doctest

    assert 0 == doctest.testmod(tombstones).failed
