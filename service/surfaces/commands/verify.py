"""``georep verify [--repair] [--segments N] [--key K [--sort-key S]] [--timeout SECONDS]``:
compare every region's table side by side, with parallel segmented scans (consistent reads).

A difference is read again in every region before it counts. One replication can still settle
(a region behind, concurrent versions, a raw write not adopted yet) is *pending*: it is read
again until it settles or ``--timeout`` passes. One that did not change at all in that time
(its records trimmed, its consumer stopped), or that replication can never settle (unreadable
metadata, one version in different bytes), is *divergent*: its key is printed with what each
region holds (data digest, version vector, origin, deleted).

``--repair`` writes each divergent key's repair (the join of what the regions hold, through the
resolver; a raw item is adopted as found) with conditional writes: nothing newer is overwritten
and it is safe while consumers run. A clean full ``--repair`` pass clears the regions'
needs-repair markers set before it began (not a ``--key`` pass, not one that left anything).

With the tombstone store (``[replication] tombstone_store``) each region's store is read
beside its table: a key deleted there (its tombstone in the store) is deleted, not missing,
the stores' tombstones are compared too, and a repair commits both places in one transaction,
never writing a live item over a tombstone that wins (docs/operations.md).

Exit status: 0 every region holds the same (pending differences that settled included; with
``--repair``, once every divergence was mended); 1 a divergence remains, or a difference was
still changing at the timeout (run again, or raise ``--timeout``); 2 usage or configuration.
Works while replication is live. With several tables (``[[tables]]``) every table is verified,
one after the other, unless ``--table NAME`` picks one (``--key`` needs it then); rows name
their table.
"""

from __future__ import annotations

import argparse
import base64
import binascii
import decimal
import sys
import time
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from service.surfaces.commands._common import (
    OK,
    PROBLEM,
    USAGE,
    Section,
    add_json,
    add_table,
    config_of,
    key_of,
    plain,
    progress,
    report,
    table_of,
    tables_of,
)

if TYPE_CHECKING:
    from service.config import Config
    from service.core.stored import Settings
    from service.engine.verify import Reading, Report

NAME = "verify"
HELP = "compare every region's table side by side; --repair mends what differs"
EXAMPLES = (
    ("georep verify", "exit 0: every region holds the same"),
    ("georep verify --key 'cart#1'", "one key"),
    ("georep verify --repair --json", "mend what differs; a machine-readable report"),
)

READ_TIMEOUT_SECONDS = 600

COLUMNS = (
    "table",
    "key",
    "status",
    "region",
    "holds",
    "digest",
    "version",
    "origin",
    "deleted",
    "why",
)
SHOWN = ("differs_in", "value")  # with --show: what differs, and each region's data


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be 0 or more, got {value}")
    return value


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--repair",
        action="store_true",
        help="write the repair of every divergent key (conditional writes, safe while live)",
    )
    parser.add_argument(
        "--segments",
        type=_positive,
        default=4,
        metavar="N",
        help="parallel scan segments per region (default 4)",
    )
    parser.add_argument(
        "--key", metavar="VALUE", help="verify one item only: its partition key value"
    )
    parser.add_argument(
        "--sort-key", metavar="VALUE", help="its sort key value (tables with a sort key)"
    )
    parser.add_argument(
        "--show",
        action="store_true",
        help="show each region's data for every key that differs (with --key: also when "
        "identical), and which attributes differ",
    )
    parser.add_argument(
        "--timeout",
        type=_seconds,
        default=30.0,
        metavar="SECONDS",
        help="how long a difference may take to settle (default 30)",
    )
    add_table(parser, "every configured table, one after the other (--key needs it then)")
    add_json(parser)


def execute(args: argparse.Namespace) -> int:
    config = config_of(args)
    if args.key is not None or args.sort_key is not None:
        scoped: tuple[Config, ...] = (table_of(args, config),)  # a key is one table's
    else:
        scoped = tables_of(args, config)
    try:
        key = key_from_options(args, scoped[0])
    except ValueError as error:
        print(f"georep: {error}", file=sys.stderr)
        return USAGE
    from service.engine.preflight import probe

    probe(scoped[0] if len(scoped) == 1 else config)
    passes = [_verify(args, one, key) for one in scoped]
    result = _merged([p.result for p in passes])
    held = passes[0].held
    absent = held is not None and not result.outcomes and _nowhere(held)
    sections = []
    if held is not None and args.show and not absent:
        sections.append(
            Section(
                "values",
                "what each region holds now",
                ("region", *SHOWN),
                _values(held.items, scoped[0].settings()),
            )
        )
    summary = _summary(
        result,
        repair=args.repair,
        markers=sum(p.markers for p in passes),
        cleared=sum(p.cleared for p in passes),
        absent=absent,
    )
    report(
        args,
        title="georep verify: keys that differ",
        columns=(*COLUMNS, *SHOWN) if args.show else COLUMNS,
        rows=[row for p in passes for row in _rows(p.result, p.config, show=args.show)],
        summary={"tables": [p.config.table.name for p in passes], **summary},
        sections=sections,
    )
    if absent:
        assert key is not None
        print(
            f"georep: key {_show_key(key, scoped[0])} not found in any region "
            f"({', '.join(result.regions)})",
            file=sys.stderr,
        )
        return PROBLEM
    return OK if result.clean else PROBLEM


