"""The chaos run's own accounting: which acknowledged writes a final state lost.

Pure functions over what the chaos workload recorded (every write, with a value no other write
used, when it started and when it was acknowledged, and what it read) and over what plain reads
of every region returned at the end. Nothing here asks georep's code how versions compare: the
order below is the one the chaos run can see from the outside, and claims an order between two
writes only where georep promises one (docs/design.md, "Raw-write adoption" and "Still not
claimed"):

* **Same region, one after the other, stamped.** ``a`` was acknowledged in region R before
  ``b`` started in R, both written through georep's SDK: ``b`` reads what R holds, which
  succeeds ``a``. Not claimed: a raw write followed by a stamped write, which is concurrent
  with the raw write's adoption when it was not adopted yet.
* **Raw, over what it replaced.** A raw write ``b`` follows the write whose value the item it
  replaced held (as its own request returned it, ReturnValues ALL_OLD), when georep had
  stamped or adopted that item (its digest is its data's) and it was live: its adoption
  succeeds its old image. Nothing else, and no earlier write of its region by time alone. A
  raw write over a raw item not adopted yet, over nothing (a raw delete not adopted yet may
  have left the key empty) or over a version another region's consumer wrote there in the
  meantime (which rolls an unadopted raw write back) is concurrent with those earlier raw
  writes' adoptions: docs/design.md, "Still not claimed" ("a replicated version written over
  an unadopted raw write rolls its region back ... two raw writes waiting there ... are no
  longer ordered"). This is what the state machines' ground truth claims
  (tests/property/truth.py: a write follows what the item it replaced shows, and nothing over
  an unadopted one). Sessions 34 and 35 found the chaos run in ``make test`` under load
  (seed 20261206) failing on a raw delete lost to the raw put before it, first through an
  unadopted item it replaced, then through another region's version written over the raw put
  before the delete replaced it.
* **Read, then written.** ``b``'s writer read ``a``'s value just before writing. Claimed when
  ``a`` reached ``b``'s region through replication (then it was a stamped or adopted version
  there), or under the same-region rule above.

The order is the transitive closure of those edges. Jepsen's vocabulary: a write is **lost** when
the final state does not hold it although it causally precedes nothing that is there: the final
value's write happened before it (a present final), or every delete of the key happened before
it (an absent final). A write concurrent with the final one lost a conflict under the resolver,
which is allowed. A final value that no write wrote is **unexpected**.

**Under merge rules** no write is "the final one": values are combined. There every put adds
an element of its own (its unique value) to a set attribute, writing the set it read plus that
element (georep's own workload never drops one: a write that does is no inflation, and regions
may then diverge by design, tests/unit/test_merge_contract.py). The claim, per region: every
element an acknowledged write added is in the final item (a tombstone's kept data counts:
under merge rules a delete hides an item and keeps what it deleted, docs/design.md "Deletes
under merge rules"), unless a write that read it wrote a set without it. Such a write follows
the element's write (it read the element, which reached its region through georep or was
written there), so this is "unless a causally later write removed it"; a write whose outcome is
unknown may have removed what it dropped, so it excuses the element too. Not claimed: that a
concurrent write still holding a dropped element brings it back (an observed-remove promise
georep does not make). A missing element is reported as a lost write (key, element, the
adding write's region).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

from service.core.values import digest


class Kind(StrEnum):
    STAMPED_PUT = "stamped_put"
    STAMPED_RMW = "stamped_rmw"
    STAMPED_DELETE = "stamped_delete"
    RAW_PUT = "raw_put"
    RAW_RMW = "raw_rmw"
    RAW_DELETE = "raw_delete"

    @property
    def stamped(self) -> bool:
        return self.value.startswith("stamped")

    @property
    def deletes(self) -> bool:
        return self.value.endswith("delete")


@dataclass(frozen=True)
class Write:
    """One write of the workload. ``value`` is unique to it (deletes have one too, for the
    report). ``read``: the value its writer read just before (None: absent, or not read);
    ``acked``: when it was acknowledged, None if its outcome is unknown (an error)."""

    id: int
    key: str
    value: str
    region: str
    kind: Kind
    started: float
    acked: float | None
    read: str | None = None
    # A raw write: the value of the item it replaced (as its own request returned it) when
    # georep had stamped or adopted that item and it was live. None: it replaced nothing, a
    # tombstone, or a raw item not adopted yet (module docstring: what a raw write follows).
    replaced: str | None = None
    # Under merge rules (module docstring): the set attribute's elements as its writer read
    # them, and the set it wrote (None: the write does not write the set, e.g. a delete).
    set_read: frozenset[str] = frozenset()
    set_written: frozenset[str] | None = None

    @property
    def added(self) -> str | None:
        """The element this write added to the set: its own value, if it wrote it."""
        written = self.set_written
        return self.value if written is not None and self.value in written else None

    @property
    def dropped(self) -> frozenset[str]:
        """The elements this write read and did not write back (removed, if it happened)."""
        if self.set_written is None:
            return frozenset()
        return self.set_read - self.set_written


@dataclass(frozen=True)
class Lost:
    key: str
    value: str
    region: str
    kind: Kind
    because: str


@dataclass(frozen=True)
class Verdict:
    """What the accounting found. ``divergent``: keys whose items differ between regions."""

    divergent: tuple[str, ...]
    lost: tuple[Lost, ...]
    unexpected: tuple[tuple[str, str], ...]
    judged_keys: int
    final_present: int
    final_absent: int
    # Under merge rules: the elements checked (one per acknowledged put) and how many of them
    # a later write dropped on purpose (excused).
    elements_judged: int = 0
    elements_dropped: int = 0

    @property
    def ok(self) -> bool:
        return not (self.divergent or self.lost or self.unexpected)


# The final state of a key as the chaos run reads it: the value attribute, or None (absent).
Final = str | None


def _precedes(a: Write, b: Write) -> bool:
    """The direct edge a -> b that the chaos run can see (module docstring)."""
    if a.key != b.key or a.id == b.id:
        return False
    if not b.kind.stamped:
        # A raw write follows what the item it replaced holds, and only that (module
        # docstring): its adoption succeeds its old image, whatever else its region saw.
        if b.replaced is not None and b.replaced == a.value and not a.kind.deletes:
            return True
        return (
            b.read is not None
            and b.read == a.value
            and not a.kind.deletes
            and (a.region != b.region)
        )
    # NOTE: raw then stamped in one region is not ordered while the raw write is unadopted
    # (docs/design.md, "Still not claimed").
    same_region = a.region == b.region and a.kind.stamped
    if same_region and a.acked is not None and a.acked < b.started:
        return True
    if b.read is not None and b.read == a.value and not a.kind.deletes:
        return a.region != b.region or same_region
    return False


@dataclass
class _Key:
    writes: list[Write] = field(default_factory=list)

    def after(self, start: Write) -> set[int]:
        """Every write the closure puts after ``start`` (ids)."""
        seen: set[int] = set()
        frontier = [start]
        while frontier:
            a = frontier.pop()
            for b in self.writes:
                if b.id not in seen and _precedes(a, b):
                    seen.add(b.id)
                    frontier.append(b)
        return seen


def judge(
    writes: Iterable[Write],
    *,
    regions: Mapping[str, Mapping[str, Any]],
    final: Mapping[str, Final],
    judge_lost: bool = True,
    set_attribute: str | None = None,
) -> Verdict:
    """The verdict over ``writes``, given each region's items (key -> the item as read, for
    divergence: compared whole, so byte for byte) and the final state of each key (what the
    first region holds, as :func:`final_value` reads it). ``judge_lost`` False: no write's
    value is judged lost (merge rules combine values, so no single write is final); then
    ``set_attribute`` names the set whose elements are judged instead (module docstring)."""
    writes = list(writes)
    keys: dict[str, _Key] = defaultdict(_Key)
    for w in writes:
        keys[w.key].writes.append(w)
    all_keys = sorted(set().union(*(set(items) for items in regions.values())) | set(keys))
    names = list(regions)
    divergent = tuple(
        k for k in all_keys if any(regions[r].get(k) != regions[names[0]].get(k) for r in names)
    )
    lost: list[Lost] = []
    unexpected: list[tuple[str, str]] = []
    present = absent = 0
    for key in all_keys:
        history = keys[key]
        value = final.get(key)
        if value is None:
            absent += 1
        else:
            present += 1
        if not judge_lost:
            if value is not None and value not in {w.value for w in history.writes}:
                unexpected.append((key, value))
            continue
        if value is not None:
            writer = next((w for w in history.writes if w.value == value), None)
            if writer is None or writer.kind.deletes:
                unexpected.append((key, value))
                continue
            later = history.after(writer)
            because = f"happened after the final value {value}"
        else:
            deletes = [w for w in history.writes if w.kind.deletes]
            later = set.intersection(*(history.after(d) for d in deletes)) if deletes else set()
            if not deletes:
                later = {w.id for w in history.writes}
            because = "happened after every delete, yet the key is absent"
        for w in history.writes:
            if w.id in later and w.acked is not None and (value is not None or not w.kind.deletes):
                lost.append(Lost(key, w.value, w.region, w.kind, because))
    judged = dropped = 0
    if set_attribute is not None:
        judged, dropped, missing = _judge_elements(writes, regions, set_attribute)
        lost.extend(missing)
    return Verdict(
        divergent=divergent,
        lost=tuple(lost),
        unexpected=tuple(unexpected),
        judged_keys=len(all_keys),
        final_present=present,
        final_absent=absent,
        elements_judged=judged,
        elements_dropped=dropped,
    )


def _judge_elements(
    writes: Sequence[Write], regions: Mapping[str, Mapping[str, Any]], attribute: str
) -> tuple[int, int, list[Lost]]:
    """(elements judged, of which dropped on purpose, the missing ones): module docstring."""
    dropped: dict[str, set[str]] = defaultdict(set)
    for w in writes:
        dropped[w.key] |= w.dropped
    judged = excused = 0
    lost: list[Lost] = []
    for w in writes:
        element = w.added
        if element is None or w.acked is None:
            continue
        judged += 1
        if element in dropped[w.key]:
            excused += 1
            continue
        missing = [
            r
            for r, items in regions.items()
            if element not in set_value(items.get(w.key), attribute=attribute)
        ]
        if missing:
            because = f"element missing in {', '.join(missing)}; no write that read it dropped it"
            lost.append(Lost(w.key, element, w.region, w.kind, because))
    return judged, excused, lost


def differing(items: Sequence[Mapping[str, Any] | None]) -> list[str]:
    """The attributes whose values differ between ``items`` (one key's item in each region),
    georep's ``_georep`` map one level down (``_georep.f``: only the field stamps differ), for a
    divergent key's report line; ``(absent)`` when the item is absent in some region only."""
    present = [item for item in items if item is not None]
    if len(present) != len(items):
        return ["(absent)"] if present else []
    names = sorted(set().union(*(set(item) for item in present)))
    out: list[str] = []
    for name in names:
        values = [item.get(name) for item in present]
        if all(v == values[0] for v in values):
            continue
        maps = [v.get("M") if isinstance(v, Mapping) else None for v in values]
        if name == "_georep" and all(isinstance(m, Mapping) for m in maps):
            out += [f"{name}.{sub}" for sub in differing(maps)]
        else:
            out.append(name)
    return out


def final_value(item: Mapping[str, Any] | None, *, value_attribute: str) -> Final:
    """The value a plain read of ``item`` shows: None when the item is absent or deleted."""
    if item is None or is_tombstone(item):
        return None
    found = item.get(value_attribute, {}).get("S")
    return str(found) if found is not None else None


def adopted_value(item: Mapping[str, Any] | None, *, value_attribute: str) -> str | None:
    """The value of ``item`` if georep stamped or adopted it and it is live: its ``_georep``
    digest (``h``) is its data's and it is no tombstone. None otherwise (no item, a tombstone,
    or a raw write not adopted yet: no ``_georep``, or one whose digest is not its data's).

    NOTE: the digest's canonical encoding (docs/metadata.md) is the one function of georep
    this accounting uses besides the tombstone flag, as the state machines' ground truth does
    (tests/property/truth.py): what a raw write replaced decides which order is claimed, not
    how versions compare."""
    if item is None:
        return None
    value = item.get(value_attribute, {}).get("S")
    meta = item.get("_georep", {}).get("M")
    if value is None or meta is None or meta.get("d", {}).get("BOOL", False):
        return None
    data = {k: v for k, v in item.items() if not k.startswith("_georep")}
    return str(value) if meta.get("h", {}).get("S") == digest(data) else None


def set_value(item: Mapping[str, Any] | None, *, attribute: str) -> frozenset[str]:
    """The string set ``attribute`` of ``item`` as stored, a tombstone's included (under merge
    rules it keeps the data it deleted); empty when absent."""
    if item is None:
        return frozenset()
    return frozenset(item.get(attribute, {}).get("SS", ()))


def is_tombstone(item: Mapping[str, Any]) -> bool:
    """Whether ``item`` is one of georep's tombstones, which read as absent.

    NOTE: the one place the chaos accounting looks into georep's metadata. Today a delete
    leaves the key with ``_georep`` (``d`` true, docs/metadata.md) and ``_georep_ttl`` in the
    user's table; when tombstones leave user tables, a deleted key is simply absent and this
    function can go."""
    meta = item.get("_georep", {}).get("M", {})
    return bool(meta.get("d", {}).get("BOOL", False))


def describe(lost: Sequence[Lost]) -> list[tuple[str, str, str, str, str]]:
    """Rows for a report: key, value, region, kind, why it counts as lost."""
    return [(x.key, x.value, x.region, str(x.kind), x.because) for x in lost]
