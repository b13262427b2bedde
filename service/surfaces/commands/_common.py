"""What every command shares: the configuration, reports (a rich table, or ``--json``) and
progress bars (on stderr, so ``--json`` output stays clean)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast

if TYPE_CHECKING:
    from rich.progress import Progress

    from service.config import Config

OK, PROBLEM, USAGE = 0, 1, 2

CONFIG_ENV = "GEOREP_CONFIG"


def default_config() -> str:
    """The configuration path when ``-c`` is not given: ``$GEOREP_CONFIG``, else georep.toml
    (the Lambda handler reads the same variable)."""
    import os

    return os.environ.get(CONFIG_ENV) or "georep.toml"


class HelpFormatter(argparse.RawDescriptionHelpFormatter):
    """Descriptions and examples as written (their line breaks kept), option help wrapped."""


def examples(*lines: tuple[str, str]) -> str:
    """An ``examples:`` block for a help text: each command with what it does."""
    if not lines:
        return ""
    width = max(len(command) for command, _ in lines)
    body = "\n".join(f"  {command.ljust(width)}  # {what}" for command, what in lines)
    return f"examples:\n{body}"


LOG_FORMAT = "%(asctime)s [%(process)d] %(levelname)s %(name)s: %(message)s"


def configure_logging(*, verbose: bool, debug: bool) -> None:
    """One log format for every logger (georep's, botocore's, urllib3's), on stderr."""
    import logging

    logging.basicConfig(
        level=logging.DEBUG if debug else logging.INFO if verbose else logging.WARNING,
        format=LOG_FORMAT,
        stream=sys.stderr,
        force=True,
    )
    import warnings

    # Python's warnings in the same format, as one line each, not their own two-line form.
    warnings.formatwarning = _one_line_warning
    logging.captureWarnings(True)


def _one_line_warning(
    message: Warning | str,
    category: type[Warning],
    filename: str,
    lineno: int,
    line: str | None = None,
) -> str:
    return f"{category.__name__}: {message} ({filename}:{lineno})"


def _global_options() -> argparse.ArgumentParser:
    options = argparse.ArgumentParser(add_help=False)
    options.add_argument(
        "-c",
        "--config",
        default=argparse.SUPPRESS,
        metavar="PATH",
        help=f"path to georep.toml (default ${CONFIG_ENV}, else georep.toml)",
    )
    options.add_argument(
        "-v",
        "--verbose",
        action="store_true",
        default=argparse.SUPPRESS,
        help="log what georep does (INFO level) on stderr",
    )
    options.add_argument(
        "--debug", action="store_true", default=argparse.SUPPRESS, help="show tracebacks"
    )
    return options


# -c/--config, -v and --debug, accepted before or after a command (and a subcommand's action:
# a parent of every parser that parses arguments).
GLOBAL_OPTIONS = _global_options()


def config_of(args: argparse.Namespace) -> Config:
    from service.config import load_config
    from service.engine.preflight import check_region_names

    config = load_config(args.config)
    check_region_names(config)
    return config


def add_backend_options(parser: argparse.ArgumentParser) -> None:
    """``--backend`` and ``--endpoint-url``, as the demo and the benchmarks take them; pass
    the parsed values to `service.adapters.backends.start_backend`. Defined here, not beside
    it, so that `georep demo --help` imports nothing heavy."""
    parser.add_argument(
        "--backend",
        default="auto",
        choices=["auto", "moto", "endpoint"],
        help="auto/moto: the embedded moto server; endpoint: your own server at --endpoint-url",
    )
    parser.add_argument("--endpoint-url", default=None, help="with --backend endpoint")


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one machine-readable JSON document"
    )


class Key(dict[str, Any]):
    """An item's primary key as plain values (``{"pk": "cart#1"}``): an object in ``--json``,
    ``pk=cart#1`` in a table."""


def plain(values: Mapping[str, Any]) -> dict[str, Any]:
    """DynamoDB attribute values as plain JSON values, by boto3's own deserializer: numbers as
    numbers, sets and lists as lists (sets sorted), binary as base64 text."""
    from boto3.dynamodb.types import TypeDeserializer

    deserializer = TypeDeserializer()
    return {name: _jsonable(deserializer.deserialize(values[name])) for name in sorted(values)}


def key_of(values: Mapping[str, Any]) -> Key:
    return Key(plain(values))


def _jsonable(value: Any) -> Any:
    import base64
    import decimal

    from boto3.dynamodb.types import Binary

    if isinstance(value, decimal.Decimal):
        return int(value) if value == value.to_integral_value() else float(value)
    if isinstance(value, Binary):
        return base64.b64encode(cast("bytes", value.__bytes__())).decode()
    if isinstance(value, bytes | bytearray):
        return base64.b64encode(value).decode()
    if isinstance(value, set | frozenset):
        return sorted((_jsonable(v) for v in value), key=lambda v: (str(type(v)), v))
    if isinstance(value, list):
        return [_jsonable(v) for v in value]
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in sorted(value.items())}
    return value


