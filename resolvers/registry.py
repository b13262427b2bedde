"""One registry: a resolver by name, as the configuration names it.

>>> build("version-counter", attribute="version").attribute
'version'

Building a resolver is cheap and never checks laws: that happens on every start (a Lambda
cold start, each ``GeorepTable``). A user rule's laws are checked once, at configuration time,
by an explicit ``build(..., check_laws=True)`` (``georep check-rule``, ``georep run``).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from resolvers._protocol import Resolver
from resolvers.lww import LastWriterWins
from resolvers.rules import load_rule
from resolvers.version_counter import VersionCounter
from service.errors import RuleError

# Each resolver's options: name -> (type, what to write). The one copy of these rules: the
# configuration (service.config) refuses a bad option with them when it parses georep.toml.
_OPTIONS: dict[str, dict[str, tuple[type, str]]] = {
    "lww": {},
    "version-counter": {"attribute": (str, 'the name of a numeric attribute, e.g. "version"')},
    "rules": {
        "rule": (str, '"package.module:attribute" or an entry point name'),
        "unsafe": (bool, "true or false"),
    },
}
_KIND = {str: "string", bool: "boolean"}
NAMES = tuple(_OPTIONS)


def check_name(name: str) -> None:
    """Raise RuleError unless ``name`` is a known resolver."""
    if name not in NAMES:
        raise RuleError(f"unknown resolver {name!r} (known: {', '.join(NAMES)})")


def check_options(name: str, options: Mapping[str, Any]) -> None:
    """Raise RuleError naming the option and the fix unless ``options`` suit resolver ``name``
    (e.g. ``attribute = 5`` for version-counter: it must be an attribute's name)."""
    check_name(name)
    allowed = _OPTIONS[name]
    unknown = set(options) - set(allowed)
    if unknown:
        raise RuleError(
            f"resolver {name!r} does not take option(s) {sorted(unknown)} "
            f"(it takes: {sorted(allowed) or 'none'})"
        )
    for option, value in options.items():
        kind, wanted = allowed[option]
        # NOTE: bool is an int, and a string "false" is truthy: compare types exactly.
        if type(value) is not kind or (isinstance(value, str) and not value.strip()):
            raise RuleError(
                f"resolver {name!r} option {option!r} must be {wanted} (a {_KIND[kind]}), "
                f"got {value!r} ({type(value).__name__})"
            )
    if name == "rules" and "rule" not in options:
        raise RuleError('resolver "rules" needs option rule = "package.module:attribute"')


def build(name: str, /, *, check_laws: bool = False, **options: Any) -> Resolver:
    """The resolver called ``name``, configured by ``options``.

    ``"rules"`` takes ``rule="package.module:attribute"`` (or an entry point name). With
    ``check_laws=True`` its laws are checked first (raising LawViolation with the minimal
    counterexample; about 1 s, and it imports Hypothesis), unless ``unsafe=True``. Without it
    nothing is checked: check once at configuration time, not on every start.
    """
    check_options(name, options)
    if name == "lww":
        return LastWriterWins()
    if name == "version-counter":
        return VersionCounter(attribute=options.get("attribute"))
    resolver = load_rule(options["rule"])
    if check_laws and not options.get("unsafe", False):
        from resolvers.checker import check

        check(resolver)
    return resolver
