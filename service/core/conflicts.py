"""The conflict log's entries, as pure functions: what one merge of two concurrent versions
records, its id, and its DynamoDB item.

An entry is built from what `decide` hands back with a merge (``Write.conflict``: the version
the destination held and the incoming one) and the merged version written. Its id depends on
the conflict alone (the key, the two inputs, the destination), never on the clock, so every
replay of the record, and every consumer of the region, logs the same conflict under the same
id: the sink stores it once (docs/decisions.md, "A conflict log...").

With the tombstone store (issue 22) a deleted key's version lives in the destination's store,
not its table, and `decide` meets it there (`KeyState.current`): an entry whose ``existing``
side is deleted then records the store it came from (``tombstone_table``, `held_in`).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

from service.core.values import AttributeValue, canonical, same_item
from service.core.version import Version, actor_region

EXPIRES_ATTR = "expires_at"  # the conflict table's TTL attribute (epoch seconds)
DAY_SECONDS = 24 * 3600

Winner = Literal["existing", "incoming"]


@dataclass(frozen=True)
class ConflictInput:
    """One of the two concurrent versions, by its metadata (its data is not kept)."""

    write_id: str
    origin: str  # the region that wrote it
    actor: str  # its writer: the region, tagged for a fresh history (docs/metadata.md)
    hlc: int
    vv: tuple[tuple[str, int], ...]  # its version vector, actor -> counter
    deleted: bool
    merged: bool  # itself the result of an earlier merge
    adopted: bool  # a raw write georep adopted

    @classmethod
    def of(cls, version: Version) -> ConflictInput:
        meta = version.meta
        return cls(
            write_id=meta.write_id,
            origin=meta.origin,
            actor=meta.actor,
            hlc=meta.hlc,
            vv=meta.vv.entries,
            deleted=meta.deleted,
            merged=meta.merged,
            adopted=meta.adopted,
        )


@dataclass(frozen=True)
class ConflictEntry:
    """One merge written at ``destination`` by ``source``'s consumer (or Lambda function).

    ``existing``: what the destination held; ``incoming``: the version ``source`` replicated.
    ``result_write_id``/``result_deleted``: the merged version written (it carries the write id
    of the input the resolver picked as its carrier). ``winner``: the input whose data and
    deleted flag the merge kept whole, or ``None`` when the resolver blended them.
    ``at``: epoch seconds the merge was written (as the consumer's clock saw it).
    ``table``: the configured table it happened in (None: logged before georep recorded it).
    """

    id: str
    key: Mapping[str, AttributeValue]
    destination: str
    source: str
    resolver: str
    existing: ConflictInput
    incoming: ConflictInput
    result_write_id: str
    result_deleted: bool
    winner: Winner | None
    at: int
    table: str | None = None
    # The tombstone store the destination kept its tombstones in (None: its table, no store).
    tombstone_table: str | None = None


Side = Literal["existing", "incoming"]


def held_in(entry: ConflictEntry, side: Side) -> Literal["table", "store", "stream"]:
    """Where the merge's ``side`` came from: ``stream`` for ``incoming`` (the source region's
    record), and for ``existing`` the destination's ``store`` when it is a tombstone and the
    destination kept tombstones in its store, else its ``table``.

    NOTE: with the store on, a tombstone item written before it and not moved yet
    (``georep migrate-tombstones``) is still in the table; an entry whose existing side was
    one says ``store`` all the same (the Replicator does not pass where it read it: see
    docs/decisions.md, "status, the conflict log and the metrics read the tombstone store").
    """
    if side == "incoming":
        return "stream"
    if entry.existing.deleted and entry.tombstone_table is not None:
        return "store"
    return "table"


def is_conflict(existing: Version, incoming: Version) -> bool:
    """Whether the merge of two concurrent versions is a conflict: two writes neither of which
    followed the other. Only those are counted and logged.

    Not one: two versions that were each written first in one region's own table and neither
    is a merge (stamped writes, adoptions of raw writes, backfill stamps, the successors
    `decide` writes). One table holds an item's writes one after another, so one of the two
    physically replaced the other; they look concurrent only because a raw write in between
    left no metadata (an adoption meeting the backfill stamp of the same raw data, a stamped
    write made over a raw item before its adoption). That region's consumer writes a version
    succeeding both (`succeeding`, annotations); under merge rules the merge keeps both.
    So 600 raw items backfilled and then their INSERT records adopted log no conflict, not
    one per destination and item (issue 16, finding 6). Nor two versions, merges among them,
    whose vectors name actors of one region only: every write either has seen was made in
    that region's table, one after another (raw writes of an item consumed one record per
    batch after all were made: successors of their adoptions meet the next adoptions).
    Symmetric in its arguments.
    """
    a, b = existing.meta, incoming.meta
    regions = {actor_region(actor) for meta in (a, b) for actor, _ in meta.vv.entries}
    if len(regions) == 1:
        return False
    return a.merged or b.merged or a.origin != b.origin


def conflict_id(
    *, key: Mapping[str, AttributeValue], existing: Version, incoming: Version, destination: str
) -> str:
    """The id of the merge of ``existing`` and ``incoming`` at ``destination``: a digest of the
    key, the two inputs (write id and version vector each, in sorted order: a merge carries
    its carrier's write id, so the id alone would not tell two merges apart) and the
    destination. The same conflict always gets the same id, whichever side it came from."""
    inputs = sorted([[v.meta.write_id, list(v.meta.vv.entries)] for v in (existing, incoming)])
    text = json.dumps(
        [{k: canonical(v) for k, v in sorted(key.items())}, inputs, destination],
        sort_keys=True,
        separators=(",", ":"),
    )
    return hashlib.blake2b(text.encode(), digest_size=16).hexdigest()


def conflict_entry(
    *,
    key: Mapping[str, AttributeValue],
    destination: str,
    source: str,
    resolver: str,
    existing: Version,
    incoming: Version,
    merged: Version,
    at: int,
    table: str | None = None,
    tombstone_table: str | None = None,
) -> ConflictEntry:
    """The log entry for ``merged``, written at ``destination`` over ``existing`` when
    ``incoming`` arrived from ``source`` (``Write.conflict`` is ``(existing, incoming)``).
    ``tombstone_table``: the destination's tombstone store, if deletes use one."""
    return ConflictEntry(
        id=conflict_id(key=key, existing=existing, incoming=incoming, destination=destination),
        key=dict(key),
        destination=destination,
        source=source,
        resolver=resolver,
        existing=ConflictInput.of(existing),
        incoming=ConflictInput.of(incoming),
        result_write_id=merged.meta.write_id,
        result_deleted=merged.meta.deleted,
        winner=_winner(existing=existing, incoming=incoming, merged=merged),
        at=at,
        table=table,
        tombstone_table=tombstone_table,
    )


def _winner(*, existing: Version, incoming: Version, merged: Version) -> Winner | None:
    """The input the merge is, identity, deleted flag and data alike; ``None`` for a blend."""
    sides: tuple[tuple[Winner, Version], ...] = (("existing", existing), ("incoming", incoming))
    for name, side in sides:
        if (
            side.meta.write_id == merged.meta.write_id
            and side.meta.deleted == merged.meta.deleted
            and same_item(side.data, merged.data)
        ):
            return name
    return None


# -- the DynamoDB item ---------------------------------------------------------------------


def encode_entry(entry: ConflictEntry, *, retention_days: int) -> dict[str, Any]:
    """The conflict table's item for ``entry``, expiring ``retention_days`` after ``at``
    (the table's TTL attribute, :data:`EXPIRES_ATTR`)."""
    result: dict[str, Any] = {
        "write_id": {"S": entry.result_write_id},
        "deleted": {"BOOL": entry.result_deleted},
    }
    if entry.winner is not None:
        result["winner"] = {"S": entry.winner}
    table = {"table": {"S": entry.table}} if entry.table is not None else {}
    if entry.tombstone_table is not None:
        table["tombstone_table"] = {"S": entry.tombstone_table}
    return {
        **table,
        "id": {"S": entry.id},
        "key": {"M": dict(entry.key)},
        "destination": {"S": entry.destination},
        "source": {"S": entry.source},
        "resolver": {"S": entry.resolver},
        "existing": {"M": _encode_input(entry.existing)},
        "incoming": {"M": _encode_input(entry.incoming)},
        "result": {"M": result},
        "at": {"N": str(entry.at)},
        EXPIRES_ATTR: {"N": str(entry.at + retention_days * DAY_SECONDS)},
    }


def decode_entry(item: Mapping[str, Any]) -> ConflictEntry:
    """The entry :func:`encode_entry` stored (its expiry aside)."""
    result = item["result"]["M"]
    winner = result.get("winner", {}).get("S")
    return ConflictEntry(
        id=item["id"]["S"],
        key=dict(item["key"]["M"]),
        destination=item["destination"]["S"],
        source=item["source"]["S"],
        resolver=item["resolver"]["S"],
        existing=_decode_input(item["existing"]["M"]),
        incoming=_decode_input(item["incoming"]["M"]),
        result_write_id=result["write_id"]["S"],
        result_deleted=result["deleted"]["BOOL"],
        winner=winner if winner in ("existing", "incoming") else None,
        at=int(item["at"]["N"]),
        table=item.get("table", {}).get("S"),
        tombstone_table=item.get("tombstone_table", {}).get("S"),
    )


def _encode_input(side: ConflictInput) -> dict[str, Any]:
    return {
        "write_id": {"S": side.write_id},
        "origin": {"S": side.origin},
        "actor": {"S": side.actor},
        "hlc": {"N": str(side.hlc)},
        "vv": {"M": {actor: {"N": str(counter)} for actor, counter in side.vv}},
        "deleted": {"BOOL": side.deleted},
        "merged": {"BOOL": side.merged},
        "adopted": {"BOOL": side.adopted},
    }


def _decode_input(value: Mapping[str, Any]) -> ConflictInput:
    return ConflictInput(
        write_id=value["write_id"]["S"],
        origin=value["origin"]["S"],
        actor=value["actor"]["S"],
        hlc=int(value["hlc"]["N"]),
        vv=tuple(sorted((a, int(c["N"])) for a, c in value["vv"]["M"].items())),
        deleted=value["deleted"]["BOOL"],
        merged=value["merged"]["BOOL"],
        adopted=value["adopted"]["BOOL"],
    )
