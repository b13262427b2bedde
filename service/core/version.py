"""Version vectors, item metadata and its DynamoDB wire format.

Every replicated item carries one reserved map attribute, ``_georep`` (see docs/metadata.md for
the exact format and its size). Metadata is parsed and validated every time it is read:
anything malformed raises :class:`service.errors.MetadataError`, never a crash and never a
silent overwrite.
"""

from __future__ import annotations

import enum
import hashlib
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.core.values import AttributeValue, Item
from service.errors import MetadataError

META_ATTR = "_georep"
TTL_ATTR = "_georep_ttl"
SCHEMA = 1
RESERVED = frozenset({META_ATTR, TTL_ATTR})
_SCHEMA_AV = {"N": str(SCHEMA)}

_ULID = re.compile(r"^[0-9A-HJKMNP-TV-Z]{26}$")
_DIGEST = re.compile(r"^[A-Za-z0-9_-]{22}$")
_KEYS = frozenset("svowthndmafrx")
_OPTIONAL = frozenset({"f", "r", "x"})


class Order(enum.Enum):
    """How version ``a`` relates to version ``b``."""

    EQUAL = "equal"
    AFTER = "after"  # a dominates b: b happened before a
    BEFORE = "before"  # b dominates a
    CONCURRENT = "concurrent"


_TAG = re.compile(r"^[0-9A-HJKMNP-TV-Z]{8}$")


def actor_region(actor: str) -> str:
    """The region of an actor id: ``"eu-west-1"`` or ``"eu-west-1~7ZQ3K2MA"``."""
    return actor.split("~", 1)[0]


_CROCKFORD = "0123456789ABCDEFGHJKMNPQRSTVWXYZ"
ADOPTION_TAG = "00000000"


def adoption_actor(region: str) -> str:
    """The one actor every raw write adopted in ``region`` bumped before issue 16
    (``eu-west-1~00000000``); items adopted then still carry it, and adoptions continue it
    from a base that holds it, like any adoption actor (`is_adoption_actor`)."""
    return f"{region}~{ADOPTION_TAG}"


BLIND_TAG = "00000001"


def blind_actor(region: str) -> str:
    """The adoption actor of ``region``'s *blind* raw writes (``eu-west-1~00000001``): those
    that replaced nothing or a raw item and whose record shows no metadata but this actor's
    (none at all, or the annotation of a blind adoption), counted by sequence number.

    Every version it numbers has the vector ``{blind_actor: sequence}`` and nothing else, so a
    counter of it claims only such versions, and holds the whole vector of each: a blind raw
    write succeeds every earlier blind raw write of its region to the item (it physically
    replaced them) and claims nothing else (docs/design.md, "Raw-write adoption"). Not
    ``<region>~00000000``: items adopted before issue 16 carry that one over longer vectors.
    """
    return f"{region}~{BLIND_TAG}"


def is_adoption_actor(actor: str) -> bool:
    """Whether ``actor`` numbers adopted raw writes: its tag starts with ``0``.

    Adoption actors count by stream sequence numbers and stamped actors by clocks, so neither
    kind ever continues the other's (docs/design.md, "Raw-write adoption").
    """
    _, tilde, tag = actor.partition("~")
    return bool(tilde) and tag.startswith("0")


OVER_RAW_MARK = "R"
"""Under merge rules, the first character of the tag of an actor started by a write over a
raw item not adopted yet (an *over-raw actor*), and of no other actor's tag."""

Family = Literal["unmarked", "plain", "over-raw"]
"""Which tags a fresh stamped actor may take: any (``unmarked``: last-writer-wins, version
counters), or, under merge rules, one marked as over-raw or one that is not
(`is_over_raw_actor`). Adoption actors (tags starting with ``0``) are never over-raw."""


