"""One registry: a resolver by name, as the configuration names it.

>>> build("version-counter", attribute="version").attribute
'version'
"""

from __future__ import annotations

from typing import Any

from resolvers._protocol import Resolver
from resolvers.checker import check
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


def build(name: str, **options: Any) -> Resolver:
    """The resolver called ``name``, configured by ``options``.

    ``"rules"`` takes ``rule="package.module:attribute"`` (or an entry point name) and checks
    the rule's laws first (raising LawViolation); ``unsafe=True`` skips the check.
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
        if not options.get("unsafe", False):
            check(resolver)
        return resolver
    raise RuleError(f"unknown resolver {name!r} (known: {', '.join(NAMES)})")
