"""``georep demo``: a multi-region replication session on the embedded backend (what
``make demo`` runs): concurrent writers in every region, then the verdict. Exit 0 only if
every region converged."""

from __future__ import annotations

import argparse

from service.surfaces.commands._common import add_backend_options

# The demo's regions, in the order --regions N takes them (the first three are the local
# replica set's, service.surfaces.local.REGIONS).
DEMO_REGIONS = (
    "eu-west-1",
    "us-east-1",
    "ap-southeast-2",
    "sa-east-1",
    "af-south-1",
    "ca-central-1",
    "me-south-1",
)

NAME = "demo"
HELP = "run a multi-region session on the embedded backend and print the verdict"
EXAMPLES = (
    ("georep demo", "3 regions for 20 s on the embedded backend; exit 0 if they converged"),
    ("georep demo --regions 2 --duration 5", "a quicker session"),
)
NEEDS_CONFIG = False


def configure(parser: argparse.ArgumentParser) -> None:
    add_backend_options(parser)
    parser.add_argument(
        "--regions",
        type=int,
        default=3,
        choices=range(2, len(DEMO_REGIONS) + 1),
        metavar="N",
        help=f"how many regions (2 to {len(DEMO_REGIONS)}; default 3)",
    )
    parser.add_argument(
        "--duration",
        type=float,
        default=20.0,
        metavar="S",
        help="stop the writers after this many seconds at most (default 20)",
    )
    parser.add_argument("--writes", type=int, default=150, help="writes per region at most")


def execute(args: argparse.Namespace) -> int:
    from service.surfaces.demo import run

    return run(args)
