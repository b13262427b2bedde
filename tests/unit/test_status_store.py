"""What ``georep status`` says about a region's tombstone store (issue 22), as plain functions
of what it read: a missing store or one whose TTL is off is a problem with a reason, a healthy
one is shown with its estimated item count, and the JSON gains the store beside the fields it
had."""

from __future__ import annotations

import pytest

from service.engine.status import (
    RegionView,
    StoreView,
    is_problem,
    notes,
    region_record,
    store_cell,
    store_problem,
)

NOW = 1_800_000_000.0
STORE = "georep-tombstones"


def view(store: StoreView | None, **fields: object) -> RegionView:
    base: dict[str, object] = {"region": "eu-west-1", "table": "orders", "dead_letters": 0}
    return RegionView(**(base | fields), store=store)  # type: ignore[arg-type]


HEALTHY = StoreView(
    STORE, exists=True, item_count=1234, ttl_status="ENABLED", ttl_attribute="_georep_ttl"
)


def test_a_healthy_store_is_no_problem_and_shows_its_estimated_count_and_ttl() -> None:
    region = view(HEALTHY)
    assert None is store_problem(region)
    assert not is_problem(region)
    assert "georep-tombstones, ~1,234 items, TTL on" == store_cell(region)
    assert {} == notes(region, now=NOW)
    assert {
        "table": STORE,
        "exists": True,
        "item_count": 1234,
        "ttl": "ENABLED",
        "ttl_attribute": "_georep_ttl",
        "problem": None,
    } == region_record(region, now=NOW)["tombstone_store"]


def test_a_missing_store_is_a_problem_that_names_what_stops_and_what_creates_it() -> None:
    region = view(StoreView(STORE, exists=False))
    assert is_problem(region)
    assert "georep-tombstones MISSING" == store_cell(region)
    [(name, line)] = notes(region, now=NOW).items()
    assert "eu-west-1 tombstone store" == name
    assert "does not exist" in line and "deletes" in line and "georep init" in line
    record = region_record(region, now=NOW)["tombstone_store"]
    assert (False, line) == (record["exists"], record["problem"])


@pytest.mark.parametrize(
    ("status", "attribute", "cell"),
    [
        ("DISABLED", None, "TTL disabled"),
        (None, None, "TTL disabled"),
        ("DISABLING", "_georep_ttl", "TTL disabling"),
        ("ENABLED", "expires", "TTL on expires"),
    ],
)
def test_a_store_whose_ttl_never_collects_tombstones_is_a_problem(
    status: str | None, attribute: str | None, cell: str
) -> None:
    region = view(
        StoreView(STORE, exists=True, item_count=0, ttl_status=status, ttl_attribute=attribute)
    )
    assert is_problem(region)
    assert f"georep-tombstones, ~0 items, {cell} (PROBLEM)" == store_cell(region)
    problem = store_problem(region)
    assert problem is not None and "never collected" in problem
    assert {"eu-west-1 tombstone store": problem} == notes(region, now=NOW)


def test_ttl_turning_on_is_no_problem() -> None:
    turning = StoreView(
        STORE, exists=True, item_count=None, ttl_status="ENABLING", ttl_attribute="_georep_ttl"
    )
    assert not is_problem(view(turning))
    assert "georep-tombstones, ? items, TTL turning on" == store_cell(view(turning))


def test_without_the_store_status_says_nothing_about_one() -> None:
    """The store off: no cell, no note, no problem; JSON keeps the key, null."""
    region = view(None)
    assert (None, False, "-") == (store_problem(region), is_problem(region), store_cell(region))
    assert None is region_record(region, now=NOW)["tombstone_store"]


def test_an_unreadable_region_is_one_problem_not_two() -> None:
    """A region status could not read says so once (its error); it has no store verdict."""
    region = view(StoreView(STORE, exists=False), error="AccessDeniedException: no")
    assert is_problem(region) and None is store_problem(region)
    assert "-" == store_cell(region)
