"""The tombstone store's items (issue 22): where a deleted key's version lives once the user's
table holds live items only (docs/design.md, "the tombstone store"). Pure.

One store table per region serves every georep table of the replica set: an item is keyed by
the georep table's name and the canonical form of the user item's key (`store_key`), and holds

* the key's tombstone, if it is deleted: its metadata (``_georep``), its data (``d``: the keys,
  or under merge rules the data it deletes) and the TTL attribute under the horizon rule;
* the deletions georep made in this region's table (``x``): for each deleted image (by its
  digest, `image_digest`), the tombstone that deleted it (metadata and data: the version a
  local delete's REMOVE record forwards) and whether that delete was this region's own (its
  REMOVE record is forwarded) or a replicated one (an echo). The consumer
  explains a REMOVE record by them (`explain_remove`); one missing is an application's raw
  DeleteItem, adopted. Entries past the horizon are dropped on every write (`with_deletion`).

>>> from service.core.version import Meta, VersionVector, Version
>>> meta = Meta(vv=VersionVector.of({"eu~ABCDEFGH": 5}), actor="eu~ABCDEFGH",
...             write_id="01HF7YASR9G000000000000002", hlc=5 << 16, digest="x" * 22, count=2,
...             deleted=True)
>>> tomb = Version(data={"pk": {"S": "a"}}, meta=meta)
>>> image = {"pk": {"S": "a"}, "v": {"N": "1"}}
>>> stored = with_deletion(None, tomb, image, local=True, horizon_ms=1000)
>>> explain_remove(stored, image).local
True
>>> explain_remove(stored, {"pk": {"S": "a"}, "v": {"N": "2"}}) is None
True
>>> store_key("orders", {"pk": {"S": "a"}})
{'k': {'S': 'orders|{"pk":["S","a"]}'}}
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Literal

from service.core.values import AttributeValue, Item, canonical, digest
from service.core.version import (
    META_ATTR,
    TTL_ATTR,
    Version,
    decode_meta,
    encode_meta,
    expiry_ms,
)
from service.errors import MetadataError

if TYPE_CHECKING:
    from service.core.places import Step

STORE_KEY = "k"
DATA_ATTR = "d"
DELETIONS_ATTR = "x"
_SEPARATOR = "|"  # never in a DynamoDB table name ([a-zA-Z0-9_.-])


def store_key(table: str, key: Mapping[str, AttributeValue]) -> dict[str, AttributeValue]:
    """The store item's key for ``key`` of georep table ``table`` (its name in the config,
    the same in every region whatever the physical table is called there)."""
    canonical_key = json.dumps(
        {name: canonical(value) for name, value in sorted(key.items())},
        sort_keys=True,
        separators=(",", ":"),
    )
    return {STORE_KEY: {"S": f"{table}{_SEPARATOR}{canonical_key}"}}


def store_prefix(table: str) -> str:
    """What every store key of georep table ``table`` begins with (a scan of one table's)."""
    return f"{table}{_SEPARATOR}"


def image_digest(image: Item) -> str:
    """The identity of a deleted image: a digest of the whole item, metadata included, so a
    REMOVE record's old image finds the deletion that removed exactly it."""
    return digest(image)


@dataclass(frozen=True)
class Deletion:
    """A delete georep made in this region's table: the tombstone that removed an image, and
    whether it was this region's own write (``local``: forward it) or replicated (an echo)."""

    tombstone: Version
    local: bool


@dataclass(frozen=True)
class StoreItem:
    """What the store holds for one key: its tombstone (``None`` while the key is live again)
    and the deletions georep made in this region's table, by deleted image digest."""

    tombstone: Version | None
    deletions: Mapping[str, Deletion] = field(default_factory=dict)


def with_deletion(
    current: StoreItem | None,
    tombstone: Version,
    image: Item,
    *,
    local: bool,
    horizon_ms: int,
) -> StoreItem:
    """``current`` after ``tombstone`` deleted ``image`` from the user's table: the tombstone
    is the key's, and the deletion is recorded; deletions past the horizon at the tombstone's
    clock are dropped."""
    deletions = pruned(current, at_hlc=tombstone.meta.hlc, horizon_ms=horizon_ms)
    deletions[image_digest(image)] = Deletion(tombstone, local)
    return StoreItem(tombstone=tombstone, deletions=deletions)


def with_tombstone(current: StoreItem | None, tombstone: Version | None) -> StoreItem:
    """``current`` holding ``tombstone`` as the key's (``None``: the key is live again), its
    deletions kept: a REMOVE record they explain may still be waiting in the stream."""
    if current is None:
        return StoreItem(tombstone=tombstone)
    return replace(current, tombstone=tombstone)


def pruned(current: StoreItem | None, *, at_hlc: int, horizon_ms: int) -> dict[str, Deletion]:
    """The deletions of ``current`` still within the horizon at ``at_hlc``: a REMOVE record is
    read within the stream's 24 h retention, far inside the horizon."""
    if current is None:
        return {}
    now_ms = at_hlc >> 16
    return {
        image: deletion
        for image, deletion in current.deletions.items()
        if expiry_ms(deletion.tombstone.meta, horizon_ms=horizon_ms) > now_ms
    }


def explain_remove(current: StoreItem | None, old_image: Item) -> Deletion | None:
    """The deletion georep made that a REMOVE record with ``old_image`` records, if any (else
    the application deleted the item itself)."""
    if current is None:
        return None
    return current.deletions.get(image_digest(old_image))


def expires_ms(item: StoreItem, *, horizon_ms: int) -> int | None:
    """When TTL may collect the store item: after its tombstone's expiry and every deletion's;
    ``None`` if it holds nothing (the caller deletes it instead)."""
    metas = [d.tombstone.meta for d in item.deletions.values()]
    if item.tombstone is not None:
        metas.append(item.tombstone.meta)
    if not metas:
        return None
    return max(expiry_ms(meta, horizon_ms=horizon_ms) for meta in metas)


def encode_store_item(
    table: str, key: Mapping[str, AttributeValue], item: StoreItem, *, horizon_ms: int
) -> dict[str, AttributeValue]:
    """The store's DynamoDB item for ``item`` under ``key`` of ``table``."""
    out: dict[str, AttributeValue] = store_key(table, key)
    if item.tombstone is not None:
        out[META_ATTR] = encode_meta(item.tombstone.meta)
        out[DATA_ATTR] = {"M": dict(item.tombstone.data)}
    if item.deletions:
        out[DELETIONS_ATTR] = {
            "M": {
                image: {
                    "M": {
                        "g": encode_meta(d.tombstone.meta),
                        "d": {"M": dict(d.tombstone.data)},
                        "l": {"BOOL": d.local},
                    }
                }
                for image, d in sorted(item.deletions.items())
            }
        }
    expires = expires_ms(item, horizon_ms=horizon_ms)
    if expires is not None:
        out[TTL_ATTR] = {"N": str(expires // 1000)}
    return out


def decode_store_item(item: Mapping[str, AttributeValue], *, regions: frozenset[str]) -> StoreItem:
    """A store item read back. Raises MetadataError for anything georep did not write."""
    tombstone: Version | None = None
    if META_ATTR in item:
        meta = decode_meta(item[META_ATTR], regions=regions)
        data = item.get(DATA_ATTR)
        if not meta.deleted or not isinstance(data, dict) or not isinstance(data.get("M"), dict):
            raise MetadataError("a tombstone store item must hold a tombstone and its data")
        tombstone = Version(data=dict(data["M"]), meta=meta)
    deletions: dict[str, Deletion] = {}
    raw = item.get(DELETIONS_ATTR, {"M": {}})
    if not isinstance(raw, dict) or not isinstance(raw.get("M"), dict):
        raise MetadataError(f"tombstone store deletions must be a map, got {raw!r}")
    for image, entry in raw["M"].items():
        doc = entry.get("M") if isinstance(entry, dict) else None
        local = doc.get("l") if isinstance(doc, dict) else None
        if not isinstance(doc, dict) or not isinstance(local, dict) or "BOOL" not in local:
            raise MetadataError(f"tombstone store deletion {image!r} is malformed: {entry!r}")
        data = doc.get("d")
        if "g" not in doc or not isinstance(data, dict) or not isinstance(data.get("M"), dict):
            raise MetadataError(f"tombstone store deletion {image!r} names no tombstone")
        meta = decode_meta(doc["g"], regions=regions)
        if not meta.deleted:
            raise MetadataError(f"tombstone store deletion {image!r} holds a live version")
        deletions[image] = Deletion(Version(data=dict(data["M"]), meta=meta), bool(local["BOOL"]))
    return StoreItem(tombstone=tombstone, deletions=deletions)


CommitKind = Literal["update", "insert", "revive", "delete", "tombstone"]


def commit_kind(steps: tuple[Step | None, Step | None]) -> CommitKind:
    """Which row of `commit_for`'s table the (table, store) steps of one commit are, for the
    ``store_commits`` metric: ``update`` (a live item over a stamped one: one conditional
    write, no transaction), ``insert`` (a live item where there is none, with a check that
    the store holds no tombstone), ``revive`` (a live item that drops or succeeds a stored
    tombstone), ``delete`` (the item deleted, its tombstone put in the store) and
    ``tombstone`` (a tombstone put in the store where the table holds no item, with a check
    that it still holds none). Every kind but ``update`` is one TransactWriteItems of two
    actions (two write units each)."""
    table, store = steps
    if table is None or table.check:
        return "tombstone"
    if table.item is None:
        return "delete"
    if store is None:
        return "update"
    return "insert" if store.check else "revive"