def fresh_actor(
    region: str,
    write_id: str,
    *,
    taken: Iterable[str] = (),
    adoption: bool = False,
    family: Family = "unmarked",
) -> str:
    """A new actor for a write that cannot see the item's history (docs/design.md).

    The tag is 40 bits of a hash of the write id (not a slice of it: adopted writes' ids are
    derived from sequence numbers, whose low bits repeat across streams), and never one the
    base already has. ``adoption``: an adoption actor, whose tag starts with ``0``; no other
    tag does. ``family="over-raw"`` (stamped writes only): its first character is
    `OVER_RAW_MARK` (35 bits of hash remain); ``"plain"``: it is not (docs/design.md, "Raw
    writes under merge rules").
    """
    used = set(taken)
    for salt in range(1_000):
        raw = hashlib.blake2b(f"{write_id}/{salt}".encode(), digest_size=5).digest()
        number = int.from_bytes(raw, "big")
        tag = "".join(_CROCKFORD[(number >> (5 * i)) & 31] for i in reversed(range(8)))
        if adoption:
            tag = "0" + tag[1:]
        elif family == "over-raw":
            tag = OVER_RAW_MARK + tag[1:]
        elif family == "plain" and tag.startswith(OVER_RAW_MARK):
            continue
        actor = f"{region}~{tag}"
        reserved = tag in (ADOPTION_TAG, BLIND_TAG)
        if actor not in used and not reserved and is_adoption_actor(actor) == adoption:
            return actor
    raise AssertionError("no free actor tag")  # 1,000 collisions of a 40-bit hash


def is_over_raw_actor(actor: str) -> bool:
    """Whether ``actor`` was started by a write over a raw item not adopted yet (meaningful
    under merge rules only, where every other fresh actor is ``plain``)."""
    _, tilde, tag = actor.partition("~")
    return bool(tilde) and tag.startswith(OVER_RAW_MARK)


@dataclass(frozen=True, slots=True)
class VersionVector:
    """Actor -> counter, with absent actors meaning zero. Immutable and hashable.

    An actor is a region, tagged when a write started a fresh history (``eu-west-1~7ZQ3K2MA``):
    a write that cannot see the item's history must not claim dots it never saw.

    >>> VersionVector.of({"eu": 2}).join(VersionVector.of({"us": 1})).as_dict()
    {'eu': 2, 'us': 1}
    """

    entries: tuple[tuple[str, int], ...] = ()

    @classmethod
    def of(cls, counters: Mapping[str, int]) -> VersionVector:
        return cls(tuple(sorted((r, c) for r, c in counters.items() if c)))

    def as_dict(self) -> dict[str, int]:
        return dict(self.entries)

    def get(self, region: str) -> int:
        for r, c in self.entries:
            if r == region:
                return c
        return 0

    def bump(self, region: str, counter: int) -> VersionVector:
        """The vector with ``region`` set to ``counter`` (which must grow)."""
        counters = self.as_dict()
        counters[region] = counter
        return VersionVector.of(counters)

    def join(self, other: VersionVector) -> VersionVector:
        """Pointwise maximum: the least vector that has seen both."""
        counters = self.as_dict()
        for r, c in other.entries:
            counters[r] = max(c, counters.get(r, 0))
        return VersionVector.of(counters)

    def total(self) -> int:
        return sum(c for _, c in self.entries)

    def compare(self, other: VersionVector) -> Order:
        mine, theirs = self.as_dict(), other.as_dict()
        ge = all(mine.get(r, 0) >= c for r, c in theirs.items())
        le = all(theirs.get(r, 0) >= c for r, c in mine.items())
        if ge and le:
            return Order.EQUAL
        if ge:
            return Order.AFTER
        if le:
            return Order.BEFORE
        return Order.CONCURRENT


FieldStamp = tuple[int, str]
"""Provenance of one attribute: (HLC timestamp, origin region) of the write that last set it."""

RedactedStamp = tuple[int, str, str]
"""The redacted attributes' own register (docs/design.md, "Residency filters and redaction"):
(HLC, write id) of the write in a holding region that set them, and the digest of their values
as it set them."""


