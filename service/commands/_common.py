"""What every command shares: the configuration, reports (a rich table, or ``--json``) and
progress bars (on stderr, so ``--json`` output stays clean)."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from rich.progress import Progress

    from service.config import Config

OK, PROBLEM, USAGE = 0, 1, 2


def config_of(args: argparse.Namespace) -> Config:
    from service.config import load_config

    return load_config(args.config)


def add_json(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--json", action="store_true", help="print one machine-readable JSON document"
    )


def report(
    args: argparse.Namespace,
    *,
    title: str,
    columns: Sequence[str],
    rows: Sequence[Sequence[Any]],
    summary: Mapping[str, Any],
) -> None:
    """Print ``rows`` under ``columns`` and a summary, as a table or (``--json``) as
    ``{"title", "rows": [{column: value}], "summary"}``."""
    if getattr(args, "json", False):
        document = {
            "title": title,
            "rows": [dict(zip(columns, row, strict=True)) for row in rows],
            "summary": dict(summary),
        }
        json.dump(document, sys.stdout, indent=2, default=str)
        sys.stdout.write("\n")
        return
    from rich.console import Console
    from rich.table import Table

    console = Console()
    if rows:
        table = Table(title=title)
        for column in columns:
            table.add_column(column)
        for row in rows:
            table.add_row(*("-" if value is None else str(value) for value in row))
        console.print(table)
    for name, value in summary.items():
        console.print(f"[bold]{name}[/bold]: {value}")


@contextmanager
def progress(args: argparse.Namespace) -> Iterator[Progress]:
    """A rich progress display on stderr (bar, counts, rate, ETA); silent under ``--json``."""
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
    quiet = getattr(args, "json", False)
    with Progress(*columns, console=Console(stderr=True), disable=quiet) as bar:
        yield bar
