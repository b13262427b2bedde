"""The ground truth of a replication run, kept by the test alone (STYLE.md 17, the idea behind
Elle): what each application write was, what it read, and so which writes it causally
followed. It reads items only through the wire format's plain fields (``val``, ``tags``, the
tombstone flag ``_georep.d`` and the data digest ``_georep.h``, docs/metadata.md), never
through the product's rules: no version vectors, clocks, adoption or resolvers, so a broken
rule in the product cannot move it along. (The digest's canonical encoding is the one
function it shares with the product.)

Every put carries a unique value (in ``val``, and under merge rules in ``tags``). A write
*followed* another when what it read (the item it replaced, in its own region) traces to that
write, or to a write that followed it, and so on. Deletes carry no value, so a write that
read a tombstone is not known to have followed the delete: the account is conservative, it
only ever claims an order it saw, never one it guessed. Nor is a write over a raw item not
adopted yet (no ``_georep``, or a digest that is not its data's) claimed to follow it: the
product documents that it starts a fresh history there (docs/design.md, "Still not claimed").

At quiescence (`check`):

1. no final value is one that an acknowledged write followed (a lost update or a rollback:
   something that read the value replaced it, yet the value came back); under merge rules a
   delete does not count, since a tombstone keeps what it deletes and a concurrent write
   brings it back; nor does a raw write that landed between a consumer's read and its
   write (conditions do not pin data: the limit docs/design.md states);
2. every acknowledged put is the final value, or some write followed it, or the final state
   is not older than it (a concurrent write or delete won: last-writer-wins or version
   counters decided, which this account does not second-guess);
3. under merge rules (writers only add tags, and a tombstone keeps the data it deletes),
   every tag an acknowledged put added is in the final item, deleted or not.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

from service.core.values import digest

Kind = Literal["put", "delete", "copy"]


@dataclass(frozen=True)
class Write:
    """One acknowledged application write of one key."""

    id: str
    region: str
    kind: Kind
    value: str | None  # the unique value a put wrote (a copy: the value it copied)
    saw: frozenset[str]  # every write it followed, transitively
    tagged: bool = False  # it added its value to ``tags`` (the merge-rule machines' writers)
    # A raw write that landed between a consumer's read and its conditional write: conditions
    # compare only ``_georep`` (docs/design.md), so replication may overwrite its data, which
    # then comes back from its own record merged, not as its successor.
    raced_raw: bool = False
    raw: bool = False  # written with plain boto3, not stamped


def values_in(item: Mapping[str, Any] | None) -> tuple[str | None, frozenset[str], bool]:
    """What an item shows, read from its plain attributes: its ``val``, its ``tags`` and
    whether it is a tombstone (``_georep.d``)."""
    if item is None:
        return None, frozenset(), False
    val = item.get("val", {}).get("S")
    tags = frozenset(item.get("tags", {}).get("SS", ()))
    deleted = bool(item.get("_georep", {}).get("M", {}).get("d", {}).get("BOOL", False))
    return val, tags, deleted


@dataclass
class Truth:
    """The account of one run: every acknowledged write, per key, in the order made."""

    writes: dict[str, list[Write]] = field(default_factory=dict)
    serial: int = 0

    def _new_id(self) -> str:
        self.serial += 1
        return f"t{self.serial}"

    def followed(self, key: str, item: Mapping[str, Any] | None) -> frozenset[str]:
        """The writes a writer follows when it reads (or replaces) ``item``: the writes of
        the values it shows (never a copy's, which repeats a value) and all they followed."""
        val, tags, _deleted = values_in(item)
        shown = ({val} if val is not None else set()) | set(tags)
        if item is not None and self._unadopted(item):
            # A write over a raw item its consumer has not adopted yet is not claimed to
            # follow it: the product starts a fresh history there (docs/design.md, "Still
            # not claimed": it is concurrent with the raw write's adoption).
            return frozenset()
        saw: set[str] = set()
        for write in self.writes.get(key, []):
            if write.kind == "put" and write.value in shown:
                saw |= {write.id} | write.saw
        return frozenset(saw)

    @staticmethod
    def _unadopted(item: Mapping[str, Any]) -> bool:
        """Whether ``item`` is a raw write not adopted yet: no ``_georep``, or one whose data
        digest (``h``) is not its data's. (The digest is the wire format's canonical encoding,
        docs/metadata.md; it is the one function of the product this account uses.)"""
        meta = item.get("_georep", {}).get("M")
        if meta is None:
            return True
        data = {k: v for k, v in item.items() if not k.startswith("_georep")}
        return bool(meta.get("h", {}).get("S") != digest(data))

    def record(
        self,
        key: str,
        *,
        region: str,
        kind: Kind,
        value: str | None,
        replaced: Mapping[str, Any] | None,
        written: Mapping[str, Any] | None = None,
        raced_raw: bool = False,
        raw: bool = False,
    ) -> None:
        """An acknowledged write of ``key`` in ``region`` over the item ``replaced``
        (``written``: the item it wrote, for a put)."""
        tagged = value is not None and value in values_in(written)[1]
        saw = self.followed(key, replaced)
        write = Write(self._new_id(), region, kind, value, saw, tagged, raced_raw, raw)
        self.writes.setdefault(key, []).append(write)

    def check(self, key: str, final: Mapping[str, Any] | None, *, merge_rules: bool) -> None:
        writes = self.writes.get(key, [])
        if not writes:
            return
        val, tags, deleted = values_in(final)
        live = final is not None and not deleted
        later = {w.id: [x for x in writes if w.id in x.saw] for w in writes}
        if live:
            # Under merge rules a delete hides the data it deletes but keeps it, and a
            # concurrent write brings it back (docs/design.md): only puts replace a value.
            replacing = {
                w.id: [
                    x
                    for x in later[w.id]
                    if not x.raced_raw and (x.kind != "delete" or not merge_rules)
                ]
                for w in writes
            }
            sources = [w for w in writes if w.kind in ("put", "copy") and w.value == val]
            assert sources, f"{key}: the final value {val!r} is no write's"
            assert any(w.kind == "copy" or not replacing[w.id] for w in sources), (
                f"{key}: the final value {val!r} was replaced by a write that followed it: "
                f"{[replacing[w.id] for w in sources]}; all writes: {writes}"
            )
        for write in writes:
            if write.kind != "put" or (live and write.value == val) or later[write.id]:
                continue
            if live:
                # A concurrent write won: the final value's write is not one it followed.
                continue
            assert any(w.kind == "delete" and w.id not in write.saw for w in writes), (
                f"{key}: {write} was lost: the item is {'deleted' if deleted else 'gone'} "
                "and no delete it did not follow exists"
            )
        if merge_rules:
            added = {w.value for w in writes if w.kind == "put" and w.tagged and w.value}
            missing = added - tags
            assert not missing, f"{key}: elements written and never removed are gone: {missing}"
