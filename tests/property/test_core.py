"""Properties of the core's building blocks: HLC, digests, metadata, records, tombstones."""

from __future__ import annotations

import copy
from dataclasses import replace
from typing import Any

import pytest
import ulid
from hypothesis import given
from hypothesis import strategies as st

from resolvers import LastWriterWins, VersionCounter, field_rules, maximum, union
from service.core import hlc
from service.core.adopt import Adopt, Drop, Forward, adopt_found, translate
from service.core.apply import Annotate, Skip, Write, decide, merge
from service.core.records import parse_record
from service.core.stamp import beside_raw, join_meta, stamp, succeeding, written_later
from service.core.stored import Absent, Raw, Settings, Stamped, read_item
from service.core.values import digest, same_value
from service.core.version import (
    META_ATTR,
    TTL_ATTR,
    Meta,
    Order,
    Version,
    VersionVector,
    adoption_actor,
    blind_actor,
    compare,
    decode_meta,
    encode_item,
    encode_meta,
    fresh_actor,
    is_adoption_actor,
    is_over_raw_actor,
)
from service.errors import MetadataError, RecordError

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")
SETTINGS = Settings(
    regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins(), horizon_ms=60_000
)
T0 = 1_764_000_000_000

timestamps = st.integers(0, 2**60)
CLAIM_ACTORS = ("eu-west-1~00000001", "eu-west-1~0AAAAAAA", "eu-west-1~KKKKKKKK", "us-east-1")
wall = st.integers(0, 2**44)


# -- HLC ------------------------------------------------------------------------------------


@given(prev=timestamps, now=wall)
def test_a_clock_tick_never_goes_backwards(prev: int, now: int) -> None:
    """tick(prev, now) > prev whatever the wall clock says."""
    assert hlc.tick(prev, now) > prev


@given(prev=timestamps, remote=timestamps, now=wall)
def test_after_observing_a_remote_timestamp_the_clock_orders_after_it(
    prev: int, remote: int, now: int
) -> None:
    assert hlc.observe(prev, remote, now) > max(prev, remote)


@given(ms=wall, logical=st.integers(0, 2**16 - 1))
def test_hlc_pack_and_unpack_are_inverse(ms: int, logical: int) -> None:
    assert (ms, logical) == hlc.unpack(hlc.pack(ms, logical))


# -- digests --------------------------------------------------------------------------------


@given(st.lists(st.text(max_size=5), min_size=1, max_size=5, unique=True), st.randoms())
def test_set_order_does_not_change_the_digest(elements: list[str], rnd: Any) -> None:
    shuffled = list(elements)
    rnd.shuffle(shuffled)
    expected = digest({"pk": {"S": "k"}, "tags": {"SS": elements}})
    assert expected == digest({"pk": {"S": "k"}, "tags": {"SS": shuffled}})


def test_equal_numbers_written_differently_have_one_digest() -> None:
    a = {"n": {"N": "1.50"}, "big": {"N": "12345678901234567890123456789012345678"}}
    b = {"n": {"N": "1.5"}, "big": {"N": "12345678901234567890123456789012345678.000"}}
    assert digest(a) == digest(b)
    assert digest(a) != digest({**a, "big": {"N": "12345678901234567890123456789012345677"}})


@given(st.text(max_size=8), st.text(max_size=8))
def test_the_encoding_is_unambiguous_between_names_and_values(a: str, b: str) -> None:
    """Length prefixes: {a: b} and {a+b: ""} never share a digest unless they are equal."""
    left, right = {a: {"S": b}}, {a + b: {"S": ""}}
    assert (digest(left) == digest(right)) == (left == right)


# -- metadata -------------------------------------------------------------------------------

actors = st.sampled_from(REGIONS).flatmap(
    lambda r: st.sampled_from([r, f"{r}~7ZQ3K2MA", f"{r}~0000000A"])
)


@st.composite
def metas(draw: st.DrawFn) -> Meta:
    counters = draw(st.dictionaries(actors, st.integers(1, 2**62), min_size=1, max_size=4))
    actor = draw(st.sampled_from(sorted(counters)))
    return Meta(
        vv=VersionVector.of(counters),
        actor=actor,
        write_id=str(ulid.from_int(draw(st.integers(0, 2**128 - 1)))),
        hlc=draw(timestamps),
        digest=digest({"x": {"S": draw(st.text(max_size=4))}}),
        count=draw(st.integers(1, 10**6)),
        deleted=draw(st.booleans()),
        merged=draw(st.booleans()),
        adopted=draw(st.booleans()),
        fields=draw(
            st.none()
            | st.lists(
                st.tuples(
                    st.text(min_size=1, max_size=4), st.tuples(timestamps, st.sampled_from(REGIONS))
                ),
                unique_by=lambda f: f[0],
                max_size=3,
            ).map(lambda fs: tuple(sorted(fs)))
        ),
    )


@given(metas())
def test_metadata_round_trips_through_its_wire_format(meta: Meta) -> None:
    assert meta == decode_meta(encode_meta(meta), regions=frozenset(REGIONS))


def _fresh_meta_attr() -> dict[str, Any]:
    version = stamp(
        Absent(),
        {"pk": {"S": "k"}},
        region="eu-west-1",
        now_hlc=hlc.pack(T0),
        write_id=str(ulid.new()),
        settings=SETTINGS,
    )
    assert version is not None
    return copy.deepcopy(encode_meta(version.meta))


def _tamper(path: list[str], value: Any) -> dict[str, Any]:
    """The metadata of a fresh version with one field replaced (``*``: the writer's counter)."""
    attr = _fresh_meta_attr()
    target = attr["M"]
    for step in path[:-1]:
        target = target[step]
    last = path[-1] if path[-1] != "*" else attr["M"]["o"]["S"]
    if value is _DELETE:
        del target[last]
    else:
        target[last] = value
    return attr


_DELETE = object()


