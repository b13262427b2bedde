"""``georep check-rule [package.module:function]``: run the law checker on a merge rule (the
one named, or the configured one): exit 0 if it is deterministic, commutative, associative and
idempotent on 200 generated cases, 1 with the minimal counterexample if a law fails."""

from __future__ import annotations

import argparse
import sys

from service.surfaces.commands._common import (
    OK,
    PROBLEM,
    add_json,
    add_table,
    config_of,
    report,
    table_of,
)

NAME = "check-rule"
HELP = "check a merge rule's laws (once, at deploy time; about 1 s)"
EXAMPLES = (
    ("georep check-rule", "the configured rule"),
    ("georep check-rule mypackage.rules:merge_cart", "exit 1 with the minimal counterexample"),
)


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "rule",
        nargs="?",
        default=None,
        help="package.module:function (default: the rule in the configuration)",
    )
    add_table(parser, "the one table configured (required with several)")
    add_json(parser)


def execute(args: argparse.Namespace) -> int:
    from resolvers.registry import build
    from service.errors import LawViolation

    if args.rule is not None:
        name, options = "rules", {"rule": args.rule}
    else:
        config = table_of(args, config_of(args))  # several tables: --table says whose
        name, options = config.table.resolver, dict(config.table.resolver_options)
        if name != "rules":
            return _said(
                args,
                OK,
                resolver=name,
                rule=None,
                result="built in",
                line=f"resolver {name!r} is built in; its laws are georep's own tests",
            )
        if options.get("unsafe", False):
            return _said(
                args,
                OK,
                resolver=name,
                rule=options["rule"],
                result="not checked",
                line=f"rule {options['rule']!r} is marked unsafe = true: not checked",
            )
    rule = options["rule"]
    try:
        build(name, check_laws=True, **{k: v for k, v in options.items() if k != "unsafe"})
    except LawViolation as violation:
        return _said(
            args,
            PROBLEM,
            resolver=name,
            rule=rule,
            result="fails a law",
            line=f"rule {rule!r} fails a law: {violation}",
            law=violation.law,
            counterexample=repr(violation.counterexample),
        )
    return _said(
        args,
        OK,
        resolver=name,
        rule=rule,
        result="lawful",
        line=f"rule {rule!r} is deterministic, commutative, associative and idempotent on "
        f"{CASES} generated cases",
    )


CASES = 200


def _said(
    args: argparse.Namespace,
    code: int,
    *,
    resolver: str,
    rule: str | None,
    result: str,
    line: str,
    law: str | None = None,
    counterexample: str | None = None,
) -> int:
    """One line for people (stderr when a law fails), or the ``--json`` document."""
    if args.json:
        summary = {"resolver": resolver, "rule": rule, "result": result, "message": line}
        if code != OK:
            summary |= {"law": law, "counterexample": counterexample}
        report(args, title="georep check-rule", columns=(), rows=(), summary=summary)
    else:
        print(f"georep: {line}", file=sys.stderr if code != OK else sys.stdout)
    return code
