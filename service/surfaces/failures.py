"""Every command's errors end here: what went wrong, as one line and an exit code.

:func:`classify` sorts an exception into a kind, and each kind has one exit code and one
piece of advice, whichever command met it (docs/cli.md, "Errors"):

=============  ====  ============================================================
kind           exit  what it means
=============  ====  ============================================================
config         2     georep.toml, an option, or a table that does not fit it
credentials    2     no usable AWS credentials, or AWS rejected them
table          2     the region's table does not exist: run georep init
permission     2     the credentials may not do what the command needs
unreachable    1     nothing answered at the region's endpoint (or no network)
throttled      1     DynamoDB still throttled after botocore's retries
service        1     AWS or the emulator failed (5xx, an unexpected refusal)
backend        1     the embedded backend could not start
unexpected     1     anything else (``--debug`` shows the traceback)
=============  ====  ============================================================

A failure in one region (service.engine.preflight.RegionError) is prefixed with the region and
the table: ``region eu-west-1, table orders: ...``.
"""

from __future__ import annotations

from dataclasses import dataclass

from service.errors import ConsumerHaltedError, GeorepError

CREDENTIALS_ADVICE = (
    "set AWS_PROFILE, or AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY, or run with an IAM role"
)

_REJECTED = frozenset(
    {
        "UnrecognizedClientException",
        "InvalidClientTokenId",
        "InvalidSignatureException",
        "IncompleteSignatureException",
        "MissingAuthenticationTokenException",
        "ExpiredTokenException",
    }
)
_DENIED = frozenset({"AccessDeniedException", "AccessDenied", "UnauthorizedOperation"})


@dataclass(frozen=True)
class Failure:
    kind: str
    code: int
    line: str


def classify(error: BaseException) -> Failure:
    """The kind, exit code and one line for an error that ends a command."""
    from service.engine.preflight import RegionError

    if isinstance(error, RegionError):
        inner = _cause(error.cause, endpoint=error.endpoint, table=error.table)
        if inner.kind == "credentials":  # not about one region: the same line everywhere
            return inner
        return Failure(inner.kind, inner.code, f"region {error.region}, {inner.line}")
    return _cause(error, endpoint=None, table=None)


def _cause(error: BaseException, *, endpoint: str | None, table: str | None) -> Failure:
    from botocore.exceptions import (
        BotoCoreError,
        ClientError,
        CredentialRetrievalError,
        HTTPClientError,
        NoCredentialsError,
        NoRegionError,
        PartialCredentialsError,
        SSOError,
        TokenRetrievalError,
    )
    from botocore.exceptions import ConnectionError as BotoConnectionError

    from service.adapters.backends import BackendError
    from service.engine.wiring import THROTTLES

    text = " ".join(str(error).split())
    where = f"table {table}: " if table else ""
    if isinstance(error, ConsumerHaltedError):  # what retrying cannot fix, said by the consumer
        return Failure("halted", 1, text)
    if isinstance(
        error,
        NoCredentialsError
        | PartialCredentialsError
        | CredentialRetrievalError
        | TokenRetrievalError
        | SSOError,
    ):
        return Failure(
            "credentials", 2, f"no usable AWS credentials ({text}): {CREDENTIALS_ADVICE}"
        )
    if isinstance(error, NoRegionError):
        return Failure("config", 2, f"{text}: name the region in georep.toml [[regions]]")
    if isinstance(error, GeorepError):
        return Failure("config", 2, text)
    if isinstance(error, BackendError):
        return Failure("backend", 1, text)
    if isinstance(error, BotoConnectionError | HTTPClientError):
        target = endpoint or "the region's endpoint"
        fix = (
            "is the server running there? (endpoint_url in georep.toml; georep backend starts one)"
            if endpoint and not _is_aws(endpoint)
            else "check the network and any proxy"
        )
        return Failure("unreachable", 1, f"{where}cannot reach {target} ({_reason(error)}): {fix}")
    if isinstance(error, ClientError):
        code = str(error.response.get("Error", {}).get("Code", ""))
        message = " ".join(str(error.response.get("Error", {}).get("Message", "")).split())
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        if code in _REJECTED:
            return Failure(
                "credentials", 2, f"AWS rejected the credentials ({code}): {CREDENTIALS_ADVICE}"
            )
        if code == "ResourceNotFoundException":
            return Failure(
                "table",
                2,
                f"{where}does not exist: run georep init (or set [[regions]] table, with "
                "[[tables]] the table's name_in, in georep.toml if it has another name)",
            )
        if code in _DENIED:
            return Failure(
                "permission",
                2,
                f"{where}access denied ({message or code}): grant these credentials "
                f"dynamodb:{error.operation_name} on it",
            )
        if code in THROTTLES:
            return Failure(
                "throttled",
                1,
                f"{where}still throttled after retries ({code}): raise the table's capacity, "
                "or run again later",
            )
        kind = "service" if status >= 500 else "refused"
        return Failure(kind, 1, f"{where}{error.operation_name} failed ({code}: {message})")
    if isinstance(error, BotoCoreError):
        return Failure("service", 1, f"{where}{text}")
    return Failure(
        "unexpected",
        1,
        f"unexpected {type(error).__name__}: {text} (rerun with --debug for the traceback)",
    )


def _is_aws(endpoint: str) -> bool:
    from urllib.parse import urlsplit

    host = urlsplit(endpoint).hostname or ""
    return host.endswith((".amazonaws.com", ".amazonaws.com.cn", ".api.aws"))


def _reason(error: BaseException) -> str:
    """A connection error's cause in a few words: refused, timed out, name not resolved."""
    inner = getattr(error, "kwargs", {}).get("error")  # what urllib3 said, under botocore's
    text = f"{error} {inner or ''}".lower()
    for needle, words in (
        ("refused", "connection refused"),
        ("timed out", "connection timed out"),
        ("timeout", "connection timed out"),
        ("name or service not known", "host name not resolved"),
        ("nodename nor servname", "host name not resolved"),
        ("temporary failure in name resolution", "host name not resolved"),
    ):
        if needle in text:
            return words
    return "no answer"