@pytest.mark.parametrize(
    ("case", "path", "value"),
    [
        ("negative counter", ["v", "M", "*"], {"N": "-3"}),
        ("zero counter", ["v", "M", "*"], {"N": "0"}),
        ("counter not a number", ["v", "M", "*"], {"S": "3"}),
        ("unknown region in vector", ["v", "M", "mars-north-1"], {"N": "3"}),
        ("unknown writer", ["o"], {"S": "mars-north-1"}),
        ("writer without a counter", ["o"], {"S": "us-east-1"}),
        ("write id not a ULID", ["w"], {"S": "not-a-ulid"}),
        ("digest malformed", ["h"], {"S": "xyz"}),
        ("flag not a boolean", ["d"], {"S": "true"}),
        ("timestamp negative", ["t"], {"N": "-1"}),
        ("missing field", ["n"], _DELETE),
        ("extra field", ["zz"], {"S": "hello"}),
        ("wrong schema", ["s"], {"N": "2"}),
        ("empty vector", ["v"], {"M": {}}),
        ("malformed actor tag", ["v", "M", "eu-west-1~lower"], {"N": "1"}),
    ],
)
def test_tampered_metadata_is_a_clear_typed_error(case: str, path: list[str], value: Any) -> None:
    """Negative counters, unknown regions, wrong types... never a crash, never accepted."""
    with pytest.raises(MetadataError):
        decode_meta(_tamper(path, value), regions=frozenset(REGIONS))


def test_metadata_that_is_not_a_map_is_refused() -> None:
    for bad in ({"S": "x"}, {"M": "x"}, {"M": {}, "S": "x"}, "x"):
        with pytest.raises(MetadataError):
            decode_meta(bad, regions=frozenset(REGIONS))  # type: ignore[arg-type]


# -- stamping, tombstones, TTL ---------------------------------------------------------------


def _stamped(
    data: dict[str, Any] | None, *, at: int, current: Any = None, region: str = "eu-west-1"
) -> Any:
    return stamp(
        current or Absent(),
        data,
        region=region,
        now_hlc=hlc.pack(at),
        write_id=str(ulid.new()),
        settings=SETTINGS,
    )


def test_a_delete_writes_a_tombstone_with_a_ttl_derived_from_its_timestamp() -> None:
    live = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0)
    tomb = _stamped(
        None, at=T0 + 5, current=read_item(encode_item(live, horizon_ms=1), settings=SETTINGS)
    )
    item = encode_item(tomb, horizon_ms=SETTINGS.horizon_ms)
    assert {"pk": {"S": "k"}} == tomb.data
    assert tomb.meta.deleted
    assert {"N": str((T0 + 5 + SETTINGS.horizon_ms) // 1000)} == item[TTL_ATTR]


def test_a_tombstone_past_its_horizon_counts_as_absence_for_a_later_version() -> None:
    """Some regions may have collected it already: all must treat it alike."""
    live = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0)
    tomb = _stamped(
        None, at=T0 + 5, current=read_item(encode_item(live, horizon_ms=1), settings=SETTINGS)
    )
    stored = read_item(encode_item(tomb, horizon_ms=SETTINGS.horizon_ms), settings=SETTINGS)
    before = _stamped({"pk": {"S": "k"}, "a": {"S": "2"}}, at=T0 + 10, region="us-east-1")
    after = _stamped(
        {"pk": {"S": "k"}, "a": {"S": "3"}}, at=T0 + 5 + SETTINGS.horizon_ms, region="us-east-1"
    )
    decision = decide(stored, before, settings=SETTINGS)
    assert isinstance(decision, Write) and decision.conflict is not None  # a real conflict
    decision = decide(stored, after, settings=SETTINGS)
    assert isinstance(decision, Write) and decision.version == after  # absence


def _record(
    event: str, *, old: Any = None, new: Any = None, ttl: bool = False, seq: str = "000001"
) -> dict[str, Any]:
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": T0 / 1000,
        "Keys": {"pk": {"S": "k"}},
        "SequenceNumber": seq,
        "SizeBytes": 10,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        body["OldImage"] = old
    if new is not None:
        body["NewImage"] = new
    record: dict[str, Any] = {
        "eventID": "1",
        "eventName": event,
        "eventSource": "aws:dynamodb",
        "dynamodb": body,
    }
    if ttl:
        record["userIdentity"] = {"type": "Service", "principalId": "dynamodb.amazonaws.com"}
    return record


def test_a_ttl_deletion_of_a_tombstone_is_garbage_collection() -> None:
    live = _stamped({"pk": {"S": "k"}}, at=T0)
    tomb = _stamped(
        None, at=T0 + 1, current=read_item(encode_item(live, horizon_ms=1), settings=SETTINGS)
    )
    change = parse_record(_record("REMOVE", old=encode_item(tomb, horizon_ms=1), ttl=True))
    assert Drop("collected") == translate(change, region="eu-west-1", settings=SETTINGS)


def test_a_ttl_deletion_of_a_live_item_replicates_as_a_delete_by_default() -> None:
    live = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0)
    change = parse_record(_record("REMOVE", old=encode_item(live, horizon_ms=1), ttl=True))
    outcome = translate(change, region="eu-west-1", settings=SETTINGS)
    assert isinstance(outcome, Adopt) and outcome.version.meta.deleted
    ignore = Settings(
        regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins(), ttl_live_policy="ignore"
    )
    assert Drop("ttl-ignored") == translate(change, region="eu-west-1", settings=ignore)


def test_a_raw_write_is_adopted_deterministically_and_never_taken_for_an_echo() -> None:
    remote = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0, region="us-east-1")
    old = encode_item(remote, horizon_ms=1)
    raw = {**old, "a": {"S": "changed by plain boto3"}}  # a read-modify-write copying metadata
    change = parse_record(_record("MODIFY", old=old, new=raw, seq="000007"))
    first = translate(change, region="eu-west-1", settings=SETTINGS)
    again = translate(change, region="eu-west-1", settings=SETTINGS)
    assert isinstance(first, Adopt)
    assert first == again  # a replay adopts the same version
    assert first.version.meta.vv.compare(remote.meta.vv).value == "after"
    assert first.version.meta.origin == "eu-west-1"