@dataclass(frozen=True, slots=True)
class Meta:
    """Everything georep knows about one version of an item."""

    vv: VersionVector
    actor: str
    write_id: str
    hlc: int
    digest: str
    count: int
    deleted: bool = False
    merged: bool = False
    adopted: bool = False
    fields: tuple[tuple[str, FieldStamp], ...] | None = None
    # Residency (service/core/residency.py): the redacted attributes' register, in regions
    # that hold them; and a marker that the item's data is withheld from this region by a
    # residency filter (the keys and this metadata only, read as deleted, never collected).
    redacted: RedactedStamp | None = None
    withheld: bool = False

    @property
    def origin(self) -> str:
        """The region that wrote this version."""
        return actor_region(self.actor)

    @property
    def lww_key(self) -> tuple[int, str, str]:
        """Total order for last-writer-wins: (HLC, writer, write id). Never ties."""
        return (self.hlc, self.actor, self.write_id)

    def field_map(self) -> dict[str, FieldStamp]:
        return dict(self.fields or ())


@dataclass(frozen=True, slots=True)
class Version:
    """One version of an item: its data (keys included, metadata excluded) and metadata."""

    data: Mapping[str, AttributeValue]
    meta: Meta


def compare(a: Meta, b: Meta) -> Order:
    """Causal order of two versions of one item.

    Equal vectors with different identities are concurrent, so the resolver, not the vector,
    settles them (defensive: unique counters make it unreachable in the model).
    """
    order = a.vv.compare(b.vv)
    if order is Order.EQUAL and a != b:
        return Order.CONCURRENT
    return order


# -- wire format ---------------------------------------------------------------------------


def _n(value: int) -> dict[str, str]:
    return {"N": str(value)}


def encode_meta(meta: Meta) -> dict[str, Any]:
    """The ``_georep`` attribute value for ``meta`` (a DynamoDB map)."""
    doc: dict[str, Any] = {
        "s": _n(SCHEMA),
        "v": {"M": {r: _n(c) for r, c in meta.vv.entries}},
        "o": {"S": meta.actor},
        "w": {"S": meta.write_id},
        "t": _n(meta.hlc),
        "h": {"S": meta.digest},
        "n": _n(meta.count),
        "d": {"BOOL": meta.deleted},
        "m": {"BOOL": meta.merged},
        "a": {"BOOL": meta.adopted},
    }
    if meta.fields is not None:
        doc["f"] = {"M": {name: {"L": [_n(ts), {"S": o}]} for name, (ts, o) in meta.fields}}
    if meta.redacted is not None:
        at, write_id, values = meta.redacted
        doc["r"] = {"L": [_n(at), {"S": write_id}, {"S": values}]}
    if meta.withheld:
        doc["x"] = {"BOOL": True}
    return {"M": doc}


def _get(doc: Mapping[str, Any], key: str, kind: str) -> Any:
    value = doc.get(key)
    # NOTE: a dict check, not Mapping: isinstance against an ABC costs a third of decoding.
    if type(value) is not dict or len(value) != 1 or kind not in value:
        raise MetadataError(
            f"metadata field {key!r} must be of DynamoDB type {kind}, got {value!r}"
        )
    return value[kind]


def _int(doc: Mapping[str, Any], key: str, *, minimum: int) -> int:
    text = _get(doc, key, "N")
    if type(text) is not str or not text.lstrip("-").isdigit() or not text.isascii():
        raise MetadataError(f"metadata field {key!r} must be an integer, got {text!r}")
    value = int(text)
    if value < minimum:
        raise MetadataError(f"metadata field {key!r} must be >= {minimum}, got {value}")
    return value


def _region(name: object, regions: frozenset[str], what: str) -> str:
    if name not in regions or type(name) is not str:
        raise MetadataError(f"{what} names unknown region {name!r} (known: {sorted(regions)})")
    return name


def _actor(actor: object, regions: frozenset[str]) -> str:
    if not isinstance(actor, str):
        raise MetadataError(f"actor must be a string, got {actor!r}")
    region, tilde, tag = actor.partition("~")
    _region(region, regions, "actor")
    if tilde and not _TAG.match(tag):
        raise MetadataError(f"actor {actor!r} has a malformed tag")
    return actor


