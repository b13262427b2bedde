"""The write-capacity token bucket: its two laws under any schedule, and DynamoDB's unit cost."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.engine.ratelimit import TokenBucket, write_units

EPSILON = 1e-6

schedules = st.lists(
    st.tuples(st.floats(0, 5, allow_nan=False), st.integers(1, 40)), min_size=1, max_size=40
)


def _grants(rate: float, burst: float, schedule: list[tuple[float, int]]) -> list[float]:
    """When each reservation may be used: the caller asks ``gap`` seconds after the previous
    one was granted (it waited what reserve() said, then worked a while)."""
    now = [100.0]
    bucket = TokenBucket(rate, burst=burst, clock=lambda: now[0])
    grants = []
    for gap, cost in schedule:
        now[0] += gap
        now[0] += bucket.reserve(cost)
        grants.append(now[0])
    return grants


@given(rate=st.floats(0.5, 500), burst=st.floats(1, 100), schedule=schedules)
def test_no_window_between_two_grants_carries_more_than_the_burst_plus_the_rate(
    rate: float, burst: float, schedule: list[tuple[float, int]]
) -> None:
    """For any two reservations i < k: the units of i+1..k are at most
    ``burst + rate * (grant_k - grant_i)``, so a table never takes more than the rate for
    longer than a burst."""
    grants = _grants(rate, burst, schedule)
    costs = [cost for _, cost in schedule]
    for i in range(len(grants)):
        for k in range(i + 1, len(grants)):
            assert sum(costs[i + 1 : k + 1]) <= burst + rate * (grants[k] - grants[i]) + EPSILON


@given(rate=st.floats(1, 500), costs=st.lists(st.integers(1, 10), min_size=1, max_size=30))
def test_a_caller_that_stays_under_the_rate_never_waits(rate: float, costs: list[int]) -> None:
    """Each reservation comes at least cost/rate after the previous one, within the burst
    (waits of float rounding only)."""
    now = [0.0]
    bucket = TokenBucket(rate, burst=10, clock=lambda: now[0])
    for cost in costs:
        assert bucket.reserve(cost) < EPSILON
        now[0] += cost / rate


def test_a_reservation_larger_than_the_burst_waits_for_its_debt_and_so_does_the_next() -> None:
    now = [0.0]
    bucket = TokenBucket(10, clock=lambda: now[0])  # burst 10
    assert 0.0 == bucket.reserve(10)
    assert 3.0 == bucket.reserve(30)  # 300 KB item: 30 units at 10/s
    now[0] += 3.0
    assert 0.1 == round(bucket.reserve(1), 6)


def test_an_idle_bucket_refills_only_up_to_its_burst() -> None:
    now = [0.0]
    bucket = TokenBucket(5, burst=5, clock=lambda: now[0])
    assert 0.0 == bucket.reserve(5)
    now[0] += 3600.0
    assert 0.0 == bucket.reserve(5)
    assert 1.0 == bucket.reserve(5)


def test_a_clock_going_backwards_adds_no_tokens() -> None:
    now = [10.0]
    bucket = TokenBucket(1, burst=1, clock=lambda: now[0])
    assert 0.0 == bucket.reserve(1)
    now[0] = 5.0
    assert 1.0 == bucket.reserve(1)


def test_a_write_costs_one_unit_per_started_kilobyte_and_at_least_one() -> None:
    assert 1 == write_units({"pk": {"S": "a"}})
    assert 1 == write_units({"pk": {"S": "a" * 1020}})  # 2 + 1020 bytes
    assert 2 == write_units({"pk": {"S": "a" * 1023}})
    assert 300 == write_units({"pk": {"S": "k"}, "blob": {"B": b"x" * (300 * 1024 - 7)}})