@dataclass(frozen=True)
class _Pass:
    """One table's verification."""

    config: Config
    result: Report
    markers: int
    cleared: int
    held: Reading | None  # with --key: what each region holds now


def _nowhere(held: Reading) -> bool:
    """No region holds the key: no item in any table, no tombstone in any store."""
    from service.core.verify import store_print

    stores = held.stores or {}
    return all(
        item is None and store_print(stores.get(r)) is None for r, item in held.items.items()
    )


def _verify(args: argparse.Namespace, config: Config, key: dict[str, Any] | None) -> _Pass:
    """Verify (and with --repair mend) the one table ``config`` names."""
    from botocore.config import Config as BotoConfig

    from service.adapters.checkpoints import DynamoCheckpointTable
    from service.adapters.dynamo import DynamoTable
    from service.adapters.memory import key_string
    from service.engine.verify import RegionReader, Verifier, clear_markers, count_markers
    from service.engine.wiring import BOTO_CONFIG, clients_for, store_table_of

    settings = config.settings()
    # NOTE: a long read timeout: every segment of every region is scanned at once, and an
    # emulator that serves one request at a time (the embedded moto server) answers a 1 MB
    # page only after all the others queued before it; on DynamoDB a page takes well under 1 s.
    slow = BOTO_CONFIG.merge(BotoConfig(read_timeout=READ_TIMEOUT_SECONDS))
    clients = clients_for(config, "dynamodb", boto_config=slow)
    names = {region: config.table_name(region) for region in clients}
    keys = config.key_attributes
    # With the tombstone store (issue 22): each region's store is read and written too, its
    # items keyed by the table's configured name.
    store, name = store_table_of(config), config.table.name
    readers = {
        r: RegionReader(c, table_name=names[r], key_attributes=keys, store_table=store, name=name)
        for r, c in clients.items()
    }
    tables = {
        r: DynamoTable(c, table_name=names[r], key_attributes=keys, store_table=store, name=name)
        for r, c in clients.items()
    }
    checkpoints = [
        DynamoCheckpointTable(
            client, table_name=config.replication.checkpoint_table, replica_table=names[region]
        )
        for region, client in clients.items()
    ]
    began = time.time()  # NOTE: before the first read: only markers set earlier are mended
    markers = count_markers(checkpoints)
    with progress(args, shown=key is None) as bar:
        total = None if key is not None else _total(readers.values())
        # NOTE: the bar counts items read, every region's (2 regions of 1 item: 2 of 2); the
        # summary counts keys. Its label says so.
        what = f"verifying {config.table.name}: items read in {len(readers)} regions"
        task = bar.add_task(what if key is None else "verifying one key", total=total)
        with Verifier(
            settings=settings,
            readers=readers,
            tables=tables,
            segments=args.segments,
            timeout=args.timeout,
            on_scanned=lambda n: bar.advance(task, n),
        ) as verifier:
            result = verifier.run(keys=None if key is None else [key], repair=args.repair)
            # What the key's regions hold now (after any repair): to show, and to tell a key
            # in no region (a typo) from one every region holds the same.
            held = verifier.read([key])[key_string(key)] if key is not None else None
    cleared = 0
    if args.repair and key is None and result.clean:
        cleared = clear_markers(checkpoints, marked_before=began)
    return _Pass(config, result, markers, cleared, held)


def _merged(results: list[Report]) -> Report:
    """Several tables' reports as one (counts summed, outcomes kept)."""
    if len(results) == 1:
        return results[0]
    from service.engine.verify import Report

    merged = Report(regions=results[0].regions)
    for one in results:
        merged.compared += one.compared
        merged.differed += one.differed
        merged.pending += one.pending
        merged.settled += one.settled
        merged.divergent += one.divergent
        merged.repaired += one.repaired
        merged.outcomes.extend(one.outcomes)
        merged.elapsed += one.elapsed
    return merged


def _total(readers: Any) -> int | None:
    try:
        return sum(reader.item_count() for reader in readers) or None
    except Exception:  # only the progress bar's total: never worth failing the pass for
        return None


def key_from_options(args: argparse.Namespace, config: Config) -> dict[str, Any] | None:
    """The primary key ``--key``/``--sort-key`` name, in wire form, typed as the table says."""
    table = config.table
    if args.key is None:
        if args.sort_key is not None:
            raise ValueError("--sort-key needs --key")
        return None
    key = {table.partition_key: _value(args.key, table.partition_key_type, "--key")}
    if table.sort_key is None:
        if args.sort_key is not None:
            raise ValueError(f"table {table.name} has no sort key: leave out --sort-key")
        return key
    if args.sort_key is None:
        raise ValueError(
            f"table {table.name} has sort key {table.sort_key!r}: add --sort-key VALUE"
        )
    key[table.sort_key] = _value(args.sort_key, table.sort_key_type, "--sort-key")
    return key