def _ulid(text: object, what: str) -> str:
    if not isinstance(text, str) or not _ULID.match(text):
        raise MetadataError(f"{what} must be a ULID, got {text!r}")
    return text


def decode_meta(value: AttributeValue, *, regions: frozenset[str]) -> Meta:
    """Parse and validate a ``_georep`` attribute value.

    Raises MetadataError naming the field for any malformed, tampered or unknown content.
    A fast path checks everything with plain indexing; anything it rejects is decoded again
    by the checked path, which names the problem.
    """
    try:
        return _decode_fast(value, regions)
    except (KeyError, TypeError, ValueError, AttributeError):
        return _decode_checked(value, regions)


def _n_fast(av: Any, minimum: int) -> int:
    text = av["N"]
    if len(av) != 1 or type(text) is not str or not text.isdigit() or not text.isascii():
        raise ValueError(text)
    number = int(text)
    if number < minimum:
        raise ValueError(text)
    return number


def _s_fast(av: Any) -> str:
    text = av["S"]
    if len(av) != 1 or type(text) is not str:
        raise ValueError(text)
    return text


def _b_fast(av: Any) -> bool:
    flag = av["BOOL"]
    if len(av) != 1 or type(flag) is not bool:
        raise ValueError(flag)
    return flag


def _known_actor(actor: str, regions: frozenset[str]) -> str:
    if actor in regions:
        return actor
    region, tilde, tag = actor.partition("~")
    if not tilde or region not in regions or not _TAG.match(tag):
        raise ValueError(actor)
    return actor


def _decode_fast(value: Any, regions: frozenset[str]) -> Meta:
    doc = value["M"]
    if (
        len(value) != 1
        or type(doc) is not dict
        or not doc.keys() <= _KEYS
        or "f" in doc
        or "r" in doc
        or "x" in doc
    ):
        raise ValueError("shape, or optional fields: the checked path decodes those")
    if doc["s"] != _SCHEMA_AV:
        raise ValueError("schema")
    vv_av = doc["v"]
    raw_vv = vv_av["M"]
    if len(vv_av) != 1 or type(raw_vv) is not dict or not raw_vv:
        raise ValueError("vv")
    counters = []
    for a, c in raw_vv.items():
        if a not in regions:
            _known_actor(a, regions)
        counters.append((a, _n_fast(c, 1)))
    actor = _s_fast(doc["o"])
    h, w = _s_fast(doc["h"]), _s_fast(doc["w"])
    if actor not in raw_vv or not _DIGEST.match(h) or not _ULID.match(w):
        raise ValueError("actor or ids")
    counters.sort()
    return Meta(
        vv=VersionVector(tuple(counters)),
        actor=actor,
        write_id=w,
        hlc=_n_fast(doc["t"], 0),
        digest=h,
        count=_n_fast(doc["n"], 1),
        deleted=_b_fast(doc["d"]),
        merged=_b_fast(doc["m"]),
        adopted=_b_fast(doc["a"]),
    )


