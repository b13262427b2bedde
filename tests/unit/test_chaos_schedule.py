"""service/engine/chaos/runner.py: a run's schedule of faults is a function of its seed (``--seed``
replays it), every enabled fault happens, and the run ends calm."""

from __future__ import annotations

import subprocess
import sys

from service.engine.chaos.runner import FAULTS, Plan, schedule, skews

REGIONS = ("eu-west-1", "us-east-1", "ap-southeast-2")


def test_one_seed_gives_one_schedule_and_another_seed_another() -> None:
    plan = Plan(duration=60, seed=5)
    assert schedule(plan, REGIONS) == schedule(Plan(duration=60, seed=5), REGIONS)
    assert schedule(plan, REGIONS) != schedule(Plan(duration=60, seed=6), REGIONS)
    assert skews(plan, REGIONS) == skews(Plan(duration=60, seed=5), REGIONS)


def test_the_schedule_is_the_same_in_another_process() -> None:
    """No ``hash()`` of strings in the seeds: PYTHONHASHSEED differs between processes."""
    code = (
        "from service.engine.chaos.runner import Plan, schedule;"
        "print(schedule(Plan(duration=60, seed=5), ('eu-west-1', 'us-east-1', 'ap-southeast-2')))"
    )
    there = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert str(schedule(Plan(duration=60, seed=5), REGIONS)) == there.stdout.strip()


def test_every_enabled_fault_happens_and_none_in_the_last_fifth() -> None:
    events = schedule(Plan(duration=30, seed=1), REGIONS)
    assert set(FAULTS) - {"skew"} == {e.kind for e in events}
    assert all(e.at < 30 * 0.8 for e in events)
    assert {"throttle"} == {e.kind for e in schedule(Plan(faults=frozenset({"throttle"})), REGIONS)}


def test_without_skew_every_clock_is_on_time() -> None:
    plan = Plan(faults=frozenset({"kill"}))
    assert {r: 0 for r in REGIONS} == skews(plan, REGIONS)
