"""``georep status``: per region, the stream the consumer follows and each shard's checkpoint,
the iterator age (how old the oldest record not yet applied is, read from the stream), the
replication lag the consumer last measured (write to applied), the dead letters, whether the
consumer is polling, its last error, and any needs-repair marker with its reason; with the
tombstone store (``[replication] tombstone_store``) each region's store too: its table, the
item count DynamoDB estimates, its TTL. A row per region and configured table (``--table
NAME``: that table's only). Exit 0 if every region is healthy, 1 if any region needs repair,
could not be read, or has a tombstone store that is missing or whose TTL is off."""

from __future__ import annotations

import argparse

from service.surfaces.commands._common import (
    OK,
    PROBLEM,
    Section,
    add_json,
    add_table,
    config_of,
    report,
    tables_of,
)

NAME = "status"
HELP = "show each region's checkpoints, lag, dead letters, last error and repair markers"
EXAMPLES = (
    ("georep status", "exit 1 if a region needs repair, with the reason"),
    ("georep status --region eu-west-1 --json", "one region, machine-readable"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--region", action="append", default=None, help="only this region (repeatable)"
    )
    parser.add_argument(
        "--all-shards", action="store_true", help="list finished shards too (--json always does)"
    )
    add_table(parser, "every configured table, a row per region and table")
    add_json(parser)


def execute(args: argparse.Namespace) -> int:
    import time

    from service.engine.preflight import PREFLIGHT_CONFIG, probe
    from service.engine.status import (
        REGION_COLUMNS,
        SHARD_COLUMNS,
        RegionView,
        is_problem,
        needs_repair,
        notes,
        observe_region,
        region_record,
        region_row,
        shard_record,
        shard_rows,
        store_cell,
        store_problem,
    )
    from service.engine.wiring import clients_for
    from service.surfaces.failures import classify

    config = config_of(args)
    names = [config.region(name).name for name in args.region or config.region_names]
    shown = tables_of(args, config)  # an unknown --table: exit 2 before any request
    # NOTE: a status must answer quickly, also when a region is unreachable: the preflight's
    # short timeouts, and a region that does not answer is a row (exit 1), not the end of it.
    unreachable = probe(config, regions=names, tolerate_unreachable=True)
    dynamodb = clients_for(config, "dynamodb", boto_config=PREFLIGHT_CONFIG)
    streams = clients_for(config, "dynamodbstreams", boto_config=PREFLIGHT_CONFIG)
    many = len(config.tables) > 1
    views = [
        RegionView(name, scoped.table_name(name), error=classify(unreachable[name]).line)
        if name in unreachable
        else observe_region(
            scoped,
            name,
            dynamodb=dynamodb[name],
            streams=streams[name],
            letters_of=scoped.table.name if many else None,
        )
        for scoped in shown
        for name in names
    ]
    now = time.time()
    repair = list(dict.fromkeys(v.region for v in views if needs_repair(v)))
    unreadable = list(dict.fromkeys(v.region for v in views if v.error is not None))
    summary: dict[str, object] = {}
    store = config.replication.tombstone_store
    if args.json:
        columns: tuple[str, ...] = (*REGION_COLUMNS, "error", "tombstone_store")
        shard_columns: tuple[str, ...] = (*SHARD_COLUMNS, "probe_error")
        records = [region_record(v, now=now) for v in views]
        rows = [tuple(record[c] for c in columns) for record in records]
        shards = [
            tuple(shard_record(v, s)[c] for c in shard_columns) for v in views for s in v.shards
        ]
    else:
        rows = [region_row(v, now=now) for v in views]
        columns = REGION_COLUMNS
        if store:
            columns = (*columns, "tombstone_store")
            rows = [(*row, store_cell(v)) for row, v in zip(rows, views, strict=True)]
        shards = [r for v in views for r in shard_rows(v, now=now, finished=args.all_shards)]
        shard_columns = SHARD_COLUMNS
        for view in views:
            summary |= notes(view, now=now, tables=many)
    summary |= {
        "regions": len(views),
        "needing_repair": repair,
        "dead_letters": sum(v.dead_letters or 0 for v in views),
        "unreadable": unreadable,
    }
    if store:
        # NOTE: one store per region serves every table: a region is named once.
        summary["tombstone_store_problems"] = list(
            dict.fromkeys(v.region for v in views if store_problem(v) is not None)
        )
    report(
        args,
        title="georep status",
        columns=columns,
        rows=rows,
        summary=summary,
        sections=[Section("shards", "shards", shard_columns, shards)],
    )
    return PROBLEM if any(is_problem(v) for v in views) else OK
