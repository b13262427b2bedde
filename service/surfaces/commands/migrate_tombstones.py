"""``georep migrate-tombstones``: move the tombstone items that georep wrote before the
tombstone store (a deleted key's item holding its keys, ``_georep`` and ``_georep_ttl``) out
of every region's table into the region's tombstone store, so that plain readers (get_item,
Scan, Query) no longer see deleted keys. Needs ``[replication] tombstone_store = true``, the
store created (``georep init`` creates it, and runs this migration too) and every consumer
already running with the store on. Each key moves in one transaction conditioned on the item
read, so it is safe beside live writers and consumers: a key written since the scan is left
alone. Idempotent and resumable: a second run finds nothing to move, and an interrupted run is
finished by running it again. ``--dry-run`` counts what would move and changes nothing. Exit 0
when every tombstone item found is in the store, 1 if some failed or it was interrupted, 2 for
usage or configuration errors (the store off among them)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from service.surfaces.commands._common import (
    OK,
    PROBLEM,
    USAGE,
    add_json,
    add_table,
    config_of,
    progress,
    report,
    tables_of,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from service.engine.migrate import Result, Tally

NAME = "migrate-tombstones"
HELP = "move tombstone items written before the tombstone store into it (idempotent)"
EXAMPLES = (
    ("georep migrate-tombstones", "every region and table: moved / already moved / skipped"),
    ("georep migrate-tombstones --dry-run", "count what would move, change nothing"),
    ("georep migrate-tombstones --region eu-west-1 --json", "one region, machine-readable"),
)

STORE_OFF = (
    "georep: migrate-tombstones moves tombstones into the tombstone store, which is off: set "
    "[replication] tombstone_store = true and restart every consumer with it first "
    "(docs/operations.md, 'Tombstone store')"
)


def _segments(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
    if not 1 <= value <= 64:
        raise argparse.ArgumentTypeError(f"{value} is not between 1 and 64")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--region",
        default=None,
        metavar="REGION",
        help="only this region (default: every configured region)",
    )
    parser.add_argument(
        "--segments",
        type=_segments,
        default=4,
        metavar="N",
        help="parallel Scan segments per region (default 4)",
    )
    parser.add_argument(
        "--dry-run", action="store_true", help="count what would move; write nothing"
    )
    add_table(parser, "every configured table")
    add_json(parser)


def execute(args: argparse.Namespace) -> int:
    import threading

    from botocore.exceptions import BotoCoreError, ClientError

    from service.engine.migrate import migration_for
    from service.engine.preflight import RegionError, probe
    from service.engine.wiring import clients_for, store_table_of

    config = config_of(args)
    store = store_table_of(config)
    if store is None:
        print(STORE_OFF, file=sys.stderr)
        return USAGE
    scoped = tables_of(args, config)
    regions = [args.region] if args.region is not None else list(config.region_names)
    for region in regions:
        config.region(region)  # UnknownRegionError (exit 2) for a region not configured
    probe(config, regions=regions)
    clients = clients_for(config, "dynamodb")
    for region in regions:
        try:
            clients[region].describe_table(TableName=store)
        except (ClientError, BotoCoreError) as error:
            raise RegionError(
                error, region=region, table=store, endpoint=clients[region].meta.endpoint_url
            ) from error
    stop = threading.Event()
    results: list[tuple[str, Result]] = []
    try:
        with progress(args) as bar:
            for table in scoped:
                for region in regions:
                    name = table.table_name(region)
                    migration = migration_for(
                        table,
                        region=region,
                        client=clients[region],
                        segments=args.segments,
                        dry_run=args.dry_run,
                        stop=stop,
                        on_page=_watch(bar, f"{region} {name}"),
                    )
                    try:
                        results.append((table.table.name, migration.run()))
                    except (ClientError, BotoCoreError) as error:
                        raise RegionError(
                            error,
                            region=region,
                            table=name,
                            endpoint=clients[region].meta.endpoint_url,
                        ) from error
    except KeyboardInterrupt:
        print(
            "georep: migrate-tombstones interrupted: every key moved so far is moved; "
            "run the same command again to finish",
            file=sys.stderr,
        )
        return PROBLEM
    return _report(args, results=results, store=store)


def _watch(bar: Any, label: str) -> Callable[[Tally], None]:
    """A progress task for one region's table, and the callback that advances it by page
    (called from every segment's thread)."""
    import threading

    from service.engine.migrate import Tally

    task = bar.add_task(f"{label}: scanning", total=None)
    seen, lock = Tally(), threading.Lock()

    def on_page(page: Tally) -> None:
        with lock:
            seen.add(page)
            bar.update(
                task,
                advance=page.scanned,
                description=f"{label}: {seen.scanned:,} scanned, {seen.moved:,} moved, "
                f"{seen.already_moved:,} already moved",
            )

    return on_page


def _report(args: argparse.Namespace, *, results: list[tuple[str, Result]], store: str) -> int:
    from service.engine.migrate import Tally

    total = Tally()
    for _, result in results:
        total.add(result.tally)
    complete = all(result.complete for _, result in results)
    rows = [
        (
            result.region,
            table,
            result.tally.scanned,
            result.tally.moved,
            result.tally.already_moved,
            result.tally.skipped,
            result.tally.failed,
        )
        for table, result in results
    ]
    summary: dict[str, Any] = {
        "status": "complete" if complete else "incomplete",
        "dry_run": bool(args.dry_run),
        "store_table": store,
        "moved": total.moved,
        "already_moved": total.already_moved,
        "skipped": total.skipped,
        "failed": total.failed,
        "elapsed_seconds": round(sum(r.elapsed for _, r in results), 1),
    }
    if total.failures:
        summary["failures"] = total.failures[:10]
    report(
        args,
        title="georep migrate-tombstones" + (" (dry run)" if args.dry_run else ""),
        columns=(
            "region",
            "table",
            "scanned",
            "moved",
            "already_moved",
            "skipped",
            "failed",
        ),
        rows=rows,
        summary=summary,
    )
    if complete:
        return OK
    print(
        f"georep: {total.failed:,} tombstone items not moved (see failures above): "
        "run the same command again to retry them",
        file=sys.stderr,
    )
    return PROBLEM
