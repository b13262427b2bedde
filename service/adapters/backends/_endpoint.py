"""A DynamoDB-compatible server the user runs themselves, reached at a URL they give.

georep starts, fetches and requires nothing here: the user's server (DynamoDB Local, another
emulator, a compatible database) is theirs to run and to license. Credentials come from the
usual boto3 chain (environment, profile); emulators accept any, so a dummy pair is used when
the chain has none.
"""

from __future__ import annotations

import boto3

from service.adapters.backends._base import ClientBackend
from service.adapters.backends._errors import BackendUnavailableError
from service.adapters.backends._protocol import Credentials


class Endpoint(ClientBackend):
    """``--backend endpoint --endpoint-url http://127.0.0.1:8000``: nothing to start or stop.

    It cannot give isolated databases (there is no namespace georep controls): callers keep
    apart by table name, as `service.surfaces.local.local_replica_set` does.
    """

    def __init__(self, endpoint_url: str) -> None:
        super().__init__(name="endpoint", namespace=endpoint_url)
        self._url = endpoint_url.rstrip("/")

    @property
    def endpoint_url(self) -> str:
        return self._url

    @property
    def running(self) -> bool:
        return True

    def credentials_for(self, region: str) -> Credentials:
        found = boto3.session.Session().get_credentials()
        frozen = found.get_frozen_credentials() if found is not None else None
        if frozen is None or not frozen.access_key or not frozen.secret_key:
            return Credentials(aws_access_key_id="georep", aws_secret_access_key="georep")
        return Credentials(
            aws_access_key_id=frozen.access_key, aws_secret_access_key=frozen.secret_key
        )

    def _start_server(self) -> None:
        """Nothing to start: the user runs the server."""

    def _stop_server(self) -> None:
        """Nothing to stop: the server outlives georep."""

    def _fresh_namespace(self) -> str:
        raise BackendUnavailableError(
            f"{self._url} is the user's own server: georep cannot give it isolated databases; "
            "keep apart by table name"
        )
