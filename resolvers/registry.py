"""One registry: a resolver by name, as the configuration names it.

>>> build("version-counter", attribute="version").attribute
'version'

Building a resolver is cheap and never checks laws: that happens on every start (a Lambda
cold start, each ``GeorepTable``). A user rule's laws are checked once, at configuration time,
by an explicit ``build(..., check_laws=True)`` (``georep check-rule``, ``georep run``).
"""

from __future__ import annotations

from typing import Any

from resolvers._protocol import Resolver
from resolvers.lww import LastWriterWins
from resolvers.rules import load_rule
from resolvers.version_counter import VersionCounter
from service.errors import RuleError

NAMES = ("lww", "version-counter", "rules")


def _options(name: str, options: dict[str, Any], allowed: set[str]) -> None:
    unknown = set(options) - allowed
    if unknown:
        raise RuleError(
            f"resolver {name!r} does not take option(s) {sorted(unknown)} "
            f"(it takes: {sorted(allowed) or 'none'})"
        )


def build(name: str, /, *, check_laws: bool = False, **options: Any) -> Resolver:
    """The resolver called ``name``, configured by ``options``.

    ``"rules"`` takes ``rule="package.module:attribute"`` (or an entry point name). With
    ``check_laws=True`` its laws are checked first (raising LawViolation with the minimal
    counterexample; about 1 s, and it imports Hypothesis), unless ``unsafe=True``. Without it
    nothing is checked: check once at configuration time, not on every start.
    """
    if name == "lww":
        _options(name, options, set())
        return LastWriterWins()
    if name == "version-counter":
        _options(name, options, {"attribute"})
        return VersionCounter(attribute=options.get("attribute"))
    if name == "rules":
        _options(name, options, {"rule", "unsafe"})
        spec = options.get("rule")
        if not isinstance(spec, str):
            raise RuleError("resolver 'rules' needs option rule='package.module:attribute'")
        resolver = load_rule(spec)
        if check_laws and not options.get("unsafe", False):
            from resolvers.checker import check

            check(resolver)
        return resolver
    raise RuleError(f"unknown resolver {name!r} (known: {', '.join(NAMES)})")
