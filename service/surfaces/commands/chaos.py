"""``georep chaos [--duration S] [--writers N] [--keys K] [--faults LIST] [--seed N] [--json]``:
try hard to break convergence, and count what was lost.

Writers in every region write a few keys, stamped through georep and raw with boto3 (puts,
read-modify-writes that copy ``_georep`` back, deletes), each write a unique value recorded with
its acknowledgement. On the embedded backend (the default) the run also starts the consumers as
processes and injects faults: kill -9 and restart of consumers and of a lease holder with a
standby, a fault proxy between the consumers and every region (throttling, HTTP 500/503,
dropped connections, lost responses, truncated responses, latency, partitions), and clock skew
per region in the writers' clocks. With ``--deployment`` it writes to the configured
deployment (its consumers running already) under a key prefix of its own, injecting only the
clock skew, and deletes its keys afterwards.

Then it waits until every region holds the same items and judges with its own accounting over
plain reads: every region byte-identical, and every acknowledged write either in the final
state, superseded by a write that followed it, or beaten by a concurrent one under the
resolver. The configured resolver is used (your own merge rule included). Under a merge rule
every put also adds an element of its own to a string set (``--set-attribute``, default
``tags``, which the rule must merge as a union), and what is judged lost is an element that an
acknowledged write added and that is missing from a region's final item although no write that
read it dropped it.

With several tables (``[[tables]]``), ``--table NAME`` says whose resolver (embedded) or
which table (``--deployment``) the run exercises.

Exit status: 0 no lost write, no divergent key, no unexpected value; 1 otherwise; 2 usage or
configuration. ``--seed`` replays a run's schedule of writes and faults.
"""

from __future__ import annotations

import argparse
import random
import shutil
import signal
import sys
import tempfile
from pathlib import Path
from typing import TYPE_CHECKING, Any

from service.surfaces.commands._common import (
    OK,
    PROBLEM,
    USAGE,
    Section,
    add_json,
    add_table,
    report,
    table_of,
)

if TYPE_CHECKING:
    from service.engine.chaos.runner import Report

NAME = "chaos"
HELP = "concurrent writers and injected faults; count lost writes and divergent keys"
EXAMPLES = (
    ("georep chaos", "60 s, 3 regions (or those of georep.toml), all faults"),
    ("georep chaos --faults kill,throttle --seed 7", "some faults; --seed replays a schedule"),
)


def _faults(text: str) -> frozenset[str]:
    from service.engine.chaos.runner import FAULTS

    if text in ("all", ""):
        return frozenset(FAULTS) if text == "all" else frozenset()
    if text == "none":
        return frozenset()
    names = frozenset(n.strip().replace("-", "_") for n in text.split(","))
    unknown = sorted(names - set(FAULTS))
    if unknown:
        raise argparse.ArgumentTypeError(
            f"unknown fault {', '.join(unknown)}; choose from {', '.join(FAULTS)}, all or none"
        )
    return names


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--duration", type=float, default=60.0, metavar="S", help="default 60")
    parser.add_argument("--writers", type=int, default=2, metavar="N", help="per region")
    parser.add_argument("--keys", type=int, default=5, metavar="K", help="the key space")
    parser.add_argument("--rate", type=float, default=4.0, help="writes/s per writer")
    parser.add_argument(
        "--faults",
        type=_faults,
        default="all",
        metavar="LIST",
        help="comma-separated: kill, standby, throttle, error_500, error_503, drop, "
        "lost_response, half_close, latency, partition, skew; or all (default), none",
    )
    parser.add_argument("--seed", type=int, default=None, help="replay a run (printed)")
    parser.add_argument(
        "--set-attribute",
        default="tags",
        metavar="NAME",
        help="under a merge rule: the string set each write adds an element to, which the rule "
        "must merge as a union (default tags)",
    )
    parser.add_argument(
        "--deployment",
        action="store_true",
        help="write to the configured deployment (its consumers running) instead of the "
        "embedded backend",
    )
    parser.add_argument(
        "--converge-timeout",
        type=float,
        default=120.0,
        metavar="S",
        help="regions that still differ after S seconds without any change are divergent "
        "(default 120)",
    )
    parser.add_argument(
        "--keep",
        type=Path,
        default=None,
        metavar="DIR",
        help="copy the embedded run's working directory (its configuration and every "
        "consumer's log) to DIR when the run fails; without it a failed run prints the end of "
        "each region's consumer log",
    )
    add_table(parser, "the one table configured (required with several)")
    add_json(parser)


# A failed run's consumer logs: this many last lines of each region's, on stderr.
LOG_TAIL_LINES = 40


def _show_logs(workdir: Path, keep: Path | None) -> None:
    """After a failed embedded run: keep its working directory, or show the end of each
    region's consumer log (what a CI run's output then holds), before it is removed."""
    if keep is not None:
        shutil.copytree(workdir, keep, dirs_exist_ok=True)
        print(f"chaos: the run's consumers' logs and configuration: {keep}", file=sys.stderr)
        return
    for log in sorted((workdir / "logs").glob("*.log")):
        lines = log.read_text(errors="replace").splitlines()
        print(
            f"chaos: {log.stem}'s consumers, the last {min(len(lines), LOG_TAIL_LINES)} of "
            f"{len(lines)} log lines (--keep DIR keeps them all):",
            file=sys.stderr,
        )
        for line in lines[-LOG_TAIL_LINES:]:
            print(f"  {line}", file=sys.stderr)


