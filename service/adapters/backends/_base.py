"""What every backend shares: one boto3 client per (service, region), and isolated views."""

from __future__ import annotations

import copy
import threading
from types import TracebackType
from typing import TYPE_CHECKING, Any, Final, Literal, Self, overload

import boto3
from botocore.client import BaseClient
from botocore.config import Config

from service.adapters.backends._errors import BackendError
from service.adapters.backends._protocol import Credentials, ServiceName

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

CLIENT_CONFIG: Final = Config(
    # NOTE: adaptive mode adds client-side rate limiting after the first throttle; the limiter
    # lives in the client, hence one client per (service, region).
    retries={"mode": "adaptive", "max_attempts": 5},
    connect_timeout=2,
    read_timeout=30,
    # Enough for the 8-thread tests plus headroom; botocore's default of 10 would make
    # extra threads wait for a connection and blur contention tests.
    max_pool_connections=32,
)

PROBE_CONFIG: Final = Config(
    # One attempt and short timeouts: the start-up loop polls on its own schedule.
    retries={"mode": "standard", "total_max_attempts": 1},
    connect_timeout=1,
    read_timeout=5,
)


class ClientBackend:
    """Base of `MotoServer` and `Endpoint`: an `EmbeddedBackend` minus how the server is had.

    Subclasses say where the server is (`endpoint_url`), how to start and stop it, what
    credentials a namespace uses, and how to point a client at a namespace.
    """

    def __init__(self, *, name: str, namespace: str) -> None:
        self._name = name
        self._namespace = namespace
        self._owner = True
        self._lock = threading.Lock()
        self._clients: dict[tuple[str, str, str], BaseClient] = {}
        self._session: boto3.session.Session | None = None

    def __repr__(self) -> str:
        endpoint = self.endpoint_url if self.running else "stopped"
        role = "owner" if self._owner else "view"
        return f"<{type(self).__name__} {endpoint} namespace={self._namespace} {role}>"

    @property
    def name(self) -> str:
        return self._name

    @property
    def endpoint_url(self) -> str:
        raise NotImplementedError

    @property
    def running(self) -> bool:
        raise NotImplementedError

    @property
    def namespace(self) -> str:
        """What isolates this backend's databases (a moto account id)."""
        return self._namespace

    def start(self) -> Self:
        if self._owner:
            self._start_server()
        elif not self.running:
            raise BackendError(f"{self!r}: the process behind this view has stopped")
        return self

    def stop(self) -> None:
        with self._lock:
            clients, self._clients = list(self._clients.values()), {}
        for client in clients:
            client.close()
        if self._owner:
            self._stop_server()

    def __enter__(self) -> Self:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def isolated(self) -> Self:
        view = copy.copy(self)
        view._namespace = self._fresh_namespace()
        view._owner = False
        view._lock = threading.Lock()
        view._clients = {}
        view._session = None
        return view

    def credentials_for(self, region: str) -> Credentials:
        raise NotImplementedError

    @overload
    def client(self, service: Literal["dynamodb"], region: str) -> DynamoDBClient: ...

    @overload
    def client(self, service: Literal["dynamodbstreams"], region: str) -> DynamoDBStreamsClient: ...

    def client(self, service: ServiceName, region: str) -> Any:
        if not self.running:
            raise BackendError(f"{self!r} is not running: start it first")
        endpoint = self.endpoint_url
        key = (service, region, endpoint)  # a restarted server has a new port
        with self._lock:  # NOTE: boto3 sessions are not thread-safe; clients are.
            cached = self._clients.get(key)
            if cached is None:
                if self._session is None:
                    self._session = boto3.session.Session()
                cached = self._new_client(
                    self._session, service=service, region=region, endpoint=endpoint
                )
                self._prepare_client(cached)
                self._clients[key] = cached
            return cached

    def _new_client(
        self, session: boto3.session.Session, *, service: str, region: str, endpoint: str
    ) -> BaseClient:
        create: Any = session.client
        client: BaseClient = create(
            service,
            region_name=region,
            endpoint_url=endpoint,
            config=CLIENT_CONFIG,
            **self.credentials_for(region),
        )
        return client

    def _start_server(self) -> None:
        raise NotImplementedError

    def _stop_server(self) -> None:
        raise NotImplementedError

    def _fresh_namespace(self) -> str:
        raise NotImplementedError

    def _prepare_client(self, client: BaseClient) -> None:
        """Point a new client at this backend's namespace, if credentials alone do not."""
