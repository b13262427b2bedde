"""The one interface every embedded backend implements."""

from __future__ import annotations

from types import TracebackType
from typing import TYPE_CHECKING, Literal, Protocol, Self, TypedDict, overload

if TYPE_CHECKING:
    from mypy_boto3_dynamodb import DynamoDBClient
    from mypy_boto3_dynamodbstreams import DynamoDBStreamsClient

ServiceName = Literal["dynamodb", "dynamodbstreams"]
BackendKind = Literal["auto", "moto", "endpoint"]


class Credentials(TypedDict):
    """Keyword arguments for ``boto3.client(...)``: ``boto3.client("dynamodb", **creds)``."""

    aws_access_key_id: str
    aws_secret_access_key: str


class EmbeddedBackend(Protocol):
    """A DynamoDB + DynamoDB Streams server reachable over plain HTTP.

    Contract, checked for the moto server by ``tests/integration/test_backends.py`` (an
    `Endpoint` is the user's server: georep promises nothing about it beyond the HTTP APIs):

    - One process serves every region, and each region is a separate database: a table, item
      or stream record made through one region's client is invisible to another region's.
    - `client` returns one boto3 client per (service, region), created on first use and then
      reused, because boto3's adaptive retry mode keeps its rate limiter inside the client.
    - Records do not name their source region truthfully (moto says ``us-east-1`` whatever
      the region, and ignores the region inside a stream ARN): whoever reads a stream must
      take the source region from configuration, i.e. from the client it used.
    - `isolated` returns a view on the same process whose clients see empty databases of
      their own, so tests can share one slow-to-start process yet never see each other's
      tables. Stopping a view closes its clients only; stopping the backend that started the
      process ends the process.
    - `start` is idempotent and returns the backend; ``with backend:`` starts and stops it.
    """

    @property
    def name(self) -> str:
        """``"moto"`` or ``"endpoint"``, for messages and test ids."""
        ...

    @property
    def endpoint_url(self) -> str:
        """``http://127.0.0.1:<port>``, valid while the backend runs."""
        ...

    def start(self) -> Self: ...

    def stop(self) -> None: ...

    def __enter__(self) -> Self: ...

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None: ...

    def credentials_for(self, region: str) -> Credentials:
        """The access key to sign requests to `region` with.

        On moto any key signs; the account (the database) is selected by a header that only
        `client` adds: build clients with `client` to stay inside an isolated view.
        """
        ...

    @overload
    def client(self, service: Literal["dynamodb"], region: str) -> DynamoDBClient: ...

    @overload
    def client(self, service: Literal["dynamodbstreams"], region: str) -> DynamoDBStreamsClient: ...

    def isolated(self) -> Self:
        """A view on the same running process with fresh, empty databases in every region."""
        ...