def label(name: str) -> str:
    """A JSON name as a table's heading or a summary's word: ``items_compared`` -> ``items
    compared``. One vocabulary for both (docs/cli.md)."""
    return name.replace("_", " ")


def cell(value: Any) -> str:
    """A typed value as a table shows it: lists comma-separated, a key ``pk=cart#1``, other
    objects as compact JSON, nothing as ``-``."""
    if value is None:
        return "-"
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, Key):
        return " ".join(f"{name}={cell(v)}" for name, v in value.items())
    if isinstance(value, list | tuple):
        return ", ".join(cell(v) for v in value) or "none"
    if isinstance(value, Mapping):
        return json.dumps(value, sort_keys=True, ensure_ascii=False, default=str)
    if isinstance(value, float):
        return f"{value:g}"
    return str(value)


@dataclass(frozen=True)
class Section:
    """A second table of a report: under ``key`` in ``--json``, printed after the first."""

    key: str
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[Any]]


def report(
    args: argparse.Namespace,
    *,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    summary: Mapping[str, Any],
    sections: Sequence[Section] = (),
) -> None:
    """Print ``rows`` under ``columns``, any further ``sections``, and a summary, as tables or
    (``--json``) as ``{"title", "rows": [{column: value}], <section key>: [...], "summary"}``.

    Column and summary names are snake_case: the JSON keys as given, the tables' headings and
    words with spaces (`label`). Values are typed (numbers, lists, `Key` objects, None): JSON
    keeps them, tables show them with `cell`, as text, never read as rich markup."""
    if getattr(args, "json", False):
        document: dict[str, Any] = {
            "title": title,
            "rows": [dict(zip(columns, row, strict=True)) for row in rows],
        }
        for section in sections:
            document[section.key] = [
                dict(zip(section.columns, row, strict=True)) for row in section.rows
            ]
        document["summary"] = dict(summary)
        json.dump(document, sys.stdout, indent=2, default=str, ensure_ascii=False)
        sys.stdout.write("\n")
        return
    from rich.markup import escape
    from rich.table import Table

    console = _stdout_console()
    for name, head, rows_ in (
        (title, columns, rows),
        *((s.title, s.columns, s.rows) for s in sections),
    ):
        if not rows_:
            continue
        table = Table(title=escape(name))
        for column in head:
            # NOTE: fold, never "…": an id or a key cut short cannot be copied (issue 18).
            table.add_column(escape(label(column)), overflow="fold")
        for row in rows_:
            table.add_row(*(escape(cell(value)) for value in row))
        console.print(table)
    for name, value in summary.items():
        console.print(f"[bold]{escape(label(name))}[/bold]: {escape(cell(value))}")


def _stdout_console() -> Any:
    """A terminal's width for a terminal; piped (``georep status | cat``), a width nothing
    has to be folded into: a line per row, whole ids and keys, for grep and for people."""
    from rich.console import Console

    console = Console()
    if console.is_terminal:
        return console
    return Console(width=PIPED_WIDTH, no_color=True)


# Wide enough for any row georep prints; rich sizes each table to its content, not to this.
PIPED_WIDTH = 100_000


@contextmanager
def progress(args: argparse.Namespace, *, shown: bool = True) -> Iterator[Progress]:
    """A rich progress display on stderr (bar, counts, rate, ETA); silent under ``--json``, and
    when not ``shown`` (work too short for a bar: one key)."""
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TaskProgressColumn,
        TextColumn,
        TimeElapsedColumn,
        TimeRemainingColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TaskProgressColumn(),
        TimeElapsedColumn(),
        TimeRemainingColumn(),
    )
    quiet = getattr(args, "json", False) or not shown
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        yield bar


def add_table(parser: argparse.ArgumentParser, what: str) -> None:
    """``--table NAME``: one of the configured tables (``[table]``/``[[tables]]`` name).
    ``what`` says what the command does without it."""
    parser.add_argument(
        "--table",
        default=None,
        metavar="NAME",
        help=f"only this configured table ([[tables]] name); without it: {what}",
    )


def tables_of(args: argparse.Namespace, config: Config) -> tuple[Config, ...]:
    """The configuration scoped to ``--table``, or to each configured table without it."""
    name = getattr(args, "table", None)
    return (config.for_table(name),) if name is not None else config.scoped()


def table_of(args: argparse.Namespace, config: Config) -> Config:
    """The configuration scoped to ``--table``; without it, to the one table configured (a
    configuration error, exit 2, naming the tables when there are several)."""
    return config.for_table(getattr(args, "table", None))