def test_a_version_written_by_replication_is_an_echo_and_a_local_one_is_forwarded() -> None:
    remote = _stamped({"pk": {"S": "k"}}, at=T0, region="us-east-1")
    change = parse_record(_record("INSERT", new=encode_item(remote, horizon_ms=1)))
    assert Drop("echo") == translate(change, region="eu-west-1", settings=SETTINGS)
    assert Forward(remote) == translate(change, region="us-east-1", settings=SETTINGS)


def test_a_duplicate_is_skipped_and_an_older_version_is_stale() -> None:
    v1 = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0)
    stored1 = read_item(encode_item(v1, horizon_ms=1), settings=SETTINGS)
    v2 = _stamped({"pk": {"S": "k"}, "a": {"S": "2"}}, at=T0 + 1, current=stored1)
    stored2 = read_item(encode_item(v2, horizon_ms=1), settings=SETTINGS)
    assert Skip("duplicate") == decide(stored2, v2, settings=SETTINGS)
    assert Skip("stale") == decide(stored2, v1, settings=SETTINGS)
    assert isinstance(stored2, Stamped)


@pytest.mark.parametrize("here", [None, "adoption", "restore"])
def test_a_duplicate_of_the_version_a_raw_item_copied_back_never_overwrites_its_data(
    here: Any,
) -> None:
    """A raw read-modify-write copied ``_georep`` back with new data; a replay of the version
    it copied (at-least-once delivery) arrives before the raw write's adoption. The raw data
    is the newer write and stays: the duplicate is stale, whoever applies it. (A decision
    that skipped only older versions wrote the duplicate over the raw data, rolling the
    region back until the adoption came.)"""
    v1 = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0)
    item = {**encode_item(v1, horizon_ms=1), "a": {"S": "edited raw"}}
    raw = read_item(item, settings=SETTINGS)
    assert not isinstance(raw, Stamped)
    assert Skip("stale") == decide(raw, v1, settings=SETTINGS, here=here)


@pytest.mark.parametrize(
    "record",
    [
        {},
        {"eventName": "UPSERT", "dynamodb": {}},
        {"eventName": "INSERT"},
        {
            "eventName": "INSERT",
            "dynamodb": {"SequenceNumber": "1", "ApproximateCreationDateTime": 1},
        },
        {
            "eventName": "INSERT",
            "dynamodb": {"Keys": {"pk": {"S": "k"}}, "ApproximateCreationDateTime": 1},
        },
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": "k"},
                "SequenceNumber": "1",
                "ApproximateCreationDateTime": 1,
            },
        },
        {
            "eventName": "INSERT",
            "dynamodb": {
                "Keys": {"pk": {"S": "k"}},
                "SequenceNumber": "1",
                "ApproximateCreationDateTime": "x",
            },
        },
        "not a record",
    ],
)
def test_a_malformed_record_is_a_record_error(record: Any) -> None:
    with pytest.raises(RecordError):
        parse_record(record)


def test_an_image_with_a_malformed_value_is_a_record_error_when_read() -> None:
    change = parse_record(_record("INSERT", new={"pk": {"S": "k"}, "a": {"XX": "?"}}))
    with pytest.raises(RecordError):
        translate(change, region="eu-west-1", settings=SETTINGS)


def test_same_value_follows_dynamodb_equality() -> None:
    assert same_value({"NS": ["1", "2.0"]}, {"NS": ["2", "1.00"]})
    assert not same_value({"S": "1"}, {"N": "1"})
    assert META_ATTR == "_georep"


def test_a_late_tombstone_past_its_horizon_is_stale_against_a_later_version() -> None:
    """The horizon rule is symmetric: a tombstone delivered after a version written past its
    expiry (a replay) counts as absence, so the order of arrival does not matter."""
    live = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0)
    tomb = _stamped(
        None, at=T0 + 5, current=read_item(encode_item(live, horizon_ms=1), settings=SETTINGS)
    )
    later = _stamped(
        {"pk": {"S": "k"}, "a": {"S": "3"}}, at=T0 + 5 + SETTINGS.horizon_ms, region="us-east-1"
    )
    stored = read_item(encode_item(later, horizon_ms=SETTINGS.horizon_ms), settings=SETTINGS)
    assert Skip("stale") == decide(stored, tomb, settings=SETTINGS)


def test_an_adopted_raw_write_succeeds_the_metadata_it_copied_back_and_its_old_image() -> None:
    """A read-modify-write read version X, the item was then raw-deleted, and the write put its
    data back with X's metadata: its old image is empty, so only the copied metadata says what
    it saw. The adoption must succeed X (found alive by the mutation check: an adoption that
    ignored copied metadata passed every machine, whose writers never interleave a read and a
    write-back)."""
    seen = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0, region="us-east-1")
    copied = {**encode_item(seen, horizon_ms=1), "a": {"S": "2"}}
    over_nothing = parse_record(_record("INSERT", new=copied, seq="000009"))
    adopted = translate(over_nothing, region="eu-west-1", settings=SETTINGS)
    assert isinstance(adopted, Adopt)
    assert Order.AFTER == compare(adopted.version.meta, seen.meta)


def test_an_adopted_raw_writes_clock_is_above_its_base_even_when_the_stream_time_is_behind() -> (
    None
):
    """The stream's time is whole seconds, so it is often behind the version a raw write
    replaced; the adoption's clock must still exceed its base's, or per-attribute stamps of
    what it changed would tie the base's (found alive by the mutation check)."""
    base = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0 + 900)  # stream says T0
    old = encode_item(base, horizon_ms=1)
    raw = {"pk": {"S": "k"}, "a": {"S": "2"}}
    adopted = translate(
        parse_record(_record("MODIFY", old=old, new=raw, seq="000011")),
        region="eu-west-1",
        settings=SETTINGS,
    )
    assert isinstance(adopted, Adopt)
    assert adopted.version.meta.hlc > base.meta.hlc


