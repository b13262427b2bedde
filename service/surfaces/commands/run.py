"""``georep run --region R``: one region's stream consumer, until SIGTERM or SIGINT, which
finish the batch in hand, checkpoint it and exit 0. With ``[[tables]]`` it consumes every
configured table's stream of the region (a consumer per table, in threads of one process)."""

from __future__ import annotations

import argparse
import signal
import sys
import threading

from service.surfaces.commands._common import OK, config_of

NAME = "run"
HELP = "run one region's stream consumer"
EXAMPLES = (
    ("georep run --region eu-west-1", "until Ctrl-C or SIGTERM"),
    ("georep run --region eu-west-1 --metrics-port 9108", "with Prometheus metrics"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--region", required=True, metavar="REGION", help="the region whose stream to consume"
    )
    parser.add_argument(
        "--metrics-port",
        type=int,
        default=None,
        metavar="PORT",
        help="serve Prometheus metrics on this port (default: [replication] metrics_port, "
        "else none)",
    )
    parser.add_argument(
        "--exit-when-idle",
        type=float,
        default=None,
        metavar="SECONDS",
        help="exit after the stream has been idle this long (tests, backfills)",
    )


def execute(args: argparse.Namespace) -> int:
    from service.adapters.metrics import PrometheusMetrics, serve
    from service.engine.preflight import PREFLIGHT_CONFIG, check_tables, missing_stores, probe
    from service.engine.wiring import RegionConsumers, clients_for
    from service.surfaces.failures import classify

    config = config_of(args)
    config.region(args.region)  # an unknown region: exit 2 before anything else
    # A user rule's laws are checked once per process start (~1 s), here and not in every
    # settings build: the Lambda and the SDK rely on `georep check-rule` at deploy time.
    for scoped in config.scoped():
        scoped.settings(check_laws=True)
    metrics = PrometheusMetrics()
    port = args.metrics_port if args.metrics_port is not None else config.replication.metrics_port
    if port is not None:
        server = serve(port)
        print(f"georep: metrics on http://127.0.0.1:{server.server_port}/metrics", flush=True)
    # NOTE: its own region must be there (nothing listening, credentials, the table: one line,
    # about 2 s); what waiting may fix (a throttle, a 5xx, a reset) is said and waited out with
    # the consumer's patient retries, as is a destination that does not answer.
    for waiting in probe(config, regions=[args.region], tolerate_transient=True).values():
        print(f"georep: {classify(waiting).line}; waiting for it", file=sys.stderr, flush=True)
    preflight = clients_for(config, "dynamodb", boto_config=PREFLIGHT_CONFIG)
    for scoped in config.scoped():
        check_tables(scoped, clients=preflight)
    for region in missing_stores(config, clients=preflight, besides=args.region):
        print(
            f"georep: region {region}: the tombstone store {config.replication.tombstone_table} "
            "does not exist yet; inserts and deletes bound there wait (retried) until it does: "
            "run georep init, or start that region's consumer (it creates its own)",
            file=sys.stderr,
            flush=True,
        )
    if residency := config.store_off_for_residency:
        print(
            f"georep: the tombstone store is off (residency rules on {', '.join(residency)}): "
            "a deleted key stays in the table as a tombstone item until the horizon "
            "(docs/decisions.md)",
            file=sys.stderr,
            flush=True,
        )
    consumer = RegionConsumers(config, region=args.region, metrics=metrics)
    stop = threading.Event()
    signal.signal(signal.SIGTERM, lambda *_: stop.set())
    signal.signal(signal.SIGINT, lambda *_: stop.set())
    consumer.setup(stop=stop)
    others = [r for r in config.region_names if r != args.region]
    tables = f" (tables {', '.join(config.table_names)})" if len(config.tables) > 1 else ""
    print(f"georep: replicating {args.region} -> {', '.join(others)}{tables}", flush=True)
    try:
        consumer.run(stop=stop, idle_exit_after=args.exit_when_idle)
    finally:
        consumer.close()
    print(f"georep: {args.region} stopped after checkpointing what it applied", flush=True)
    return OK
