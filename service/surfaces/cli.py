"""The ``georep`` command: replicate, onboard, check, repair and watch DynamoDB regions.

Every command takes ``-c/--config`` (before or after the command; default georep.toml).
Exit codes: 0 success, 1 a check found a problem or the work failed, 2 usage or
configuration error. Errors are one line; ``--debug`` shows the traceback.
"""

from __future__ import annotations

import argparse
import logging
import sys

from service.errors import ConsumerHaltedError, GeorepError
from service.surfaces.commands import COMMANDS
from service.surfaces.commands._common import GLOBAL_OPTIONS

_COMMON = GLOBAL_OPTIONS


def parser() -> argparse.ArgumentParser:
    top = argparse.ArgumentParser(prog="georep", description=_plain(__doc__), parents=[_COMMON])
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        doc = _plain(command.__doc__)
        child = sub.add_parser(command.NAME, help=command.HELP, description=doc, parents=[_COMMON])
        command.configure(child)
        child.set_defaults(handler=command.execute)
    return top


def _plain(doc: str | None) -> str:
    """A module docstring as help text: reStructuredText literals become plain quotes."""
    return (doc or "").strip().replace("``", "'")


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    for name, default in (("config", "georep.toml"), ("verbose", False), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    logging.basicConfig(
        level=logging.DEBUG if args.debug else logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("georep: interrupted", file=sys.stderr)
        return 1
    except Exception as error:
        if args.debug:
            raise
        code, line = _one_line(error)
        print(f"georep: {line}", file=sys.stderr)
        return code


def _one_line(error: Exception) -> tuple[int, str]:
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
        return 1, text
    if isinstance(
        error, GeorepError | NoCredentialsError | PartialCredentialsError | NoRegionError
    ):
        return 2, text
    if isinstance(error, BackendError):
        return 1, text
    if isinstance(error, ClientError | BotoCoreError):
        return 1, f"{type(error).__name__}: {text}"
    return 1, f"unexpected {type(error).__name__}: {text} (rerun with --debug for the traceback)"


if __name__ == "__main__":
    sys.exit(main())
