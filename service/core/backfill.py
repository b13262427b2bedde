"""Backfill as pure functions: what one item scanned in the source region must become.

``georep backfill --from R`` scans R's table and hands every item to :func:`plan`:

* a **raw** item (never stamped, or its data changed under copied metadata) is stamped in
  place: its ``_georep`` is set to a new version of R that succeeds what was read, by an
  UpdateItem of ``_georep`` alone, under the precondition of what was read (`Stamp`). The data
  is never rewritten, so a raw write that lands between the scan and the stamp is annotated,
  not overwritten: the item is then raw with the stamp as its copied context, and that raw
  write's stream record is adopted as its successor (docs/design.md, "Raw-write adoption and
  its limits"). The stamp's own record is forwarded by R's consumer like any local write; the
  backfill also delivers it itself (`Deliver`), so it does not wait for the consumers;
* a **stamped** item (a version or a tombstone) is delivered to the destinations through the
  same decision and conditional write as a forwarded record, so it never rolls a newer version
  back (`Deliver`);
* an item that is **gone** (deleted between the scan and a re-read) needs nothing: its deletion
  has a stream record of its own (`Gone`);
* an item that cannot be stamped (tampered metadata, georep's TTL attribute on a live item)
  is refused with the reason (`Refuse`).

A stamp's clock is when the source's stream was enabled (:func:`stamp_hlc`), not now: data
that was there before replication started is older than every write made since, in any region,
so under last-writer-wins such a write wins whichever reaches the item first (docs/decisions.md,
"Backfill stamps in place, as of the stream's start").
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

from service.core import hlc
from service.core.apply import Precondition, precondition_for
from service.core.stamp import stamp
from service.core.stored import Absent, Raw, Settings, Stamped, read_item
from service.core.values import AttributeValue, same_item
from service.core.version import TTL_ATTR, Version
from service.errors import GeorepError


@dataclass(frozen=True)
class Stamp:
    """Make ``version`` the item's metadata if ``precondition`` still holds, then deliver it.

    ``in_place``: the version's data is the item's data, so only ``_georep`` is written
    (UpdateItem). Otherwise (under a merge rule, a raw write over a tombstone's copied
    metadata keeps the tombstone's elements) the whole item is written.
    """

    version: Version
    precondition: Precondition
    in_place: bool = True


@dataclass(frozen=True)
class Deliver:
    """Apply ``version`` to every destination (read, decide, conditional write)."""

    version: Version


@dataclass(frozen=True)
class Gone:
    """No item under the key any more: its deletion replicates from its own record."""


@dataclass(frozen=True)
class Refuse:
    """The item cannot be stamped; ``reason`` says why and what to do."""

    reason: str


Step = Stamp | Deliver | Gone | Refuse


def plan(
    item: Mapping[str, AttributeValue] | None,
    *,
    region: str,
    at_hlc: int,
    write_id: str,
    settings: Settings,
) -> Step:
    """What to do with ``item``, as read from ``region``'s table (``None``: no item).

    Called again on what the table holds when a stamp's precondition failed (a write landed
    in between), so the backfill always acts on the item as it is.

    >>> from resolvers import build
    >>> settings = Settings(regions=("eu", "us"), key_attributes=("pk",), resolver=build("lww"))
    >>> step = plan({"pk": {"S": "a"}, "v": {"N": "1"}}, region="eu", at_hlc=1 << 40,
    ...             write_id="01J0000000000000000000000B", settings=settings)
    >>> type(step).__name__, step.version.data == {"pk": {"S": "a"}, "v": {"N": "1"}}
    ('Stamp', True)
    """
    try:
        current = read_item(dict(item) if item is not None else None, settings=settings)
    except GeorepError as error:
        return Refuse(f"{type(error).__name__}: {error}")
    match current:
        case Absent():
            return Gone()
        case Stamped(version=version):
            return Deliver(version)
        case Raw(data=data):
            assert item is not None
            if TTL_ATTR in item:
                # NOTE: an annotation leaves every other attribute as it is, and a live item
                # carrying the tombstone expiry would be collected by the table's TTL.
                return Refuse(
                    f"a live item carries {TTL_ATTR}, georep's tombstone expiry: remove the "
                    "attribute (the table's TTL would delete the item), then run backfill again"
                )
            try:
                stamped = stamp(
                    current,
                    data,
                    region=region,
                    now_hlc=at_hlc,
                    write_id=write_id,
                    settings=settings,
                )
            except GeorepError as error:
                return Refuse(f"{type(error).__name__}: {error}")
            assert stamped is not None  # a write of data, never a delete
            return Stamp(stamped, precondition_for(current), same_item(stamped.data, data))
    raise AssertionError(current)


def stamp_hlc(stream_label: str | None, *, now_ms: int) -> int:
    """The clock of backfill stamps: when the source table's stream was enabled.

    ``stream_label`` is DescribeTable's ``LatestStreamLabel`` (ISO 8601, UTC, no zone on AWS
    and moto). An item still raw was either written before the stream existed (it has no record
    and nothing else will ever replicate it) or has a record whose adoption, with the record's
    own time, will succeed the stamp. A label that is missing, unreadable or ahead of
    ``now_ms`` (clock skew) gives ``now_ms``.

    >>> hlc.wall_ms(stamp_hlc("2024-05-01T12:00:00.250", now_ms=1_800_000_000_000))
    1714564800250
    """
    if stream_label:
        try:
            created = datetime.fromisoformat(stream_label)
        except ValueError:
            created = None
        if created is not None:
            if created.tzinfo is None:
                created = created.replace(tzinfo=UTC)
            return hlc.pack(max(0, min(int(created.timestamp() * 1000), now_ms)))
    return hlc.pack(now_ms)
