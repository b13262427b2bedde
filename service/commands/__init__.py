"""The ``georep`` subcommands, one module each.

Each module names its command (``NAME``, ``HELP``), adds its options (``configure``) and runs
it (``execute(args) -> exit code``); it imports what it needs inside ``execute``, so
``georep --help`` and a mistyped option stay instant. Exit codes: 0 success, 1 a check found a
problem (divergence, failed laws, needs repair) or the work failed, 2 usage or configuration.
"""

from __future__ import annotations

from service.commands import check_rule, demo, init, run, verify

COMMANDS = (demo, init, run, check_rule, verify)

__all__ = ["COMMANDS"]
