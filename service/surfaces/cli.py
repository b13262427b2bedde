"""georep: replicate, onboard, check, repair and watch DynamoDB tables in several regions.

Every command takes -c/--config (before or after the command; default $GEOREP_CONFIG, else
georep.toml), -v (progress logs) and --debug (tracebacks). Results go to stdout, progress and
errors to stderr. Exit codes: 0 success, 1 a check found a problem or the work failed,
2 a usage or configuration error (one line; run georep init for a missing table).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import Any

from service.surfaces.commands import COMMANDS
from service.surfaces.commands._common import GLOBAL_OPTIONS, HelpFormatter, examples

_COMMON = GLOBAL_OPTIONS

EXAMPLES = examples(
    ("georep init", "create or adopt every region's table"),
    ("georep run --region eu-west-1", "one consumer per region"),
    ("georep verify", "exit 0 when every region holds the same"),
    ("georep status --json", "per region, machine-readable"),
    ("georep COMMAND --help", "a command's options and examples"),
)


class _Version(argparse.Action):
    """``--version``: read from the installed package only when asked (keeps --help fast)."""

    def __init__(self, option_strings: Sequence[str], dest: str = argparse.SUPPRESS) -> None:
        super().__init__(
            option_strings, dest=dest, default=argparse.SUPPRESS, nargs=0, help="print the version"
        )

    def __call__(self, parser: argparse.ArgumentParser, *_: Any, **__: Any) -> None:
        from importlib.metadata import PackageNotFoundError, version

        try:
            number = version("georep")
        except PackageNotFoundError:  # run from a source tree that is not installed
            number = "unknown (not installed)"
        print(f"georep {number}")
        parser.exit()


def parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The whole command line. Only the command ``argv`` names has its options added (with
    ``argv`` None: every command): a command's options may need imports that ``georep
    --help`` must not pay for (docs/decisions.md, "A command line people trust")."""
    top = argparse.ArgumentParser(
        prog="georep",
        description=_plain(__doc__),
        epilog=EXAMPLES,
        formatter_class=HelpFormatter,
        parents=[_COMMON],
    )
    top.add_argument("--version", action=_Version)
    sub = top.add_subparsers(dest="command", required=True, metavar="COMMAND")
    wanted = None if argv is None else _command_in(argv)
    for command in COMMANDS:
        child = sub.add_parser(
            command.NAME,
            help=command.HELP,
            description=_plain(command.__doc__),
            epilog=examples(*command.EXAMPLES),
            formatter_class=HelpFormatter,
            parents=[_COMMON],
        )
        if argv is None or wanted == command.NAME:
            command.configure(child)
        child.set_defaults(handler=command.execute)
    return top


def _command_in(argv: Sequence[str]) -> str | None:
    """The command ``argv`` names: its first word that is not an option or an option's value."""
    takes_value = {"-c", "--config"}
    words = iter(argv)
    for word in words:
        if word in takes_value:
            next(words, None)
        elif not word.startswith("-"):
            return word
    return None


def _plain(doc: str | None) -> str:
    """A module docstring as help text: reStructuredText literals become plain quotes."""
    return (doc or "").strip().replace("``", "'")


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    if not argv:  # bare `georep`: what it can do, not an error
        parser(argv).print_help()
        return 0
    args = parser(argv).parse_args(argv)
    args.argv = list(argv)  # as typed: what a command says to run again
    for name, default in (("verbose", False), ("debug", False)):
        if not hasattr(args, name):
            setattr(args, name, default)
    if not hasattr(args, "config"):
        from service.surfaces.commands._common import default_config

        args.config = default_config()
    from service.surfaces.commands._common import configure_logging

    configure_logging(verbose=args.verbose, debug=args.debug)
    try:
        return int(args.handler(args))
    except KeyboardInterrupt:
        print("georep: interrupted", file=sys.stderr)
        return 1
    except Exception as error:
        if args.debug:
            raise
        from service.surfaces.failures import classify

        failure = classify(error)
        print(f"georep: {failure.line}", file=sys.stderr)
        return failure.code


if __name__ == "__main__":
    sys.exit(main())