def test_an_adoption_succeeds_its_base_even_when_the_stream_numbers_below_it() -> None:
    """A re-enabled stream or a restored table may number its records below the adoption
    counter its items already carry: the adoption must still succeed its base (found alive
    by the mutation check: the model's streams only ever number upwards)."""
    first = parse_record(_record("INSERT", new={"pk": {"S": "k"}, "a": {"S": "1"}}, seq="900"))
    earlier = translate(first, region="eu-west-1", settings=SETTINGS)
    assert isinstance(earlier, Adopt)
    old = encode_item(earlier.version, horizon_ms=1)
    again = parse_record(
        _record("MODIFY", old=old, new={"pk": {"S": "k"}, "a": {"S": "2"}}, seq="000005")
    )
    adopted = translate(again, region="eu-west-1", settings=SETTINGS)
    assert isinstance(adopted, Adopt)
    assert Order.AFTER == compare(adopted.version.meta, earlier.version.meta)


def test_a_stamped_write_never_continues_the_adoption_actor_of_items_adopted_before() -> None:
    """Adoption actors (tags starting with ``0``, among them ``<region>~00000000``, which
    every adoption of a region bumped before issue 16) count by sequence numbers: a stamped
    write continuing one could take a counter an adoption takes (found alive by the mutation
    check when the model's sequence numbers stayed far below HLC counters)."""
    data = {"pk": {"S": "k"}, "a": {"S": "1"}}
    actor = adoption_actor("eu-west-1")
    legacy = Meta(
        vv=VersionVector.of({actor: 3}),
        actor=actor,
        write_id=str(ulid.new()),
        hlc=hlc.pack(T0),
        digest=digest(data),
        count=1,
        adopted=True,
    )
    current = read_item(encode_item(Version(data, legacy), horizon_ms=1), settings=SETTINGS)
    stamped = _stamped({"pk": {"S": "k"}, "a": {"S": "2"}}, at=T0 + 5, current=current)
    assert not is_adoption_actor(stamped.meta.actor)
    assert Order.AFTER == compare(stamped.meta, legacy)


def test_a_raw_write_claims_no_earlier_adoption_it_did_not_see() -> None:
    """A deep run (seed 4282501956): a raw delete of a stamped item, then a raw put, in one
    region. Both adoptions bumped the region's adoption actor with their sequence numbers, so
    the put's counter claimed the delete's dot; but the put's record carries no metadata (it
    replaced nothing), so its vector lacked the delete's base: a join with any version holding
    that base covered the delete without having merged it, and two regions held one vector
    with two carriers. Fix: an adoption continues its region's adoption actor only over what
    its raw write replaced in the table (a stamped old image, which holds that actor's
    history); over a raw item or nothing it starts a fresh one, as a stamped write would."""
    stamped = _stamped({"pk": {"S": "k"}, "a": {"S": "1"}}, at=T0 - 5)
    item = encode_item(stamped, horizon_ms=1)
    deletion = translate(
        parse_record(_record("REMOVE", old=item, seq="000002")),
        region="eu-west-1",
        settings=SETTINGS,
    )
    put = translate(
        parse_record(_record("INSERT", new={"pk": {"S": "k"}, "a": {"S": "2"}}, seq="000003")),
        region="eu-west-1",
        settings=SETTINGS,
    )
    assert isinstance(deletion, Adopt)
    assert isinstance(put, Adopt)
    dot = deletion.version.meta.actor
    claimed = put.version.meta.vv.get(dot) >= deletion.version.meta.vv.get(dot)
    assert not claimed or Order.AFTER == compare(put.version.meta, deletion.version.meta)


def test_raw_writes_adopted_one_after_another_keep_one_adoption_actor() -> None:
    """An item written raw again and again, each write over the previous one's adoption (the
    table held it): every adoption continues the region's adoption actor, so the vector keeps
    one entry besides the blind actor of the first write (which replaced nothing), not one per
    raw write (a fresh actor per adoption grew `_georep` by about 30 bytes a write: 30 KB after
    1,000, DynamoDB's 400 KB limit near 13,000). The blind actor is not continued over a
    stamped old image: those adoptions count their updates, which blind ones cannot
    (docs/decisions.md, "Blind raw writes")."""
    old = None
    for n in range(1, 51):
        new = {"pk": {"S": "k"}, "a": {"S": str(n)}}
        event = "MODIFY" if old is not None else "INSERT"
        record = _record(event, old=old, new=new, seq=f"{n:06d}")
        adopted = translate(parse_record(record), region="eu-west-1", settings=SETTINGS)
        assert isinstance(adopted, Adopt)
        old = encode_item(adopted.version, horizon_ms=1)
    meta = adopted.version.meta
    assert {blind_actor("eu-west-1"), meta.actor} == {actor for actor, _ in meta.vv.entries}
    assert is_adoption_actor(meta.actor)
    assert 50 == meta.count


@st.composite
def blind_writes(draw: st.DrawFn) -> list[dict[str, Any]]:
    """Records of raw writes of one item in one region while its consumer is behind: each
    replaced a raw item or nothing, so no image carries metadata. Sequence numbers increase
    across 16-bit boundaries, several records share a stream second."""
    sequence = draw(st.integers(1, 2**70))
    second = T0 // 1000
    records: list[dict[str, Any]] = []
    current: dict[str, Any] | None = None
    for n in range(draw(st.integers(2, 8))):
        sequence += draw(st.integers(1, 2**20))
        second += draw(st.sampled_from([0, 0, 0, 1]))
        delete = current is not None and draw(st.booleans())
        new = None if delete else {"pk": {"S": "k"}, "a": {"S": str(n)}}
        event = "REMOVE" if delete else ("MODIFY" if current is not None else "INSERT")
        record = _record(event, old=current, new=new, seq=str(sequence))
        record["dynamodb"]["ApproximateCreationDateTime"] = float(second)
        records.append(record)
        current = new
    return records