def execute(args: argparse.Namespace) -> int:
    from service.config import load_config
    from service.engine.chaos.runner import OUTSIDE_FAULTS, Plan, run
    from service.surfaces.chaos import deployment_target, embedded_target

    if args.duration <= 0 or args.writers < 1 or args.keys < 1 or args.rate <= 0:
        print("georep: --duration, --writers, --keys and --rate must be positive", file=sys.stderr)
        return USAGE
    config_path = Path(args.config)
    config = load_config(config_path) if config_path.exists() else None
    if config is not None:
        config = table_of(args, config)  # several tables and no --table: exit 2
    elif args.table is not None:
        print(f"georep: --table needs a configuration ({config_path})", file=sys.stderr)
        return USAGE
    if args.deployment and config is None:
        print(f"georep: --deployment needs a configuration ({config_path})", file=sys.stderr)
        return USAGE
    faults = args.faults if isinstance(args.faults, frozenset) else _faults(args.faults)
    if args.deployment:
        faults = faults & frozenset(OUTSIDE_FAULTS)
    seed = args.seed if args.seed is not None else random.SystemRandom().randrange(1 << 31)
    plan = Plan(
        duration=args.duration,
        writers=args.writers,
        keys=args.keys,
        faults=faults,
        seed=seed,
        rate=args.rate,
        converge_timeout=args.converge_timeout,
        set_attribute=args.set_attribute,
    )
    # SIGTERM ends the run as Ctrl-C does: every process and proxy it started is stopped.
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    if args.deployment:
        assert config is not None
        result = run(deployment_target(config), plan)
    else:
        with (
            tempfile.TemporaryDirectory(prefix="georep-chaos-") as tmp,
            embedded_target(config, Path(tmp)) as target,
        ):
            result = run(target, plan)
            if not result.ok:
                _show_logs(Path(tmp), args.keep)
    _print(args, result)
    return OK if result.ok else PROBLEM


def _replay(args: argparse.Namespace, result: Report) -> str:
    """The command line that replays this run's schedule."""
    faults = args.faults if isinstance(args.faults, frozenset) else _faults(args.faults)
    return (
        f"georep chaos -c {args.config} --duration {args.duration:g} --writers {args.writers} "
        f"--keys {args.keys} --rate {args.rate:g} --faults {','.join(sorted(faults)) or 'none'} "
        f"--seed {result.seed}"
        f"{f' --set-attribute {args.set_attribute}' if result.merging else ''}"
        f"{' --deployment' if args.deployment else ''}"
    )


def _print(args: argparse.Namespace, result: Report) -> None:
    verdict = result.verdict
    summary: dict[str, Any] = {
        "seed": result.seed,
        "resolver": result.resolver,
        "regions": len(result.regions),
        "writes_acknowledged": result.writes_acknowledged,
        "writes_failed": result.writes_failed,
        "faults_injected": sum(result.faults.values()),
        "restarts": result.restarts,
        "conflicts": result.conflicts,
        "dead_letters": result.dead_letters,
        "consumer_exits": len(result.exits),
        "keys": verdict.judged_keys,
        "lost": len(verdict.lost),
        "divergent": len(verdict.divergent),
        "unexpected": len(verdict.unexpected),
        **(
            {
                "elements_judged": verdict.elements_judged,
                "elements_dropped": verdict.elements_dropped,
            }
            if result.merging
            else {}
        ),
        "converged_after_seconds": (
            round(result.converged_after, 1) if result.converged_after is not None else None
        ),
        "verdict": "ok" if result.ok else "FAILED",
        "replay": _replay(args, result),
    }
    rows = [
        *(("write", kind, n) for kind, n in sorted(result.writes.items())),
        *(("fault", kind, n) for kind, n in sorted(result.faults.items())),
        *(("skew_ms", region, ms) for region, ms in result.skew_ms.items() if ms),
    ]
    sections = [
        Section(
            "lost",
            "lost writes",
            ("key", "value", "region", "kind", "why"),
            [(x.key, x.value, x.region, str(x.kind), x.because) for x in verdict.lost],
        ),
        Section(
            "divergent",
            "divergent keys",
            ("key", "attributes"),
            [(k, " ".join(result.differing.get(k, []))) for k in verdict.divergent],
        ),
        Section("unexpected", "unexpected values", ("key", "value"), list(verdict.unexpected)),
    ]
    replay = summary.pop("replay") if not args.json else None
    report(
        args,
        title=f"georep chaos, seed {result.seed}",
        columns=("what", "kind", "count"),
        rows=rows,
        summary=summary,
        sections=sections,
    )
    if replay is not None:
        print(f"replay: {replay}")  # one line, never wrapped: it is meant to be copied
