"""moto's server, with requests serialised: the embedded backend."""

from __future__ import annotations

import importlib.util
import os
import secrets
import sys
from pathlib import Path
from typing import Any, Final

import boto3
from botocore.awsrequest import AWSRequest
from botocore.client import BaseClient

from service.adapters.backends._base import PROBE_CONFIG, ClientBackend
from service.adapters.backends._errors import BackendUnavailableError
from service.adapters.backends._process import LOOPBACK, ManagedProcess
from service.adapters.backends._protocol import Credentials

_ACCOUNT_HEADER: Final = "x-moto-account-id"
# The folder that holds the `service` package, so the child finds the launcher even when
# georep is not installed into the interpreter.
_IMPORT_ROOT: Final = Path(__file__).resolve().parents[2]
_REQUIRED_MODULES: Final = ("moto", "flask", "werkzeug")


def _fresh_account_id() -> str:
    # moto keeps state per account and region; the account comes from a header, not from the
    # access key, so each backend or view gets a random 12-digit account of its own.
    return f"{secrets.randbelow(10**12):012d}"


class MotoServer(ClientBackend):
    """A moto server (``service.adapters.backends._moto_serial``) on a free loopback port.

    Requests are handled one at a time, which makes conditional writes atomic; see the
    launcher's docstring and docs/backends.md for the deviations that remain.

    >>> with MotoServer() as backend:  # doctest: +SKIP
    ...     backend.client("dynamodb", "eu-west-1").list_tables()["TableNames"]
    []
    """

    def __init__(self, *, python: str | None = None, start_timeout: float = 30.0) -> None:
        self._python = python or sys.executable
        self._probe_clients: dict[str, tuple[Any, Any]] = {}
        env = {key: value for key, value in os.environ.items() if key != "MOTO_ACCOUNT_ID"}
        # NOTE: MOTO_ACCOUNT_ID would override the per-request account header and so merge
        # every isolated view into one account.
        env["PYTHONPATH"] = os.pathsep.join(
            [str(_IMPORT_ROOT), *filter(None, [os.environ.get("PYTHONPATH")])]
        )
        self._server = ManagedProcess(
            name="moto",
            command=self._command,
            probe=self._probe,
            start_timeout=start_timeout,
            env=env,
        )
        super().__init__(name="moto", namespace=_fresh_account_id())

    @property
    def endpoint_url(self) -> str:
        return self._server.endpoint_url

    @property
    def running(self) -> bool:
        return self._server.running

    @property
    def process(self) -> ManagedProcess:
        """The process behind this backend (port, pid, start-up time), shared by its views."""
        return self._server

    def _start_server(self) -> None:
        self._check_available()
        self._server.start()

    def _stop_server(self) -> None:
        self._server.stop()

    def credentials_for(self, region: str) -> Credentials:
        # moto ignores the key (any value signs); the account comes from the header.
        return Credentials(aws_access_key_id="testing", aws_secret_access_key="testing")

    def _fresh_namespace(self) -> str:
        return _fresh_account_id()

    def _prepare_client(self, client: BaseClient) -> None:
        account = self._namespace

        def add_account_header(request: AWSRequest, **_: object) -> None:
            request.headers[_ACCOUNT_HEADER] = account

        client.meta.events.register("before-sign", add_account_header)

    def _check_available(self) -> None:
        if self._python != sys.executable:
            return  # another interpreter: let a failed start say what is missing
        missing = [name for name in _REQUIRED_MODULES if importlib.util.find_spec(name) is None]
        if missing:
            raise BackendUnavailableError(
                f"moto server needs {', '.join(missing)}: install moto[server]"
            )

    def _command(self, port: int) -> list[str]:
        return [
            self._python,
            "-m",
            "service.adapters.backends._moto_serial",
            "--host",
            LOOPBACK,
            "--port",
            str(port),
        ]

    def _probe(self, endpoint: str) -> None:
        if endpoint not in self._probe_clients:
            session = boto3.session.Session()
            common: dict[str, Any] = {
                "region_name": "us-east-1",
                "endpoint_url": endpoint,
                "aws_access_key_id": "testing",
                "aws_secret_access_key": "testing",
                "config": PROBE_CONFIG,
            }
            self._probe_clients = {
                endpoint: (
                    session.client("dynamodb", **common),
                    session.client("dynamodbstreams", **common),
                )
            }
        dynamodb, streams = self._probe_clients[endpoint]
        # Each service's Flask app is built on its first request; do it now, not in a test.
        dynamodb.list_tables(Limit=1)
        streams.list_streams(Limit=1)
