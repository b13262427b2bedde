"""``georep dlq list|show|replay --region R``: the dead letters of a region's consumer.

``list`` shows each letter (id, time, error, reason, item key); ``show ID`` the full record and
what each destination did; ``replay ID ...`` (or ``--all``) sends letters through the region's
Replicator again once their cause is fixed (a rule, an item's size): a letter that applies is
removed, one that fails stays with its new reason. Each letter records the configured table
whose stream it came from, and a replay writes it back to that table (``--table`` lists or
replays one table's letters only). Exit codes: list and show 0; replay 0 if every letter
applied, 1 if any still fails; an unknown region, table or letter id 2."""

from __future__ import annotations

import argparse
import sys
from collections.abc import Mapping
from functools import partial
from typing import TYPE_CHECKING, Any

from service.surfaces.commands._common import (
    GLOBAL_OPTIONS,
    OK,
    PROBLEM,
    USAGE,
    HelpFormatter,
    Key,
    add_json,
    add_table,
    config_of,
    examples,
    key_of,
    progress,
    report,
)

if TYPE_CHECKING:
    from service.adapters.deadletter import DeadLetter, DynamoDeadLetters
    from service.config import Config

NAME = "dlq"
HELP = "list, show and replay a region's dead letters"
EXAMPLES = (
    ("georep dlq list --region eu-west-1", "id, time, error, reason, item key"),
    ("georep dlq show ID --region eu-west-1", "the full record and what each destination did"),
    ("georep dlq replay --all --region eu-west-1", "after fixing the cause"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", required=True, metavar="ACTION")
    for name, help_, example in (
        (
            "list",
            "every dead letter: id, time, error, reason, item key",
            ("georep dlq list --region eu-west-1", "exit 0, also with none"),
        ),
        (
            "show",
            "one letter: its full record and what each destination did",
            ("georep dlq show 01J0ABC --region eu-west-1", "an id from dlq list"),
        ),
        (
            "replay",
            "send letters again; remove those that apply, update those that fail",
            ("georep dlq replay --all --region eu-west-1", "exit 1 if any still fails"),
        ),
    ):
        action = actions.add_parser(
            name,
            help=help_,
            description=f"georep dlq {name}: {help_}.",
            epilog=examples(example),
            formatter_class=HelpFormatter,
            parents=[GLOBAL_OPTIONS],
        )
        action.add_argument(
            "--region",
            required=True,
            metavar="REGION",
            help="the region whose consumer kept them",
        )
        if name != "show":
            add_table(action, "every table's letters")
        add_json(action)
        if name == "show":
            action.add_argument("id", help="the letter's id (from dlq list)")
        if name == "replay":
            action.add_argument("ids", nargs="*", metavar="ID", help="letters to replay")
            action.add_argument("--all", action="store_true", help="replay every letter")


def execute(args: argparse.Namespace) -> int:
    from service.adapters.deadletter import DynamoDeadLetters
    from service.engine.preflight import probe
    from service.engine.wiring import clients_for

    config = config_of(args)
    region = config.region(args.region).name  # UnknownRegionError: exit 2
    if getattr(args, "table", None) is not None:
        config.for_table(args.table)  # an unknown table: exit 2
    if args.action == "replay" and bool(args.ids) == bool(args.all):
        print("georep: dlq replay takes letter ids or --all (one of the two)", file=sys.stderr)
        return USAGE
    if args.action == "replay":  # replays write to every region's table
        probe(config)
    else:
        probe(config, regions=[region], tables=False)
    clients = clients_for(config, "dynamodb")
    store = DynamoDeadLetters(clients[region], table_name=config.replication.dead_letter_table)
    if args.action == "list":
        return _list(args, region, store)
    if args.action == "show":
        return _show(args, region, store)
    return _replay(args, config, region, store, clients)


def _list(args: argparse.Namespace, region: str, store: DynamoDeadLetters) -> int:
    from service.adapters.dynamo import unless_missing
    from service.engine.status import at

    letters = _of_table(args, config_of(args), unless_missing(store.letters, []))
    now = _now()
    report(
        args,
        title=f"dead letters of {region}",
        columns=("id", "at", "table", "error", "reason", "key", "replays"),
        rows=[
            (
                x.id,
                x.at if args.json else at(x.at, now=now),
                x.table,
                x.error,
                x.reason,
                _key(x),
                x.replays,
            )
            for x in letters
        ],
        summary={"region": region, "letters": len(letters)},
    )
    return OK


def _show(args: argparse.Namespace, region: str, store: DynamoDeadLetters) -> int:
    import json

    from service.adapters.deadletter import record_json
    from service.adapters.dynamo import unless_missing
    from service.engine.status import at

    letter = unless_missing(partial(store.letter, args.id), None)
    if letter is None:
        return _no_such(region, [args.id])
    record = json.loads(record_json(letter.record))  # binary as base64, times as ISO text
    now = _now()
    report(
        args,
        title=f"dead letter {letter.id}",
        columns=("destination", "outcome"),
        rows=sorted(letter.destinations.items()),
        summary={
            "id": letter.id,
            "region": letter.region,
            "table": letter.table,
            "at": letter.at if args.json else at(letter.at, now=now),
            "error": letter.error,
            "reason": letter.reason,
            "key": _key(letter),
            "replays": letter.replays,
            "replayed_at": letter.replayed_at if args.json else at(letter.replayed_at, now=now),
            "record": record if args.json else json.dumps(record, indent=2, sort_keys=True),
        },
    )
    return OK


def _replay(
    args: argparse.Namespace,
    config: Config,
    region: str,
    store: DynamoDeadLetters,
    clients: dict[str, Any],
) -> int:
    from service.adapters.dynamo import unless_missing
    from service.adapters.metrics import MemoryMetrics
    from service.engine.pipeline import Replicator
    from service.engine.replay import CapturingSink, Replayed, replay
    from service.engine.wiring import replicator_for

    if args.all:
        letters = _of_table(args, config, unless_missing(store.letters, []))
    else:
        found: dict[str, DeadLetter | None] = {}
        for entry_id in dict.fromkeys(args.ids):
            found[entry_id] = unless_missing(partial(store.letter, entry_id), None)
        missing = [i for i, x in found.items() if x is None]
        if missing:
            return _no_such(region, missing)
        letters = _of_table(args, config, [x for x in found.values() if x is not None])
    # NOTE: a fixed rule's laws are checked first, as `georep run` does when it starts: a
    # replay must not spread a rule's divergent merges either.
    for scoped in config.scoped():
        scoped.settings(check_laws=True)
    replicators: dict[tuple[str, str], tuple[Replicator, CapturingSink]] = {}
    results: list[tuple[DeadLetter, Replayed]] = []
    try:
        with progress(args) as bar:
            task = bar.add_task(f"replaying {region}'s dead letters", total=len(letters))
            for letter in letters:
                if letter.region not in config.region_names:
                    reason = f"region {letter.region!r} is not configured"
                    results.append((letter, Replayed(letter.id, "failed", reason, {})))
                    continue
                if letter.table not in config.table_names:
                    reason = (
                        f"table {letter.table!r} is not configured"
                        if letter.table
                        else "the letter does not say its table (written before georep "
                        f"recorded tables), and several are configured: {config.table_names}"
                    )
                    results.append((letter, Replayed(letter.id, "failed", reason, {})))
                    bar.advance(task)
                    continue
                lane = (letter.region, letter.table)
                if lane not in replicators:
                    sink = CapturingSink()
                    replicators[lane] = (
                        replicator_for(
                            config.for_table(letter.table),
                            region=letter.region,
                            clients=clients,
                            dead_letters=sink,
                            metrics=MemoryMetrics(),
                        ),
                        sink,
                    )
                replicator, sink = replicators[lane]
                results.append(
                    (letter, replay(letter, replicator=replicator, sink=sink, store=store))
                )
                bar.advance(task)
    finally:
        for replicator, _ in replicators.values():
            replicator.close()
    failing = [r for _, r in results if r.still_failing]
    report(
        args,
        title=f"replayed dead letters of {region}",
        columns=("id", "table", "key", "outcome", "reason", "destinations"),
        rows=[
            (
                r.id,
                letter.table,
                _key(letter),
                r.outcome,
                r.reason or None,
                dict(r.destinations) if args.json else _outcomes(r.destinations),
            )
            for letter, r in results
        ],
        summary={
            "region": region,
            "applied_and_removed": sum(r.outcome == "applied" for _, r in results),
            "still_failing": len(failing),
            "already_removed": sum(r.outcome == "gone" for _, r in results),
        },
    )
    return PROBLEM if failing else OK


def _of_table(
    args: argparse.Namespace, config: Config, letters: list[DeadLetter]
) -> list[DeadLetter]:
    """The letters of ``--table`` (all without it); a letter written before georep recorded
    tables is taken to be the one table's, when one is configured."""
    from dataclasses import replace

    only = config.tables[0].name if len(config.tables) == 1 else None
    letters = [x if x.table else replace(x, table=only) for x in letters]
    wanted = getattr(args, "table", None)
    return [x for x in letters if wanted is None or x.table == wanted]


def _key(letter: DeadLetter) -> Key | None:
    """The item key of a letter's record (None when the record has none)."""
    body = letter.record.get("dynamodb")
    keys = body.get("Keys") if isinstance(body, Mapping) else None
    return key_of(keys) if isinstance(keys, Mapping) and keys else None


def _outcomes(destinations: Mapping[str, str]) -> str:
    return "; ".join(f"{name}: {what}" for name, what in sorted(destinations.items())) or "-"


def _no_such(region: str, ids: list[str]) -> int:
    print(
        f"georep: no dead letter {', '.join(ids)} in {region} (see georep dlq list)",
        file=sys.stderr,
    )
    return USAGE


def _now() -> float:
    import time

    return time.time()
