"""``georep check-rule [package.module:function]``: run the law checker on a merge rule (the
one named, or the configured one): exit 0 if it is deterministic, commutative, associative and
idempotent on 200 generated cases, 1 with the minimal counterexample if a law fails."""

from __future__ import annotations

import argparse
import sys

from service.surfaces.commands._common import OK, PROBLEM, config_of

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


def execute(args: argparse.Namespace) -> int:
    from resolvers.registry import build
    from service.errors import LawViolation

    if args.rule is not None:
        name, options = "rules", {"rule": args.rule}
    else:
        config = config_of(args)
        name, options = config.table.resolver, dict(config.table.resolver_options)
        if name != "rules":
            print(f"georep: resolver {name!r} is built in; its laws are georep's own tests")
            return OK
        if options.get("unsafe", False):
            print(f"georep: rule {options['rule']!r} is marked unsafe = true: not checked")
            return OK
    try:
        build(name, check_laws=True, **{k: v for k, v in options.items() if k != "unsafe"})
    except LawViolation as violation:
        print(f"georep: rule {options['rule']!r} fails a law: {violation}", file=sys.stderr)
        return PROBLEM
    print(
        f"georep: rule {options['rule']!r} is deterministic, commutative, associative and "
        "idempotent on 200 generated cases"
    )
    return OK