@given(records=blind_writes())
def test_blind_raw_writes_of_a_region_are_one_history_in_stream_order(
    records: list[dict[str, Any]],
) -> None:
    """Raw writes whose records show no metadata (an INSERT, MODIFY, REMOVE of one item before
    the consumer read the first, as in the AWS sample event) are adopted on the region's
    blind actor, each version's vector that actor alone at its sequence number: so each
    succeeds every earlier one and claims nothing without its history, and both resolvers
    rank it above them too, whatever the low bits of the sequence numbers and however many
    share a second (a lower-ranked successor of a version merged elsewhere would leave two
    regions with one vector and two carriers). A fresh actor per adoption (issue 16's first
    fix) made them concurrent: a conflict logged and successors written for every raw write."""
    versions = []
    for record in records:
        adopted = translate(parse_record(record), region="eu-west-1", settings=SETTINGS)
        assert isinstance(adopted, Adopt)
        versions.append(adopted.version)
    blind = blind_actor("eu-west-1")
    for record, version in zip(records, versions, strict=True):
        sequence = int(record["dynamodb"]["SequenceNumber"])
        assert VersionVector.of({blind: sequence}) == version.meta.vv
    for i, earlier in enumerate(versions):
        for later in versions[i + 1 :]:
            assert Order.AFTER == compare(later.meta, earlier.meta)
            for resolver in (LastWriterWins(), VersionCounter()):
                assert later.meta == resolver.resolve(earlier, later).carrier
                assert later.meta == resolver.resolve(later, earlier).carrier


def test_the_annotation_of_a_blind_adoption_continues_the_blind_actor() -> None:
    """Two raw writes before the consumer read the first: its adoption, applied in its own
    region, finds the second raw item and annotates it; the annotation's record shows the
    first adoption alone (blind), so its adoption continues the blind actor and succeeds the
    second write's adoption too: one history, no merge of the two (a fresh actor there, as a
    stamped context gets, made them concurrent)."""
    first = {"pk": {"S": "k"}, "a": {"S": "1"}}
    second = {"pk": {"S": "k"}, "a": {"S": "2"}}
    adoptions = []
    for record in (
        _record("INSERT", new=first, seq="000010"),
        _record("MODIFY", old=first, new=second, seq="000011"),
    ):
        adopted = translate(parse_record(record), region="eu-west-1", settings=SETTINGS)
        assert isinstance(adopted, Adopt)
        adoptions.append(adopted.version)
    decision = decide(
        read_item(second, settings=SETTINGS), adoptions[0], settings=SETTINGS, here="adoption"
    )
    assert isinstance(decision, Annotate)
    annotated = {**second, META_ATTR: encode_meta(decision.meta)}
    record = _record("MODIFY", old=second, new=annotated, seq="000012")
    annotation = translate(parse_record(record), region="eu-west-1", settings=SETTINGS)
    assert isinstance(annotation, Adopt)
    assert VersionVector.of({blind_actor("eu-west-1"): 12}) == annotation.version.meta.vv
    assert second == annotation.version.data
    for adoption in adoptions:
        assert Order.AFTER == compare(annotation.version.meta, adoption.meta)


def test_a_blind_adoption_over_its_raw_item_annotated_with_a_version_it_lacks_succeeds_both() -> (
    None
):
    """The blind actor's counter claims only versions it holds whole, so a blind adoption
    meeting its raw item annotated with an earlier adoption that holds a lower blind counter
    among other actors claims none of that one's history, and is not kept beside as
    `_claims_without` keeps an adoption actor's claim. Written alone it would drop the
    annotation from its region until the annotation's own record came back, and a raw write
    made meanwhile would succeed it alone (test_a_raw_write_after_its_predecessors_own_...):
    it writes a successor of both, with its data, forwarded as its region's write."""
    blind = blind_actor("eu-west-1")
    data = {"pk": {"S": "k"}, "a": {"S": "2"}}
    earlier = Meta(
        vv=VersionVector.of({blind: 5, "eu-west-1~0AAAAAAA": 7, "us-east-1~KKKKKKKK": 3}),
        actor="eu-west-1~0AAAAAAA",
        write_id=str(ulid.new()),
        hlc=hlc.pack(T0),
        digest=digest({"pk": {"S": "k"}, "a": {"S": "1"}}),
        count=3,
        adopted=True,
    )
    record = _record("MODIFY", old={"pk": {"S": "k"}, "a": {"S": "1"}}, new=data, seq="000009")
    adopted = translate(parse_record(record), region="eu-west-1", settings=SETTINGS)
    assert isinstance(adopted, Adopt)
    assert blind == adopted.version.meta.actor
    raw = read_item({**data, META_ATTR: encode_meta(earlier)}, settings=SETTINGS)
    decision = decide(raw, adopted.version, settings=SETTINGS, here="adoption")
    assert isinstance(decision, Write)
    successor = decision.version
    assert data == successor.data
    assert Order.AFTER == compare(successor.meta, adopted.version.meta)
    assert Order.AFTER == compare(successor.meta, earlier)
    assert not successor.meta.adopted and not successor.meta.merged
    assert "eu-west-1" == successor.meta.origin
    assert successor.meta.count > earlier.count


