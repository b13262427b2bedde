"""``georep conflicts list [--region R] [--table T] [--key K] [--since WHEN] [--limit N]``: the
conflict log, every region's or one region's, every table's or one table's, all of it or one
key's, the recent part (``--key`` needs ``--table`` when several tables are configured).

Each region's consumer (or function) logs the merges it wrote, at any destination, in its own
region's conflict table (service/adapters/conflicts.py); without ``--region`` every configured
region's table is read. One row per merge: when, where it was written, from which region, the key,
the resolver, which of the two versions won (``blend`` when the resolver kept something of
each), each version (its region, a write or a delete, and the table it came from: the
destination's table or, for a tombstone with ``[replication] tombstone_store``, its tombstone
store; the source's table for the incoming one) and whether the result is deleted. A region
whose table does not exist yet has none. Exit codes: 0 listed; 2 an unknown region,
or the log turned off (``[replication] conflict_table`` empty)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from service.surfaces.commands._common import (
    GLOBAL_OPTIONS,
    OK,
    USAGE,
    HelpFormatter,
    Key,
    add_json,
    add_table,
    config_of,
    examples,
    key_of,
    report,
)

if TYPE_CHECKING:
    from service.config import Config
    from service.core.conflicts import ConflictEntry, ConflictInput, Side

NAME = "conflicts"
HELP = "list the merges georep wrote (the conflict log)"
EXAMPLES = (
    ("georep conflicts list", "every region's conflict log, oldest first"),
    ("georep conflicts list --key 'cart#1' --since 1h", "one key's merges of the last hour"),
    ("georep conflicts list --limit 20 --json", "the 20 most recent, machine-readable"),
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
    add_table(action, "every configured table's")
    action.add_argument(
        "--key", metavar="VALUE", help="only this item's conflicts: its partition key value"
    )
    action.add_argument(
        "--sort-key", metavar="VALUE", help="and its sort key value (tables with a sort key)"
    )
    action.add_argument(
        "--since",
        type=_since,
        metavar="WHEN",
        help="only conflicts logged since WHEN: a duration ago (90s, 15m, 2h, 7d) or a UTC "
        "time (2026-11-30T08:00:00)",
    )
    action.add_argument(
        "--limit",
        type=_limit,
        metavar="N",
        help="only the N most recent (still printed oldest first)",
    )
    add_json(action)


_UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86_400}


def _since(text: str) -> float:
    """Epoch seconds: ``15m`` ago, or a UTC time in ISO 8601."""
    import datetime as dt
    import re
    import time

    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([smhd])\s*", text)
    if match:
        return time.time() - float(match.group(1)) * _UNITS[match.group(2)]
    try:
        when = dt.datetime.fromisoformat(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is neither a duration (90s, 15m, 2h, 7d) nor a time "
            "(2026-11-30T08:00:00, UTC unless it says otherwise)"
        ) from None
    return (when if when.tzinfo else when.replace(tzinfo=dt.UTC)).timestamp()


def _limit(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


COLUMNS = (
    "id",
    "at",
    "logged_in",
    "table",
    "destination",
    "source",
    "key",
    "resolver",
    "winner",
    "existing",
    "incoming",
    "result",
)


def execute(args: argparse.Namespace) -> int:
    import time
    from dataclasses import replace

    from service.adapters.dynamo import unless_missing
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
    if args.table is not None:
        config.for_table(args.table)  # an unknown table: exit 2
    wanted = None
    if args.key is not None or args.sort_key is not None:
        wanted = _wanted_key(args, config.for_table(args.table))
    probe(config, regions=regions, tables=False)
    clients = clients_for(config, "dynamodb")
    found: list[tuple[str, ConflictEntry]] = []
    for region in regions:
        log = conflict_log_for(config, clients[region])
        assert log is not None
        found += [(region, entry) for entry in unless_missing(log.entries, [])]
    logged = len(found)
    # NOTE: an entry logged before georep recorded tables belongs to the one table there was.
    only = config.tables[0].name if len(config.tables) == 1 else None
    found = [(r, e if e.table else replace(e, table=only)) for r, e in found]
    if args.table is not None:
        found = [(r, e) for r, e in found if e.table == args.table]
    if wanted is not None:
        found = [(r, e) for r, e in found if key_of(e.key) == wanted]
    if args.since is not None:
        found = [(r, e) for r, e in found if e.at >= args.since]
    found.sort(key=lambda pair: (pair[1].at, pair[1].id))
    if args.limit is not None:
        found = found[-args.limit :]
    now = time.time()
    report(
        args,
        title="conflicts",
        columns=COLUMNS,
        rows=[
            (
                entry.id,
                entry.at if args.json else at(entry.at, now=now),
                region,
                entry.table,
                entry.destination,
                entry.source,
                key_of(entry.key),
                entry.resolver,
                # NOTE: JSON keeps the conflict table's own value (null: the resolver blended
                # the two versions); a table says so in a word.
                entry.winner if args.json else entry.winner or "blend",
                *_sides(entry, config, json=args.json),
            )
            for region, entry in found
        ],
        summary={
            "regions": regions,
            "tables": [args.table] if args.table else list(config.table_names),
            "conflicts": len(found),
            "logged": logged,
        },
    )
    return OK


def _came_from(entry: ConflictEntry, side: Side, config: Config) -> str | None:
    """The table ``side`` of ``entry`` came from: the tombstone store, or the destination's
    (``existing``) or the source's (``incoming``) replica table of the entry's configured
    table (None: that table is no longer configured)."""
    from service.core.conflicts import held_in

    place = held_in(entry, side)
    if place == "store":
        return entry.tombstone_table
    if entry.table is None or entry.table not in config.table_names:
        return None
    region = entry.destination if side == "existing" else entry.source
    return config.for_table(entry.table).table_name(region)


def _sides(entry: ConflictEntry, config: Config, *, json: bool) -> tuple[object, ...]:
    """The ``existing``, ``incoming`` and ``result`` cells: objects in JSON, for people
    ``eu-west-1 delete (georep-tombstones)`` and ``deleted``/``live``."""
    from service.core.conflicts import held_in

    cells: list[object] = []
    sides: tuple[tuple[Side, ConflictInput], ...] = (
        ("existing", entry.existing),
        ("incoming", entry.incoming),
    )
    for name, side in sides:
        came_from = _came_from(entry, name, config)
        if json:
            cells.append(
                {
                    "write_id": side.write_id,
                    "origin": side.origin,
                    "deleted": side.deleted,
                    "merged": side.merged,
                    "adopted": side.adopted,
                    "held_in": held_in(entry, name),
                    "table": came_from,
                }
            )
            continue
        kind = "delete" if side.deleted else "write"
        flags = "".join(
            f", {flag}" for flag, on in (("merged", side.merged), ("adopted", side.adopted)) if on
        )
        cells.append(f"{side.origin} {kind}{flags} ({came_from or '?'})")
    if json:
        cells.append({"write_id": entry.result_write_id, "deleted": entry.result_deleted})
    else:
        cells.append("deleted" if entry.result_deleted else "live")
    return tuple(cells)


def _wanted_key(args: argparse.Namespace, config: Config) -> Key | None:
    """``--key``/``--sort-key`` as the plain key object the log's entries are compared with."""
    from service.errors import UsageError
    from service.surfaces.commands.verify import key_from_options

    try:
        key = key_from_options(args, config)
    except ValueError as error:
        raise UsageError(str(error)) from None
    return None if key is None else key_of(key)
