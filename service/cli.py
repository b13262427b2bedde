"""The ``georep`` command. Exit codes: 0 success, 1 the operation failed or found problems,
2 bad usage or configuration."""

from __future__ import annotations

import argparse
import logging
import signal
import sys
import threading

from service.config import load_config
from service.errors import ConsumerHaltedError, GeorepError


def _run(args: argparse.Namespace) -> int:
    from service.consumer import Consumer
    from service.metrics import PrometheusMetrics, serve
    from service.preflight import check_tables

    config = load_config(args.config)
    # A user rule's laws are checked once per process start (~1 s), here and not in every
    # settings build: the Lambda and the SDK rely on `georep check-rule` at deploy time.
    config.settings(check_laws=True)
    metrics = PrometheusMetrics()
    port = args.metrics_port if args.metrics_port is not None else config.replication.metrics_port
    if port is not None:
        server = serve(port)
        print(f"georep: metrics on http://127.0.0.1:{server.server_port}/metrics", flush=True)
    consumer = Consumer(config, region=args.region, metrics=metrics)
    check_tables(config, clients=consumer.dynamodb)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    consumer.setup()
    others = [r for r in config.region_names if r != args.region]
    print(f"georep: replicating {args.region} -> {others}", flush=True)
    try:
        consumer.run(stop=stop, idle_exit_after=args.exit_when_idle)
    finally:
        consumer.close()
    return 0


def _check_rule(args: argparse.Namespace) -> int:
    config = load_config(args.config)
    resolver = config.settings(check_laws=True).resolver
    options = config.table.resolver_options
    if config.table.resolver != "rules":
        print(f"georep: resolver {resolver.name!r} is built in; its laws are georep's own tests")
    elif options.get("unsafe", False):
        print(f"georep: rule {options['rule']!r} is marked unsafe = true: its laws are not checked")
    else:
        print(
            f"georep: rule {options['rule']!r} is deterministic, commutative, associative and "
            "idempotent on 200 generated cases"
        )
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="georep", description=__doc__)
    parser.add_argument("-c", "--config", default="georep.toml", help="path to georep.toml")
    parser.add_argument("-v", "--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run one region's stream consumer")
    run.add_argument("--region", required=True)
    run.add_argument("--metrics-port", type=int, default=None)
    run.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after the stream has been idle this long (tests, backfills)",
    )
    run.set_defaults(handler=_run)
    check_rule = sub.add_parser(
        "check-rule",
        help="check the configured merge rule's laws (once, at deploy time; about 1 s)",
    )
    check_rule.set_defaults(handler=_check_rule)
    # Options may also follow the subcommand (georep run --region R -c georep.toml).
    for sp in (run, check_rule):
        sp.add_argument("-c", "--config", dest="config", default=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s %(message)s",
    )
    try:
        return int(args.handler(args))
    except ConsumerHaltedError as error:  # what retrying cannot fix: one line, and exit 1
        print(f"georep: {error}", file=sys.stderr)
        return 1
    except GeorepError as error:
        print(f"georep: {error}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