@given(
    old_vv=st.none()
    | st.dictionaries(st.sampled_from(CLAIM_ACTORS), st.integers(1, 99), min_size=1),
    new_vv=st.none()
    | st.dictionaries(st.sampled_from(CLAIM_ACTORS), st.integers(1, 99), min_size=1),
    old_stamped=st.booleans(),
    delete=st.booleans(),
)
def test_every_version_the_blind_actor_numbers_holds_nothing_else(
    old_vv: dict[str, int] | None, new_vv: dict[str, int] | None, old_stamped: bool, delete: bool
) -> None:
    """Whatever a raw write's record shows (nothing, raw data, metadata copied back or
    annotated, a stamped version it replaced, with or without the blind actor in it), its
    adoption is numbered by the blind actor only if its vector then names that actor alone, so
    a counter of the blind actor claims only versions whose whole vector it holds. A blind
    actor continued over a base holding other actors would claim versions without their
    bases, the deep run's divergence (seed 4282501956)."""
    old_data = {"pk": {"S": "k"}, "a": {"S": "old"}}
    new_data = {"pk": {"S": "k"}, "a": {"S": "new"}}

    def image(data: dict[str, Any], vv: dict[str, int] | None, *, stamped: bool) -> Any:
        if vv is None:
            return data
        actor = sorted(vv)[0]
        meta = Meta(
            vv=VersionVector.of(vv),
            actor=actor,
            write_id=str(ulid.new()),
            hlc=hlc.pack(T0 - 5),
            digest=digest(data if stamped else {"pk": {"S": "k"}, "a": {"S": "other"}}),
            count=1,
        )
        return {**data, META_ATTR: encode_meta(meta)}

    old = image(old_data, old_vv, stamped=old_stamped)
    if delete:
        record = _record("REMOVE", old=old, seq="000050")
    else:
        record = _record("MODIFY", old=old, new=image(new_data, new_vv, stamped=False), seq="50")
    adopted = translate(parse_record(record), region="eu-west-1", settings=SETTINGS)
    if not isinstance(adopted, Adopt):
        return  # a restored tombstone, say: nothing adopted
    meta = adopted.version.meta
    if meta.actor == blind_actor("eu-west-1"):
        assert [meta.actor] == [actor for actor, _ in meta.vv.entries]


def test_an_adoption_keeps_an_annotated_adoption_it_claims() -> None:
    """An adoption continues its region's adoption actor over what its raw write replaced,
    which need not hold an earlier adoption annotated on the raw item since (a version that
    replaced that adoption's raw write before it was adopted, say): in its own region, the
    adoption reaching the raw item keeps that context (the item stays raw, its annotation's
    record adopted as a successor of both) instead of dropping a version its counter claims."""
    actor = "eu-west-1~0AAAAAAA"
    data = {"pk": {"S": "k"}, "a": {"S": "2"}}

    def meta(vv: dict[str, int], *, at: int, of: dict[str, Any]) -> Meta:
        return Meta(
            vv=VersionVector.of(vv),
            actor=actor,
            write_id=str(ulid.new()),
            hlc=hlc.pack(T0 + at),
            digest=digest(of),
            count=2,
            adopted=True,
        )

    # An earlier adoption (of a delete) annotated on the raw item, and the item's own one.
    earlier = meta({actor: 5, "us-east-1~KKKKKKKK": 7}, at=1, of={"pk": {"S": "k"}})
    claims = Version(data, meta({actor: 9, "ap-southeast-2~PPPPPPPP": 3}, at=2, of=data))
    raw = read_item({**data, META_ATTR: encode_meta(earlier)}, settings=SETTINGS)
    decision = decide(raw, claims, settings=SETTINGS, here="adoption")
    assert isinstance(decision, Annotate)
    assert Order.AFTER == compare(decision.meta, earlier)
    assert decision.meta.vv.get("ap-southeast-2~PPPPPPPP") == 3
    assert digest(data) != decision.meta.digest  # the item stays raw: its record is adopted


def test_a_later_raw_writes_adoption_succeeds_the_merge_an_earlier_adoption_carries() -> None:
    """At its own region an adoption meets a merge carried by another adoption of that
    region's stream that it does not hold. If that one is of an earlier record (a lower
    counter), its raw write was made before this one's, which replaced it although its record
    did not show it: written as made after it, whatever the clocks (the chaos run's raw delete,
    seed 20261206). If it is of a later record (an earlier record replayed late, as
    `georep replay` does with a dead letter), the two are merged as any concurrent versions:
    the earlier raw write never re-times its data over a later one."""
    actor, blind = "eu-west-1~0AAAAAAA", blind_actor("eu-west-1")
    data = {"pk": {"S": "k"}, "a": {"S": "earlier"}}
    carried = Meta(
        vv=VersionVector.of({actor: 5, "us-east-1~KKKKKKKK": 7}),
        actor=actor,
        write_id=str(ulid.new()),
        hlc=hlc.pack(T0 + 10_000),  # its base's clock plus one: above the later record's
        digest=digest(data),
        count=2,
        merged=True,
        adopted=True,
    )
    mine = read_item({**data, META_ATTR: encode_meta(carried)}, settings=SETTINGS)
    assert isinstance(mine, Stamped)

    def adoption(counter: int) -> Version:
        keys = {"pk": {"S": "k"}}
        meta = Meta(
            vv=VersionVector.of({blind: counter}),
            actor=blind,
            write_id=str(ulid.new()),
            hlc=hlc.pack(T0),
            digest=digest(keys),
            count=1,
            deleted=True,
            adopted=True,
        )
        return Version(keys, meta)

    later = decide(mine, adoption(9), settings=SETTINGS, here="adoption")
    assert isinstance(later, Write)
    assert later.version.meta.deleted
    assert Order.AFTER == compare(later.version.meta, carried)
    earlier = decide(mine, adoption(3), settings=SETTINGS, here="adoption")
    assert isinstance(earlier, Write)
    assert earlier.conflict is not None  # a plain merge, which the carrier's clock wins
    assert not earlier.version.meta.deleted


# -- successors under field rules ------------------------------------------------------------

FIELD_SETTINGS = Settings(
    regions=REGIONS,
    key_attributes=("pk",),
    resolver=field_rules(tags=union(), score=maximum()),
    horizon_ms=60_000,
)
NAMES = ("val", "tags", "score")


def _effective_stamp(version: Version, name: str) -> tuple[int, str] | None:
    """The stamp an attribute carries, read the way docs/metadata.md defines it: its own
    entry in ``_georep.f``, else (for an attribute it holds) its version's clock and origin."""
    own = dict(version.meta.fields or ())
    if name in own:
        return own[name]
    if name in version.data:
        return (version.meta.hlc, version.meta.origin)
    return None


