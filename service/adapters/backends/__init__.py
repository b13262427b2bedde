"""The embedded DynamoDB backend for tests, the demo and the benchmarks, and its alternative.

- `MotoServer`: moto (Apache-2.0) in a child Python process on a free loopback port, with
  requests serialised so conditional writes are atomic. It speaks the real DynamoDB and
  DynamoDB Streams HTTP APIs; its documented deviations are in docs/backends.md.
- `Endpoint`: any DynamoDB-compatible server the user runs themselves (``--backend endpoint
  --endpoint-url URL``). georep never fetches, starts or requires one.

Both are spoken to over HTTP, so tests exercise the same botocore path as production and
nothing is patched in-process.

>>> with start_backend("auto") as backend:  # doctest: +SKIP
...     dynamodb = backend.client("dynamodb", "eu-west-1")
...     arn = create_replica_table(
...         dynamodb, table_name="orders", partition_key="pk", ttl_attribute="expires_at"
...     )
"""

from __future__ import annotations

from service.adapters.backends._endpoint import Endpoint
from service.adapters.backends._errors import (
    BackendError,
    BackendStartError,
    BackendUnavailableError,
    TableSetupError,
)
from service.adapters.backends._moto import MotoServer
from service.adapters.backends._process import port_is_open
from service.adapters.backends._protocol import (
    BackendKind,
    Credentials,
    EmbeddedBackend,
    ServiceName,
)
from service.adapters.backends._tables import (
    KeyType,
    create_replica_table,
    onboard_table,
    stream_arn,
)

__all__ = [
    "BackendError",
    "BackendKind",
    "BackendStartError",
    "BackendUnavailableError",
    "Credentials",
    "EmbeddedBackend",
    "Endpoint",
    "KeyType",
    "MotoServer",
    "ServiceName",
    "TableSetupError",
    "create_replica_table",
    "onboard_table",
    "port_is_open",
    "start_backend",
    "stream_arn",
]


def start_backend(
    kind: BackendKind = "auto", *, endpoint_url: str | None = None
) -> MotoServer | Endpoint:
    """Start and return a backend; the caller stops it (``with start_backend() as b:``).

    ``"auto"`` and ``"moto"`` start the serialised moto server (the one embedded engine);
    ``"endpoint"`` uses the server at ``endpoint_url`` that the user runs, and starts nothing.
    """
    if kind in ("auto", "moto"):
        if endpoint_url is not None:
            raise ValueError(f"--endpoint-url goes with --backend endpoint, not {kind!r}")
        return MotoServer().start()
    if kind == "endpoint":
        if not endpoint_url:
            raise ValueError("--backend endpoint needs --endpoint-url URL")
        return Endpoint(endpoint_url).start()
    raise ValueError(f"unknown backend kind {kind!r}; use 'auto', 'moto' or 'endpoint'")
