"""What went wrong, in one line and an exit code: every command's errors end here."""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ConsumerHaltedError, GeorepError


@dataclass(frozen=True)
class Failure:
    code: int
    line: str


def classify(error: BaseException) -> Failure:
    """The exit code and the one line for an error that ends a command."""
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
    )

    from service.adapters.backends import BackendError

    text = " ".join(str(error).split())
    if isinstance(error, ConsumerHaltedError):  # what retrying cannot fix
        return Failure(1, text)
    if isinstance(
        error, GeorepError | NoCredentialsError | PartialCredentialsError | NoRegionError
    ):
        return Failure(2, text)
    if isinstance(error, BackendError):
        return Failure(1, text)
    if isinstance(error, ClientError | BotoCoreError):
        return Failure(1, f"{type(error).__name__}: {text}")
    return Failure(
        1, f"unexpected {type(error).__name__}: {text} (rerun with --debug for the traceback)"
    )