@st.composite
def field_versions(draw: st.DrawFn, *, region: str, actor: str) -> Version:
    names = draw(st.sets(st.sampled_from(NAMES)))
    data: dict[str, Any] = {"pk": {"S": "k"}}
    for name in names:
        if name == "tags":
            data[name] = {"SS": sorted(draw(st.sets(st.sampled_from("abc"), min_size=1)))}
        elif name == "score":
            data[name] = {"N": str(draw(st.integers(0, 9)))}
        else:
            data[name] = {"S": draw(st.sampled_from(["x", "y"]))}
    hlc_ = draw(st.integers(1, 2**40))
    stamped = draw(st.sets(st.sampled_from(NAMES)))
    fields = draw(
        st.none()
        | st.just(tuple(sorted((n, (draw(st.integers(1, hlc_ + 1)), region)) for n in stamped)))
    )
    meta = Meta(
        vv=VersionVector.of({actor: hlc_}),
        actor=actor,
        write_id=str(ulid.from_int(draw(st.integers(0, 2**128 - 1)))),
        hlc=hlc_,
        digest=digest(data),
        count=1,
        deleted=draw(st.booleans()),
        adopted=draw(st.booleans()),
        fields=fields,
    )
    return Version(data=data, meta=meta)


@given(
    field_versions(region="eu-west-1", actor="eu-west-1~A1"),
    field_versions(region="us-east-1", actor="us-east-1~B2"),
)
def test_a_join_of_two_bases_keeps_each_attributes_later_stamp(a: Version, b: Version) -> None:
    """A version built on a join succeeds both sides, so its stamps inflate both (the
    field-rules machine found a join that kept one side's stamps: one vector, two versions)."""
    joined = join_meta(a.meta, b.meta)
    assert joined is not None
    own = dict(joined.fields or ())
    for side in (a, b):
        for name, stamp_ in side.meta.fields or ():
            assert own[name] >= stamp_


@given(
    field_versions(region="eu-west-1", actor="eu-west-1~AD0PT10N"),
    field_versions(region="eu-west-1", actor="eu-west-1~ST4MPED0"),
)
def test_a_successor_under_field_rules_inflates_both_versions_it_succeeds(
    adopted: Version, replaced: Version
) -> None:
    """What replaced a raw write before its adoption arrived, and the adoption, are both
    succeeded by `succeeding`: every attribute's stamp in the successor is at least each
    input's (else regions that merge the two themselves keep higher stamps under the same
    vector), and what replaced the raw write wins every last-writer attribute (it was written
    after it: test_a_stamped_write_over_a_raw_write_is_the_later_in_one_millisecond), or, a
    deletion, wins as one."""
    successor = succeeding(adopted, replaced, settings=FIELD_SETTINGS)
    assert compare(successor.meta, adopted.meta) is Order.AFTER
    assert compare(successor.meta, replaced.meta) is Order.AFTER
    for name in NAMES:
        mine = _effective_stamp(successor, name)
        for side in (adopted, replaced):
            theirs = _effective_stamp(side, name)
            if theirs is not None:
                assert mine is not None and mine >= theirs, (name, side.meta, successor.meta)
    if replaced.meta.deleted:
        # A deletion made after the raw write wins as a deletion; the data it keeps keeps its
        # own stamps (it wrote none of it), so the adoption's later values stay merged in.
        assert successor.meta.deleted
    elif "val" in replaced.data:
        assert successor.data["val"] == replaced.data["val"]
    else:
        assert "val" not in successor.data


@given(
    field_versions(region="eu-west-1", actor="eu-west-1~C0PY1NG0"),
    field_versions(region="us-east-1", actor="us-east-1~1NC0M1NG"),
    st.sampled_from([{"S": "raw"}, {"S": "x"}]),
)
def test_a_raw_item_kept_beside_a_version_keeps_its_contexts_stamps(
    context: Version, incoming: Version, value: dict[str, str]
) -> None:
    """`beside_raw`'s context is an inflation of the raw item's own context too: a raw item
    kept beside two versions in turn held the second one's stamps only, and the successor its
    adoption wrote held an attribute stamped below a version it succeeds (the field-rules
    machine: two regions, one vector, two values; issue 16)."""
    raw_data = {"pk": {"S": "k"}, "val": value}
    raw = Raw(data=raw_data, copied=replace(context.meta, deleted=False), meta_attr=None)
    beside = beside_raw(
        replace(incoming, meta=replace(incoming.meta, deleted=False)), raw, settings=FIELD_SETTINGS
    )
    kept = dict(beside.meta.fields or ())
    for name, stamp_ in context.meta.fields or ():
        assert name in kept and kept[name] >= stamp_, (name, stamp_, kept)


@given(
    field_versions(region="eu-west-1", actor="eu-west-1~AD0PT10N"),
    field_versions(region="eu-west-1", actor="eu-west-1~ST4MPED0"),
)
def test_a_deletion_written_later_keeps_the_stamps_of_the_data_it_keeps(
    earlier: Version, deletion: Version
) -> None:
    """A deletion made after a version wins as a deletion (its clock above the other's) but
    wrote none of the data it keeps: those attributes keep their own stamps. Raised, a
    deleted value came back over the write that had replaced it (issue 16, the field-rules
    machine: a replayed adoption's successor tombstone, then the raw delete's adoption's
    successor of it, re-timed the deleted value above the SDK write that replaced it)."""
    deletion = replace(deletion, meta=replace(deletion.meta, deleted=True))
    later = written_later(deletion, earlier, settings=FIELD_SETTINGS)
    assert later.meta.hlc > earlier.meta.hlc
    for name in NAMES:
        assert _effective_stamp(later, name) == _effective_stamp(deletion, name)


# -- over-raw actors (merge rules) ------------------------------------------------------------


