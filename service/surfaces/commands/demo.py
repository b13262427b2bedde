"""``georep demo``: a multi-region replication session on the embedded backend (what
``make demo`` runs): concurrent writers in every region, then the verdict. Exit 0 only if
every region converged."""

from __future__ import annotations

import argparse

NAME = "demo"
HELP = "run a multi-region session on the embedded backend and print the verdict"
EXAMPLES = (
    ("georep demo", "3 regions for 20 s on the embedded backend; exit 0 if they converged"),
    ("georep demo --regions 2 --duration 5", "a quicker session"),
)
NEEDS_CONFIG = False


def configure(parser: argparse.ArgumentParser) -> None:
    from service.surfaces.demo import add_options

    add_options(parser)


def execute(args: argparse.Namespace) -> int:
    from service.surfaces.demo import run

    return run(args)
