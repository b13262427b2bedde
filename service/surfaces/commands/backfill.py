"""``georep backfill --from R``: the initial sync of a populated table. Every item of R's
table becomes a version (a raw item is stamped in place, as of when R's stream was enabled) and
is delivered to the other regions (or those of ``--to``) by the conditional writes live
replication makes, so it is safe beside live writers and running consumers; a raw item's stamp
also reaches every region through R's stream. Progress is saved per scan segment in georep's
checkpoint table: SIGINT or SIGTERM finishes the items in flight, saves the pages done and
exits 1, and running the same command again resumes (``--restart`` starts over). Exit 0 when
every item is applied (a rerun then says it is already complete), 1 if some failed or it was
interrupted, 2 for usage or configuration errors. Onboarding: ``init``, start the consumers,
``backfill --from R``. With several tables (``[[tables]]``), ``--table NAME`` says which one
(a backfill is one table's: its progress, its rate limit)."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING, Any

from service.surfaces.commands._common import (
    OK,
    PROBLEM,
    add_json,
    add_table,
    config_of,
    progress,
    report,
    table_of,
)

if TYPE_CHECKING:
    from service.config import Config
    from service.engine.backfill import Result, Saved, Tally

NAME = "backfill"
HELP = "sync a populated table's existing items to the other regions (resumable, rate limited)"
EXAMPLES = (
    ("georep backfill --from eu-west-1 --max-wcu 500", "run it again to resume"),
    ("georep backfill --from eu-west-1 --to us-east-1", "one destination only"),
    ("georep backfill --from eu-west-1 --restart", "forget saved progress, start over"),
)

# DynamoDB's own bound on a parallel Scan.
MAX_SEGMENTS = 1_000_000


def _count(low: int, high: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"{text!r} is not a whole number") from None
        if not low <= value <= high:
            raise argparse.ArgumentTypeError(f"{value} is not between {low} and {high:,}")
        return value

    return parse


def _rate(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a number") from None
    if not value > 0:
        raise argparse.ArgumentTypeError(f"{text} is not a positive number")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--from",
        dest="source",
        required=True,
        metavar="REGION",
        help="the region whose table holds the data",
    )
    parser.add_argument(
        "--to",
        default=None,
        metavar="REGION[,REGION...]",
        help="deliver to these regions only (default: every other region)",
    )
    parser.add_argument(
        "--max-wcu",
        type=_rate,
        default=None,
        metavar="N",
        help="at most N write capacity units per second into each region's table",
    )
    parser.add_argument(
        "--segments",
        type=_count(1, MAX_SEGMENTS),
        default=4,
        metavar="N",
        help="parallel Scan segments (default 4); resume with the same number",
    )
    parser.add_argument(
        "--workers",
        type=_count(1, 512),
        default=16,
        metavar="N",
        help="items applied at once, over all segments (default 16)",
    )
    parser.add_argument(
        "--page-size",
        type=_count(1, 1_000_000),
        default=None,
        metavar="N",
        help="items per Scan page, so how often progress is saved (default 100; a page is "
        "also at most 1 MB)",
    )
    parser.add_argument(
        "--restart", action="store_true", help="forget saved progress or completion, start over"
    )
    add_table(parser, "the one table configured (required with several)")
    add_json(parser)


def destinations_of(config: Config, *, source: str, to: str | None) -> tuple[str, ...]:
    """The destination regions, in configuration order; UnknownRegionError or UsageError."""
    from service.errors import UsageError

    config.region(source)
    if to is None:
        return tuple(r for r in config.region_names if r != source)
    names = [name.strip() for name in to.split(",") if name.strip()]
    if not names:
        raise UsageError("--to names no region: give one or more, comma-separated")
    for name in names:
        config.region(name)
    if source in names:
        raise UsageError(
            f"--to includes {source}, the region backfill reads from (--from): "
            "name only the regions to deliver to"
        )
    return tuple(r for r in config.region_names if r in names)


def execute(args: argparse.Namespace) -> int:
    import signal
    import threading
    import time

    from service.adapters.dynamo import require
    from service.core.backfill import stamp_hlc
    from service.engine.backfill import Tally, build, progress_store
    from service.engine.preflight import PREFLIGHT_CONFIG, check_tables, probe
    from service.engine.wiring import clients_for
    from service.errors import UsageError

    config = table_of(args, config_of(args))  # several tables and no --table: exit 2
    source = args.source
    destinations = destinations_of(config, source=source, to=args.to)
    probe(config, regions=[source, *destinations])
    check_tables(config, clients=clients_for(config, "dynamodb", boto_config=PREFLIGHT_CONFIG))
    clients = clients_for(config, "dynamodb")
    store = progress_store(config, source=source, destinations=destinations, clients=clients)
    store.ensure_table()
    if args.restart:
        store.discard()
    saved = store.load()
    route = f"{source} -> {', '.join(destinations)}"
    if saved.done is not None:
        return _already_complete(args, route=route, saved=saved)
    others = sorted(set(saved.segments) - {args.segments})
    if others:
        raise UsageError(
            f"the backfill {route} in progress was started with --segments {others[0]}: "
            f"rerun with --segments {others[0]} to resume it, or add --restart to start over"
        )
    resumed = saved.segments.get(args.segments, {})
    described = clients[source].describe_table(TableName=config.table_name(source))
    table = require(described, "Table", operation="DescribeTable")
    stamp_at = stamp_hlc(table.get("LatestStreamLabel"), now_ms=int(time.time() * 1000))

    stop = threading.Event()

    def stopping(*_: object) -> None:
        if not stop.is_set():  # said once: a second Ctrl-C is not a second stop
            print(
                "georep: stopping: finishing the items in flight and saving progress",
                file=sys.stderr,
                flush=True,
            )
        stop.set()

    previous = {s: signal.signal(s, stopping) for s in (signal.SIGINT, signal.SIGTERM)}
    try:
        with progress(args) as bar:
            before = sum(p.scanned for p in resumed.values())
            # NOTE: ItemCount is DynamoDB's estimate (refreshed about every six hours): the ETA
            # is as good as it is, and the bar may pass 100 % on a table that grew.
            estimate = max(int(table.get("ItemCount", 0)), before)
            task = bar.add_task(f"backfill {route}", total=estimate or None, completed=before)
            seen, lock, started = Tally(), threading.Lock(), time.monotonic()

            def on_page(page: Tally) -> None:
                with lock:
                    seen.add(page)
                    rate = seen.scanned / max(time.monotonic() - started, 1e-6)
                    done = before + seen.scanned
                    bar.update(
                        task,
                        advance=page.scanned,
                        total=max(estimate, done) or None,
                        description=(
                            f"backfill {route}: {seen.stamped:,} stamped, {seen.delivered:,} "
                            f"delivered, {seen.failed:,} failed, {rate:,.0f} items/s"
                        ),
                    )

            job = build(
                config,
                source=source,
                destinations=destinations,
                clients=clients,
                segments=args.segments,
                page_size=args.page_size,
                workers=args.workers,
                max_wcu=args.max_wcu,
                stamp_at=stamp_at,
                stop=stop,
                on_page=on_page,
            )
            result = job.run(resumed)
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
    _report(args, route=route, result=result)
    return _verdict(result, again=_again(args))


def _already_complete(args: argparse.Namespace, *, route: str, saved: Saved) -> int:
    assert saved.done is not None
    scanned = int(saved.done.get("scanned", {}).get("N", "0"))
    finished = saved.done.get("finished", {}).get("S", "?")
    if getattr(args, "json", False):
        summary = {"status": "already complete", "route": route, "scanned": scanned}
        summary |= {"finished": finished}
        report(args, title="georep backfill", columns=(), rows=(), summary=summary)
        return OK
    print(
        f"georep: backfill {route} is already complete ({scanned:,} items, finished "
        f"{finished}); add --restart to run it again"
    )
    return OK


def _report(args: argparse.Namespace, *, route: str, result: Result) -> None:
    tally = result.tally
    rows = [(s.segment, s.status, *_counts(s.tally), s.error or None) for s in result.segments]
    status = (
        "complete" if result.complete else "interrupted" if result.interrupted else "incomplete"
    )
    summary: dict[str, Any] = {
        "status": status,
        "route": route,
        "scanned": tally.scanned,
        "stamped": tally.stamped,
        "delivered": tally.delivered,
        "skipped": tally.skipped,
        "failed": tally.failed,
        "elapsed_seconds": round(result.elapsed, 1),
        "items_per_second": round(tally.scanned / result.elapsed, 1) if result.elapsed else 0.0,
        "resumed_from": result.resumed_from,
    }
    if result.failures:
        summary["failures"] = [f"{f.key}: {f.reason}" for f in result.failures[:10]]
    report(
        args,
        title=f"georep backfill {route}",
        columns=(
            "segment",
            "status",
            "scanned",
            "stamped",
            "delivered",
            "skipped",
            "failed",
            "error",
        ),
        rows=rows,
        summary=summary,
    )


def _counts(tally: Tally) -> tuple[int, ...]:
    return tally.scanned, tally.stamped, tally.delivered, tally.skipped, tally.failed


def _again(args: argparse.Namespace) -> str:
    """What to run to resume: the same command, or, after ``--restart``, the command without
    it (which would start over once more)."""
    import shlex

    argv = [word for word in getattr(args, "argv", ()) if word != "--restart"]
    if "--restart" not in getattr(args, "argv", ()):
        return "run the same command again"
    return f"run it again without --restart ({shlex.join(['georep', *argv])})"


def _verdict(result: Result, *, again: str = "run the same command again") -> int:
    """The exit code, and one line on stderr saying what to do when it is not 0."""
    if result.complete:
        return OK
    if result.interrupted:
        line = f"backfill interrupted, progress saved: {again} to resume"
    elif result.tally.failed:
        line = f"{result.tally.failed:,} items failed (see failures above): {again} to retry them"
    else:
        errors = "; ".join(s.error for s in result.segments if s.error)
        line = f"backfill stopped ({errors}): {again} to resume"
    print(f"georep: {line}", file=sys.stderr)
    return PROBLEM
