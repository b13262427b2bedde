"""``georep conflicts list [--region R]``: the conflict log, every region's or one region's.

Each region's consumer (or function) logs the merges it wrote, at any destination, in its own
region's conflict table (service/adapters/conflicts.py); without ``--region`` every configured
region's table is read. One row per merge: when, where it was written, from which region, the key,
the resolver, and which of the two versions won (``blend`` when the resolver kept something of
each). A region whose table does not exist yet has none. Exit codes: 0 listed; 2 an unknown region,
or the log turned off (``[replication] conflict_table`` empty)."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from typing import Any

from service.surfaces.commands._common import (
    GLOBAL_OPTIONS,
    OK,
    USAGE,
    HelpFormatter,
    add_json,
    config_of,
    examples,
    report,
)

NAME = "conflicts"
HELP = "list the merges georep wrote (the conflict log)"
EXAMPLES = (
    ("georep conflicts list", "every region's conflict log, oldest first"),
    ("georep conflicts list --region eu-west-1 --json", "one region's, machine-readable"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    action = actions.add_parser(
        "list",
        help="every logged conflict, oldest first",
        description="List the merges georep wrote, from every region's conflict table (or "
        "one), oldest first: when, where, from which region, the key, the resolver, the winner.",
        epilog=examples(*EXAMPLES),
        formatter_class=HelpFormatter,
        parents=[GLOBAL_OPTIONS],
    )
    action.add_argument(
        "--region", metavar="REGION", help="only the conflicts this region's consumer logged"
    )
    add_json(action)


def execute(args: argparse.Namespace) -> int:
    import time

    from service.adapters.dynamo import unless_missing
    from service.core.conflicts import ConflictEntry
    from service.engine.preflight import probe
    from service.engine.status import at
    from service.engine.wiring import clients_for, conflict_log_for

    config = config_of(args)
    regions = [config.region(args.region).name] if args.region else list(config.region_names)
    if not config.replication.conflict_table:
        print(
            "georep: conflicts: the conflict log is off ([replication] conflict_table)",
            file=sys.stderr,
        )
        return USAGE
    probe(config, regions=regions, tables=False)
    clients = clients_for(config, "dynamodb")
    found: list[tuple[str, ConflictEntry]] = []
    for region in regions:
        log = conflict_log_for(config, clients[region])
        assert log is not None
        found += [(region, entry) for entry in unless_missing(log.entries, [])]
    found.sort(key=lambda pair: (pair[1].at, pair[1].id))
    now = time.time()
    report(
        args,
        title="conflicts",
        columns=("id", "time", "logged in", "merged at", "from", "key", "resolver", "winner"),
        rows=[
            (
                entry.id,
                entry.at if args.json else at(entry.at, now=now),
                region,
                entry.destination,
                entry.source,
                _key(entry.key),
                entry.resolver,
                entry.winner or "blend",
            )
            for region, entry in found
        ],
        summary={"regions": ", ".join(regions), "conflicts": len(found)},
    )
    return OK


def _key(key: Mapping[str, Any]) -> str:
    """``pk=order-42 sk=3`` for people; binary values as Python bytes."""
    parts = []
    for name, value in sorted(key.items()):
        inner = next(iter(value.values()), None) if isinstance(value, Mapping) else value
        parts.append(f"{name}={inner!r}" if isinstance(inner, bytes) else f"{name}={inner}")
    return " ".join(parts)
