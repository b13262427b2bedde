"""Hypothesis profiles: ``ci`` (derandomized, in make test), ``deep`` (make test-deep),
``triage`` (ci without shrinking), ``deep-triage`` (deep without shrinking) and ``dev`` (the
default)."""

from __future__ import annotations

import os
from typing import Any

from hypothesis import HealthCheck, Phase, settings

settings.register_profile(
    "ci",
    max_examples=200,
    stateful_step_count=50,
    derandomize=True,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
settings.register_profile(
    "deep",
    max_examples=5000,
    stateful_step_count=50,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
    print_blob=True,
)
# The ci profile without shrinking: the first failing schedule, at once (shrinking a long
# stateful run can take minutes). For triage only.
settings.register_profile(
    "triage",
    parent=settings.get_profile("ci"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.explain],
)
settings.register_profile(
    "dev", max_examples=50, stateful_step_count=30, deadline=None, print_blob=True
)
# The deep profile without shrinking: a failing seed of `make test-deep` replayed in seconds
# (shrinking a 50-step schedule of the rule machines took more than 35 minutes).
settings.register_profile(
    "deep-triage",
    parent=settings.get_profile("deep"),
    phases=[Phase.explicit, Phase.reuse, Phase.generate, Phase.target, Phase.explain],
)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))


def pytest_terminal_summary(terminalreporter: object) -> None:
    """How many records the bad-input fuzzing tried (tests/property/test_bad_input.py)."""
    import sys

    module = sys.modules.get("tests.property.test_bad_input")
    tried = getattr(module, "TRIED", None)
    if tried:
        total = sum(tried.values())
        kinds = ", ".join(f"{count:,} {kind}" for kind, count in sorted(tried.items()))
        terminalreporter.write_line(f"bad-input fuzzing: {total:,} records tried ({kinds})")  # type: ignore[attr-defined]


# The files that take a minute or more of make test (measured with --durations on 2 cores),
# longest first. Collected first, so that with a file per worker (make test: xdist, loadfile)
# they start at once instead of running alone at the end while the other core idles.
LONGEST_FILES = (
    "tests/property/test_rules_convergence.py",
    "tests/integration/test_backfill.py",
    "tests/chaos/test_chaos_run.py",
    "tests/integration/test_replication.py",
    "tests/property/test_collection.py",
    "tests/integration/test_verify.py",
    "tests/integration/test_status_and_dlq.py",
    "tests/property/test_stream_reader.py",
)


def pytest_collection_modifyitems(items: list[Any]) -> None:
    rank = {path: n for n, path in enumerate(LONGEST_FILES)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(rank)))