def _decode_checked(value: AttributeValue, regions: frozenset[str]) -> Meta:
    if type(value) is not dict or len(value) != 1 or type(value.get("M")) is not dict:
        raise MetadataError(f"{META_ATTR} must be a DynamoDB map, got {value!r}")
    doc = value["M"]
    unknown = set(doc) - _KEYS
    if unknown:
        raise MetadataError(f"{META_ATTR} has unknown fields {sorted(unknown)}")
    missing = _KEYS - _OPTIONAL - set(doc)
    if missing:
        raise MetadataError(f"{META_ATTR} is missing fields {sorted(missing)}")
    schema = _int(doc, "s", minimum=1)
    if schema != SCHEMA:
        raise MetadataError(f"{META_ATTR} has schema {schema}; this georep reads schema {SCHEMA}")
    raw_vv = _get(doc, "v", "M")
    if not isinstance(raw_vv, Mapping) or not raw_vv:
        raise MetadataError("metadata field 'v' (version vector) must be a non-empty map")
    counters = {_actor(a, regions): _int(raw_vv, a, minimum=1) for a in raw_vv}
    actor = _actor(_get(doc, "o", "S"), regions)
    if actor not in counters:
        raise MetadataError(f"writer {actor!r} has no entry in the version vector")
    h = _get(doc, "h", "S")
    if not isinstance(h, str) or not _DIGEST.match(h):
        raise MetadataError(f"metadata field 'h' must be a 22-character digest, got {h!r}")
    flags = {k: _get(doc, k, "BOOL") for k in "dma"}
    if not all(isinstance(f, bool) for f in flags.values()):
        raise MetadataError(f"metadata flags must be booleans, got {flags!r}")
    fields: tuple[tuple[str, FieldStamp], ...] | None = None
    if "f" in doc:
        raw_f = _get(doc, "f", "M")
        stamps = []
        for name, entry in sorted(raw_f.items()):
            pair = _get({"x": entry}, "x", "L")
            if not isinstance(pair, list) or len(pair) != 2:
                raise MetadataError(f"field stamp for {name!r} must be [N, S], got {pair!r}")
            ts = _int({"t": pair[0]}, "t", minimum=0)
            o = _region(_get({"o": pair[1]}, "o", "S"), regions, f"field stamp of {name!r}")
            stamps.append((name, (ts, o)))
        fields = tuple(stamps)
    redacted: RedactedStamp | None = None
    if "r" in doc:
        triple = _get(doc, "r", "L")
        if not isinstance(triple, list) or len(triple) != 3:
            raise MetadataError(f"metadata field 'r' must be [N, S, S], got {triple!r}")
        values = _get({"h": triple[2]}, "h", "S")
        if not isinstance(values, str) or not _DIGEST.match(values):
            raise MetadataError(f"metadata field 'r' holds a malformed digest {values!r}")
        redacted = (
            _int({"t": triple[0]}, "t", minimum=0),
            _ulid(_get({"w": triple[1]}, "w", "S"), "write id of 'r'"),
            values,
        )
    withheld = False
    if "x" in doc:
        withheld = _get(doc, "x", "BOOL")
        if withheld is not True:
            raise MetadataError(f"metadata field 'x' is written only as true, got {withheld!r}")
    return Meta(
        vv=VersionVector.of(counters),
        actor=actor,
        write_id=_ulid(_get(doc, "w", "S"), "write id"),
        hlc=_int(doc, "t", minimum=0),
        digest=h,
        count=_int(doc, "n", minimum=1),
        deleted=flags["d"],
        merged=flags["m"],
        adopted=flags["a"],
        fields=fields,
        redacted=redacted,
        withheld=withheld,
    )


def data_of(item: Item) -> dict[str, AttributeValue]:
    """An item's data: every attribute but georep's reserved ones."""
    return {k: v for k, v in item.items() if k not in RESERVED}


def encode_item(version: Version, *, horizon_ms: int) -> dict[str, AttributeValue]:
    """The full DynamoDB item for a version; tombstones get the TTL attribute.

    The TTL (epoch seconds) is a function of the version alone, so every region writes the
    same bytes and every region's TTL collects the tombstone at the same horizon.
    """
    item: dict[str, AttributeValue] = dict(version.data)
    item[META_ATTR] = encode_meta(version.meta)
    # NOTE: a withheld marker is never collected: it holds the item's place in the order in a
    # region a residency filter keeps the data out of (docs/design.md).
    if version.meta.deleted and not version.meta.withheld:
        item[TTL_ATTR] = _n(expiry_ms(version.meta, horizon_ms=horizon_ms) // 1000)
    return item


def expiry_ms(meta: Meta, *, horizon_ms: int) -> int:
    """When a tombstone may be collected (wall-clock ms)."""
    return (meta.hlc >> 16) + horizon_ms
