"""Embedded DynamoDB backends for integration tests and the demo: one interface, two engines.

- `DynamoDBLocal`: AWS's own engine in a JVM; faithful where a replicator cares (conditional
  writes, stream records, TTL). The default whenever java >= 17 and the jar are here
  (``python -m service.backends.fetch`` installs the jar at install time).
- `MotoServer`: moto in a child Python process with requests serialised; the fallback, with
  documented deviations (docs/backends.md).

Both run as separate processes spoken to over HTTP, so tests exercise the same botocore path
as production and nothing is patched in-process.

>>> with start_backend("auto") as backend:  # doctest: +SKIP
...     dynamodb = backend.client("dynamodb", "eu-west-1")
...     arn = create_replica_table(
...         dynamodb, table_name="orders", partition_key="pk", ttl_attribute="expires_at"
...     )
"""

from __future__ import annotations

from service.backends._ddblocal import DynamoDBLocal, dynamodb_local_unavailable_reason
from service.backends._errors import (
    BackendError,
    BackendStartError,
    BackendUnavailableError,
    FetchError,
    TableSetupError,
)
from service.backends._moto import MotoServer
from service.backends._process import port_is_open
from service.backends._protocol import BackendKind, Credentials, EmbeddedBackend, ServiceName
from service.backends._tables import KeyType, create_replica_table, stream_arn

__all__ = [
    "BackendError",
    "BackendKind",
    "BackendStartError",
    "BackendUnavailableError",
    "Credentials",
    "DynamoDBLocal",
    "EmbeddedBackend",
    "FetchError",
    "KeyType",
    "MotoServer",
    "ServiceName",
    "TableSetupError",
    "create_replica_table",
    "dynamodb_local_unavailable_reason",
    "port_is_open",
    "start_backend",
    "stream_arn",
]


def start_backend(kind: BackendKind = "auto") -> DynamoDBLocal | MotoServer:
    """Start and return a backend; the caller stops it (``with start_backend() as b:``).

    ``"auto"`` picks DynamoDB Local when java >= 17 and the jar cache are present, else moto.
    Asking for ``"dynamodb-local"`` where it cannot run raises `BackendUnavailableError` with
    the reason, rather than silently testing against the less faithful engine.
    """
    backend: DynamoDBLocal | MotoServer
    if kind == "dynamodb-local" or (kind == "auto" and dynamodb_local_unavailable_reason() is None):
        backend = DynamoDBLocal()
    elif kind in ("auto", "moto"):
        backend = MotoServer()
    else:
        raise ValueError(f"unknown backend kind {kind!r}; use 'auto', 'dynamodb-local' or 'moto'")
    return backend.start()
