"""Writing through georep: the application stamps metadata in the same request.

    table = GeorepTable(client, config=config, region="eu-west-1")
    version = table.put({"pk": {"S": "user#1"}, "name": {"S": "Ada"}})
    table.delete({"pk": {"S": "user#1"}})

Each write reads the current item, stamps the new version (version vector, HLC, write id,
digest) and writes it with a precondition on what it read; if another write got there first,
it reads again. Reads through :meth:`get` hide tombstones and metadata.

georep's own attributes are not application data. :meth:`put` drops the ``_georep`` that an
item read with plain boto3 carries (the SDK reads the current item itself, so the new version
succeeds it), and drops ``_georep_ttl`` when it comes with a tombstone's ``_georep`` (writing
over a deleted item brings it back, and it must not expire). Any other ``_georep_ttl`` is
refused: the table's TTL attribute collects tombstones, and the SDK does not expire live
items. So a read-modify-write through boto3 works::

    item = client.get_item(TableName="orders", Key={"pk": {"S": "user#1"}})["Item"]
    item["name"] = {"S": "Ada L."}
    table.put(item)   # a stamped version that succeeds the one read

:meth:`put` succeeds whatever the table holds when it writes, which may be newer than what the
application read. A read-modify-write that must succeed exactly what it read (under merge
rules a write must be an inflation of what it replaced: docs/design.md, "Deletes under merge
rules") uses :meth:`put_if_unchanged`, which writes nothing and returns None if the item
changed since::

    while (version := table.put_if_unchanged(changed(item), read=item)) is None:
        item = client.get_item(TableName="orders", Key=key, ConsistentRead=True).get("Item")
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ulid

from service.adapters.dynamo import DynamoTable
from service.config import Config
from service.core import hlc
from service.core.apply import precondition_for
from service.core.stamp import stamp
from service.core.stored import Settings, read_item
from service.core.version import META_ATTR, TTL_ATTR, Version, data_of, decode_meta, encode_item
from service.errors import MetadataError


class Clock:
    """A process-wide hybrid logical clock (thread-safe). Time is injectable for tests."""

    def __init__(self, now_ms: Callable[[], int] = lambda: int(time.time() * 1000)) -> None:
        self.now_ms, self.last, self.lock = now_ms, 0, threading.Lock()

    def tick(self) -> int:
        with self.lock:
            self.last = hlc.tick(self.last, self.now_ms())
            return self.last

    def observe(self, remote: int) -> None:
        with self.lock:
            self.last = hlc.observe(self.last, remote, self.now_ms())


def application_data(item: Mapping[str, Any], *, settings: Settings) -> dict[str, Any]:
    """``item`` without georep's attributes, as :meth:`GeorepTable.put` writes it.

    ``_georep`` is dropped; ``_georep_ttl`` too if the ``_georep`` beside it marks a
    tombstone (the item was read deleted). Raises MetadataError for any other ``_georep_ttl``.
    """
    data = dict(item)
    copied = data.pop(META_ATTR, None)
    expiry = data.pop(TTL_ATTR, None)
    if expiry is not None and not _is_tombstone(copied, settings=settings):
        raise MetadataError(
            f"{TTL_ATTR} is georep's tombstone expiry, not application data: remove it from "
            "the item (the table's TTL collects deleted items only; GeorepTable does not "
            "expire live items)"
        )
    return data


def _is_tombstone(meta_attr: Any, *, settings: Settings) -> bool:
    if meta_attr is None:
        return False
    try:
        return decode_meta(meta_attr, regions=settings.region_set).deleted
    except MetadataError:
        return False


class GeorepTable:
    def __init__(
        self,
        client: Any,
        *,
        config: Config,
        region: str,
        clock: Clock | None = None,
        settings: Settings | None = None,
    ) -> None:
        self.region = region
        self.settings = settings or config.settings()
        self.horizon_ms = config.horizon_ms
        self.table = DynamoTable(
            client, table_name=config.table_name(region), key_attributes=config.key_attributes
        )
        self.clock = clock or Clock()

    def get(self, key: Mapping[str, Any]) -> dict[str, Any] | None:
        """The item's data, or None if absent or deleted."""
        item = self.table.get(key)
        if item is None:
            return None
        stored = read_item(item, settings=self.settings)
        version = getattr(stored, "version", None)
        if version is not None and version.meta.deleted:
            return None
        return data_of(item)

    def put(self, item: Mapping[str, Any]) -> Version:
        """Write ``item`` as a new version (see the module docstring for ``_georep`` and
        ``_georep_ttl`` in ``item``)."""
        data = application_data(item, settings=self.settings)
        version = self._write(self.settings.keys_of(data), data)
        assert version is not None
        return version

    def put_if_unchanged(
        self, item: Mapping[str, Any], *, read: Mapping[str, Any] | None
    ) -> Version | None:
        """Write ``item`` as a new version succeeding exactly ``read`` (the item as the
        application read it with plain boto3; None: it was absent), or write nothing and return
        None if the item changed since: read again and retry.

        "Changed" is judged as georep's own writes are, on ``_georep`` alone (docs/design.md):
        a raw write that copied ``_georep`` back is not noticed, and is adopted and merged."""
        data = application_data(item, settings=self.settings)
        current = dict(read) if read is not None else None
        written, version, _ = self._attempt(self.settings.keys_of(data), data, current)
        return version if written else None

    def delete(self, key: Mapping[str, Any]) -> Version | None:
        return self._write(dict(key), None)

    def _write(self, key: dict[str, Any], data: dict[str, Any] | None) -> Version | None:
        current_item = self.table.get(key)
        for _ in range(50):
            written, version, current_item = self._attempt(key, data, current_item)
            if written:
                return version
        raise RuntimeError(f"could not write {key}: 50 concurrent writes won first")

    def _attempt(
        self, key: dict[str, Any], data: dict[str, Any] | None, current_item: Any
    ) -> tuple[bool, Version | None, dict[str, Any] | None]:
        """One write of ``data`` (None: a delete) over ``current_item``: (written or nothing
        to do, the version, what the table holds instead when another write got there first)."""
        current = read_item(current_item, settings=self.settings)
        meta = getattr(getattr(current, "version", None), "meta", None)
        if meta is not None:
            self.clock.observe(meta.hlc)
        version = stamp(
            current,
            data,
            region=self.region,
            now_hlc=self.clock.tick(),
            write_id=str(ulid.new()),
            settings=self.settings,
        )
        if version is None:
            return True, None, current_item
        item = encode_item(version, horizon_ms=self.horizon_ms)
        result = self.table.write(key, item, precondition_for(current))
        if result.ok:
            return True, version, None
        return False, version, dict(result.current) if result.current is not None else None
