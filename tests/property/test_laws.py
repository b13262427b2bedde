"""Every shipped resolver and field helper obeys the laws; ``check`` catches rules that don't."""

from __future__ import annotations

import pytest

from resolvers import (
    FieldRules,
    LastWriterWins,
    Resolver,
    UserRule,
    VersionCounter,
    build,
    check,
    field_rules,
    maximum,
    minimum,
    pn_add,
    pn_counter,
    pn_value,
    prefer_region,
    union,
)
from resolvers.fields import lww
from resolvers.rules import load_rule
from service.errors import LawViolation, RuleError
from tests.property import example_rules

LAWFUL: dict[str, Resolver] = {
    "lww": LastWriterWins(),
    "version-counter": VersionCounter(),
    "version-counter-attribute": VersionCounter("version"),
    "fields-lww": field_rules(),
    "fields-default-lww": field_rules(default=lww(), name=lww()),
    "fields-maximum": field_rules(score=maximum()),
    "fields-minimum": field_rules(score=minimum()),
    "fields-union": field_rules(tags=union()),
    "fields-pn-counter": field_rules(likes=pn_counter()),
    "fields-prefer-region": field_rules(name=prefer_region("r1"), score=prefer_region("r0")),
    "fields-all": field_rules(tags=union(), score=maximum(), likes=pn_counter()),
    "rules-union-tags": UserRule(example_rules.union_tags, "union_tags"),
}


@pytest.mark.parametrize("name", sorted(LAWFUL))
def test_shipped_resolver_obeys_every_law(name: str) -> None:
    """check() finds no counterexample to determinism, commutativity, associativity or
    absorption for the resolver."""
    check(LAWFUL[name])


def test_local_wins_rule_is_reported_as_not_commutative() -> None:
    """A rule that keeps its first argument fails the commutative law, with inputs attached."""
    with pytest.raises(LawViolation) as caught:
        check(UserRule(example_rules.local_wins, "local_wins"))
    assert "commutative" == caught.value.law
    counterexample = caught.value.counterexample
    assert isinstance(counterexample, tuple)
    assert 2 == len(counterexample)


def test_rule_reading_the_clock_is_reported_as_not_deterministic() -> None:
    """A rule that writes time.time_ns() into the item gives different bytes on a re-run."""
    with pytest.raises(LawViolation) as caught:
        check(UserRule(example_rules.stamped_now, "stamped_now"))
    assert "deterministic" == caught.value.law


def test_rule_that_raises_becomes_a_rule_error_naming_the_rule() -> None:
    """An exception inside a rule surfaces as RuleError with the rule's label and cause."""

    def broken(a: object, b: object) -> dict[str, object]:
        raise KeyError("tags")

    with pytest.raises(RuleError, match=r"broken.*KeyError"):
        check(UserRule(broken, "broken"), max_examples=5)


def test_registry_builds_every_named_resolver() -> None:
    """build() returns the resolver each configuration name stands for."""
    assert LastWriterWins() == build("lww")
    assert VersionCounter() == build("version-counter")
    assert VersionCounter("version") == build("version-counter", attribute="version")
    rule = build("rules", rule="tests.property.example_rules:union_tags")
    assert isinstance(rule, UserRule)
    assert isinstance(build("rules", rule="tests.property.example_rules:profile"), FieldRules)


def test_registry_refuses_an_unlawful_rule_unless_unsafe() -> None:
    """A rule breaking a law is refused by the explicit configuration-time check
    (check_laws=True); unsafe=True accepts it."""
    with pytest.raises(LawViolation):
        build("rules", check_laws=True, rule="tests.property.example_rules:local_wins")
    rule = build(
        "rules", check_laws=True, rule="tests.property.example_rules:local_wins", unsafe=True
    )
    assert "rules" == rule.name


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ("", "empty"),
        ("no_such_entry_point", "entry point"),
        ("no.such.module:rule", "cannot import"),
        ("tests.property.example_rules:missing", "no attribute"),
        ("tests.property.example_rules:not_a_rule", "not a callable"),
        (":rule", "package.module:attribute"),
    ],
)
def test_bad_rule_specs_get_a_clear_error(spec: str, message: str) -> None:
    """load_rule() explains what is wrong with a spec instead of failing obscurely."""
    with pytest.raises(RuleError, match=message):
        load_rule(spec)


def test_registry_rejects_unknown_names_and_options() -> None:
    """Unknown resolver names and options are configuration errors that name the fix."""
    with pytest.raises(RuleError, match="unknown resolver"):
        build("crdt")
    with pytest.raises(RuleError, match="does not take"):
        build("lww", attribute="x")


def test_pn_counter_adds_increments_from_each_region() -> None:
    """pn_add counts per region; pn_value sums increments minus decrements."""
    counter = pn_add(pn_add(pn_add(None, "eu", 2), "us", 3), "eu", -1)
    assert 4 == pn_value(counter)
