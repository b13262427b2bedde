"""DynamoDB Local (AWS's own engine in a JVM): the faithful, default embedded backend."""

from __future__ import annotations

import os
import secrets
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Final

import boto3

from service.backends._base import PROBE_CONFIG, ProcessBackend
from service.backends._errors import BackendUnavailableError
from service.backends._install import (
    LAUNCHER_CLASS,
    MIN_JAVA,
    Installation,
    default_cache_dir,
    find_installation,
    java_major_version,
)
from service.backends._process import LOOPBACK, ManagedProcess
from service.backends._protocol import Credentials

_SECRET: Final = "georep"
_PROBE_KEY: Final = "georepprobe"


def dynamodb_local_unavailable_reason(
    *, cache_dir: Path | None = None, java: str | None = None
) -> str | None:
    """Why DynamoDB Local cannot run here, or None if it can.

    >>> dynamodb_local_unavailable_reason()  # doctest: +SKIP
    'DynamoDB Local is not installed in .cache/dynamodb-local: run python -m service.backends.fetch'
    """
    version = java_major_version(java)
    if version is None:
        return f"DynamoDB Local needs java >= {MIN_JAVA}; no usable java found"
    if version < MIN_JAVA:
        return f"DynamoDB Local needs java >= {MIN_JAVA}; found java {version}"
    root = cache_dir or default_cache_dir()
    if find_installation(root) is None:
        return f"DynamoDB Local is not installed in {root}: run `python -m service.backends.fetch`"
    return None


def _fresh_access_key() -> str:
    # NOTE: DynamoDB Local keeps one database per (access key id, region) and slows down as
    # stream-enabled tables accumulate in a database, even deleted ones (PutItem 290/s fell to
    # 117/s over six runs); a fresh key per backend or view keeps it at 700-780/s. Letters and
    # digits only, which every DynamoDB Local version accepts.
    return f"georep{secrets.token_hex(8)}"


class DynamoDBLocal(ProcessBackend):
    """DynamoDB Local in memory on a free loopback port.

    Needs java >= 17 and the jar in the cache (``python -m service.backends.fetch``); `start`
    raises `BackendUnavailableError` otherwise. Every instance and every `isolated` view uses
    its own access key id, hence its own databases.

    >>> with DynamoDBLocal() as backend:  # doctest: +SKIP
    ...     backend.client("dynamodb", "eu-west-1").list_tables()["TableNames"]
    []
    """

    def __init__(
        self,
        *,
        cache_dir: Path | None = None,
        java: str | None = None,
        jvm_options: Sequence[str] = (),
        start_timeout: float = 60.0,
    ) -> None:
        self._cache_dir = cache_dir
        self._java = java
        self._jvm_options = tuple(jvm_options)
        self._installation: Installation | None = None
        self._probe_clients: dict[str, Any] = {}
        server = ManagedProcess(
            name="dynamodb-local",
            command=self._command,
            probe=self._probe,
            start_timeout=start_timeout,
            # NOTE: DynamoDB Local writes dynamodb-local-metadata.json (a telemetry installation
            # id) into its working directory even with -disableTelemetry; keep it in the cache,
            # out of the repository.
            cwd=cache_dir or default_cache_dir(),
        )
        super().__init__(name="dynamodb-local", server=server, namespace=_fresh_access_key())

    @property
    def binds_loopback_only(self) -> bool:
        """False when the loopback launcher could not be compiled (no javac at fetch time)."""
        return self._installation is not None and self._installation.has_launcher

    def credentials_for(self, region: str) -> Credentials:
        # The region is not part of the key: DynamoDB Local already keys databases by region.
        return Credentials(aws_access_key_id=self._namespace, aws_secret_access_key=_SECRET)

    def _fresh_namespace(self) -> str:
        return _fresh_access_key()

    def _check_available(self) -> None:
        reason = dynamodb_local_unavailable_reason(cache_dir=self._cache_dir, java=self._java)
        if reason is not None:
            raise BackendUnavailableError(reason)
        self._installation = find_installation(self._cache_dir or default_cache_dir())

    def _command(self, port: int) -> list[str]:
        installation = self._installation
        assert installation is not None, "_check_available runs before the first launch"
        java = self._java or shutil.which("java") or "java"
        common = [java, f"-Djava.library.path={installation.lib_dir}", *self._jvm_options]
        arguments = ["-inMemory", "-port", str(port), "-disableTelemetry"]
        if installation.has_launcher:
            class_path = os.pathsep.join([str(installation.jar), str(installation.launcher_dir)])
            return [
                *common,
                f"-Dgeorep.host={LOOPBACK}",
                "-cp",
                class_path,
                LAUNCHER_CLASS,
                *arguments,
            ]
        # Without the launcher DynamoDB Local listens on every interface (it has no host flag).
        return [*common, "-jar", str(installation.jar), *arguments]

    def _probe(self, endpoint: str) -> None:
        client = self._probe_clients.get(endpoint)
        if client is None:
            # A key of its own, so probing never creates a database in a namespace in use.
            client = boto3.session.Session().client(
                "dynamodb",
                region_name="us-east-1",
                endpoint_url=endpoint,
                aws_access_key_id=_PROBE_KEY,
                aws_secret_access_key=_SECRET,
                config=PROBE_CONFIG,
            )
            self._probe_clients = {endpoint: client}
        client.list_tables(Limit=1)
