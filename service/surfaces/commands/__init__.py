"""The ``georep`` subcommands, one module each.

Each module names its command (``NAME``, ``HELP``), adds its options (``configure``) and runs
it (``execute(args) -> exit code``); it imports what it needs inside ``execute``, so
``georep --help`` and a mistyped option stay instant. Exit codes: 0 success, 1 a check found a
problem (divergence, failed laws, needs repair) or the work failed, 2 usage or configuration.
"""

from __future__ import annotations

from service.surfaces.commands import (
    backend,
    backfill,
    chaos,
    check_rule,
    conflicts,
    demo,
    deploy,
    dlq,
    init,
    migrate_tombstones,
    run,
    status,
    verify,
)

COMMANDS = (
    demo,
    backend,
    init,
    migrate_tombstones,
    run,
    backfill,
    verify,
    status,
    dlq,
    conflicts,
    check_rule,
    chaos,
    deploy,
)

__all__ = ["COMMANDS"]
