"""Writing through georep: the application stamps metadata in the same request.

    table = GeorepTable(client, config=config, region="eu-west-1")
    version = table.put({"pk": {"S": "user#1"}, "name": {"S": "Ada"}})
    table.delete({"pk": {"S": "user#1"}})

Each write reads the current item, stamps the new version (version vector, HLC, write id,
digest) and writes it with a precondition on what it read; if another write got there first,
it reads again. Reads through :meth:`get` hide tombstones and metadata.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import ulid

from service.config import Config
from service.core import hlc
from service.core.apply import Settings, precondition_for, read_item, stamp
from service.core.version import Version, data_of, encode_item
from service.dynamo import DynamoTable


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
        version = self._write(self.settings.keys_of(item), dict(item))
        assert version is not None
        return version

    def delete(self, key: Mapping[str, Any]) -> Version | None:
        return self._write(dict(key), None)

    def _write(self, key: dict[str, Any], data: dict[str, Any] | None) -> Version | None:
        current_item = self.table.get(key)
        for _ in range(50):
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
                return None
            item = encode_item(version, horizon_ms=self.horizon_ms)
            result = self.table.write(key, item, precondition_for(current))
            if result.ok:
                return version
            current_item = dict(result.current) if result.current is not None else None
        raise RuntimeError(f"could not write {key}: 50 concurrent writes won first")