def _value(text: str, kind: str, option: str) -> dict[str, Any]:
    if kind == "N":
        try:
            decimal.Decimal(text)
        except decimal.InvalidOperation:
            raise ValueError(f"{option} must be a number for this table, got {text!r}") from None
        return {"N": text}
    if kind == "B":
        try:
            return {"B": base64.b64decode(text, validate=True)}
        except binascii.Error:
            raise ValueError(f"{option} must be base64 for this table, got {text!r}") from None
    return {"S": text}


def _show_key(key: Any, config: Config) -> str:
    """A key as typed on the command line: ``cart#1``, or ``cart#1 | 3`` with a sort key."""

    def one(value: Any) -> str:
        ((kind, inner),) = value.items()
        return base64.b64encode(inner).decode() if kind == "B" else str(inner)

    parts = [one(key[name]) for name in config.key_attributes]
    return parts[0] if len(parts) == 1 else " | ".join(parts)


def _rows(result: Report, config: Config, *, show: bool) -> list[tuple[Any, ...]]:
    from service.core.verify import describe

    settings = config.settings()
    rows: list[tuple[Any, ...]] = []
    order = {"unrepairable": 0, "divergent": 1, "pending": 2, "repaired": 3}
    for outcome in sorted(result.outcomes, key=lambda o: order[o.status]):
        why = outcome.verdict.reason + (f"; {outcome.note}" if outcome.note else "")
        shown = _values(outcome.items, settings) if show else None
        stores = outcome.stores or {}
        for number, region in enumerate(result.regions):
            seen = describe(
                outcome.items.get(region),
                settings=settings,
                stored=stores.get(region),
                store=outcome.stores is not None,
            )
            row: tuple[Any, ...] = (
                config.table.name,
                key_of(outcome.key),
                outcome.status,
                region,
                seen.holds,
                seen.digest,
                seen.version,
                seen.origin,
                seen.deleted,
                why,
            )
            rows.append(row + (shown[number][1:] if shown is not None else ()))
    return rows


def _values(items: Mapping[str, Any], settings: Settings) -> list[tuple[str, list[str], Any]]:
    """Per region: the attributes whose values are not the same in every region, and its data
    without georep's metadata (None: no item, or a tombstone)."""
    from service.core.residency import residency_of
    from service.core.stored import Stamped
    from service.core.verify import holding_of
    from service.core.version import data_of

    residency = residency_of(settings)
    data: dict[str, dict[str, Any] | None] = {}
    withheld: set[str] = set()
    for region, item in items.items():
        holding = holding_of(item, settings=settings)
        deleted = isinstance(holding, Stamped) and holding.version.meta.deleted
        if isinstance(holding, Stamped) and holding.version.meta.withheld:
            withheld.add(region)
        data[region] = None if item is None or deleted else plain(data_of(item))

    def compared(name: str) -> list[dict[str, Any] | None]:
        """The regions whose value of ``name`` must agree: not one a residency filter keeps
        the item out of, and for a redacted attribute only the regions that hold it."""
        return [
            values
            for region, values in data.items()
            if region not in withheld
            and (residency is None or name not in residency.redacted or residency.holds(region))
        ]

    names = sorted({name for values in data.values() if values for name in values})
    differs = [
        name
        for name in names
        if len({repr((values or {}).get(name, "<none>")) for values in compared(name)}) > 1
    ]
    return [(region, differs, values) for region, values in data.items()]


def _summary(
    result: Report, *, repair: bool, markers: int, cleared: int, absent: bool
) -> dict[str, Any]:
    """The counts, and a result word each count agrees with: ``identical`` (nothing differs,
    differences that settled included), ``repaired`` (what differed was mended; every region
    holds the same now), ``divergent``, ``still pending``, ``not found`` (``--key`` of a key
    in no region)."""
    still = result.count("pending")
    left = result.count("divergent") + result.count("unrepairable")
    if absent:
        verdict = "not found"
    elif left:
        verdict = "divergent"
    elif still:
        verdict = "still pending"
    elif result.repaired:
        verdict = "repaired"
    else:
        verdict = "identical"
    summary: dict[str, Any] = {
        "result": verdict,
        "regions": len(result.regions),
        "items_compared": result.compared,
        "identical": result.identical,
        "pending": result.pending,
        "settled": result.settled,
        "still_pending": still,
        "divergent_found": result.divergent,
    }
    if repair:
        summary["repaired"] = result.repaired
        summary["divergent_left"] = left
    summary["needs_repair_markers"] = markers
    summary["markers_cleared"] = cleared
    summary["elapsed_seconds"] = round(result.elapsed, 2)
    summary["items_per_second"] = round(result.compared / result.elapsed) if result.elapsed else 0
    return summary