@given(
    write_id=st.integers(0, 2**128 - 1).map(lambda n: str(ulid.from_int(n))),
    over=st.sampled_from(["absent", "raw", "raw-copied", "stamped"]),
    delete=st.booleans(),
)
def test_under_merge_rules_only_a_write_over_a_raw_item_starts_an_over_raw_actor(
    write_id: str, over: str, delete: bool
) -> None:
    """The mark an adoption reads in its own region (`decide`): a stamped write over a raw
    item not adopted yet starts an over-raw actor, and no other fresh actor is one."""
    data = {"pk": {"S": "k"}, "val": {"S": "x"}}
    earlier = stamp(
        Absent(),
        data,
        region="eu-west-1",
        now_hlc=hlc.pack(T0),
        write_id=write_id,
        settings=FIELD_SETTINGS,
    )
    assert earlier is not None and not is_over_raw_actor(earlier.meta.actor)
    current = {
        "absent": Absent(),
        "raw": Raw(data=data, copied=None, meta_attr=None),
        "raw-copied": Raw(
            data={**data, "val": {"S": "y"}},
            copied=earlier.meta,
            meta_attr=encode_meta(earlier.meta),
        ),
        "stamped": Stamped(version=earlier, meta_attr=encode_meta(earlier.meta)),
    }[over]
    written = stamp(
        current,
        None if delete else {**data, "val": {"S": "z"}},
        region="eu-west-1",
        now_hlc=hlc.pack(T0 + 1),
        write_id=str(ulid.from_int(int(ulid.parse(write_id).int) ^ 1)),
        settings=FIELD_SETTINGS,
    )
    if written is None:  # a delete of nothing
        return
    assert over.startswith("raw") == is_over_raw_actor(written.meta.actor)
    found = adopt_found(
        Raw(data=data, copied=None, meta_attr=None),
        base=None,
        region="eu-west-1",
        now_hlc=hlc.pack(T0 + 2),
        write_id=write_id,
        settings=FIELD_SETTINGS,
    )
    assert not is_over_raw_actor(found.meta.actor)


@given(
    write_id=st.integers(0, 2**128 - 1).map(lambda n: str(ulid.from_int(n))),
    adoption=st.booleans(),
    family=st.sampled_from(["unmarked", "plain", "over-raw"]),
)
def test_a_fresh_actor_is_never_both_an_adoption_actor_and_an_over_raw_actor(
    write_id: str, adoption: bool, family: Any
) -> None:
    """The blind actor's rules read adoption actors (tags starting with ``0``) and `decide`'s
    over-raw rule reads over-raw actors (``R``, marked under merge rules only): a fresh actor is
    of the kind asked for and never of the other, and never takes the reserved tags
    (docs/design.md, "The blind actor and the over-raw actor together")."""
    actor = fresh_actor("eu-west-1", write_id, adoption=adoption, family=family)
    assert adoption == is_adoption_actor(actor)
    if adoption or family != "unmarked":  # an unmarked tag may start with R: no mark then
        assert (family == "over-raw" and not adoption) == is_over_raw_actor(actor)
    assert actor not in (adoption_actor("eu-west-1"), blind_actor("eu-west-1"))


def test_an_adoption_meeting_a_merge_of_a_later_write_of_its_region_is_succeeded_by_it() -> None:
    """Under merge rules, a raw write's adoption that finds in its own region a merge holding
    a write made there over the raw item (an over-raw dot it does not know) writes a successor
    that keeps the merge's last-writer values, though the adoption is the later by the clock
    (its base was 900 ms ahead); elsewhere it merges, and the successor is forwarded. A version
    that is the raw write itself adopted again (`adopt_found`, by a repair) is merged with it
    in its own region too: it was not written after it."""
    ahead = stamp(
        Absent(),
        {"pk": {"S": "k"}, "val": {"S": "ahead"}},
        region="us-east-1",
        now_hlc=hlc.pack(T0 + 900),
        write_id=str(ulid.from_int(1)),
        settings=FIELD_SETTINGS,
    )
    assert ahead is not None
    raw = {"pk": {"S": "k"}, "val": {"S": "raw"}, "tags": {"SS": ["raw"]}}
    record = _record("MODIFY", old=encode_item(ahead, horizon_ms=1), new=raw, seq="9" * 20)
    adoption = translate(parse_record(record), region="eu-west-1", settings=FIELD_SETTINGS)
    assert isinstance(adoption, Adopt)
    later = stamp(
        Raw(data=raw, copied=None, meta_attr=None),
        {"pk": {"S": "k"}, "val": {"S": "later"}, "tags": {"SS": ["raw", "later"]}},
        region="eu-west-1",
        now_hlc=hlc.pack(T0),
        write_id=str(ulid.from_int(2)),
        settings=FIELD_SETTINGS,
    )
    other = stamp(
        Absent(),
        {"pk": {"S": "k"}, "val": {"S": "other"}, "tags": {"SS": ["other"]}},
        region="ap-southeast-2",
        now_hlc=hlc.pack(T0 - 1),
        write_id=str(ulid.from_int(3)),
        settings=FIELD_SETTINGS,
    )
    assert later is not None and other is not None
    held = merge(later, other, settings=FIELD_SETTINGS)
    assert {"S": "later"} == held.data["val"]
    current = Stamped(version=held, meta_attr=encode_meta(held.meta))
    here = decide(current, adoption.version, settings=FIELD_SETTINGS, here="adoption")
    assert isinstance(here, Write)
    assert {"S": "later"} == here.version.data["val"]
    assert {"raw", "later", "other"} == set(here.version.data["tags"]["SS"])
    assert not (here.version.meta.merged or here.version.meta.adopted)  # forwarded
    for predecessor in (held, adoption.version):
        assert Order.AFTER == compare(here.version.meta, predecessor.meta)
    elsewhere = decide(current, adoption.version, settings=FIELD_SETTINGS)
    assert isinstance(elsewhere, Write)
    assert {"S": "raw"} == elsewhere.version.data["val"]  # what the successor then replaces
    twin = adopt_found(
        Raw(data=raw, copied=None, meta_attr=None),
        base=None,
        region="eu-west-1",
        now_hlc=hlc.pack(T0 + 5_000),
        write_id=str(ulid.from_int(4)),
        settings=FIELD_SETTINGS,
    )
    repaired = Stamped(version=twin, meta_attr=encode_meta(twin.meta))
    assert decide(repaired, adoption.version, settings=FIELD_SETTINGS) == decide(
        repaired, adoption.version, settings=FIELD_SETTINGS, here="adoption"
    )
