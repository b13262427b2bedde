"""``georep run`` with several tables: one consumer per table in threads of one process. What
one of them raises stops the others and comes out of ``RegionConsumers.run`` in the caller's
thread (a halt naming its table), as a single consumer's would. No network: the consumers'
loops are replaced."""

from __future__ import annotations

import threading

import pytest

from service.config import parse_config
from service.engine.wiring import RegionConsumers
from service.errors import ConsumerHaltedError

DOC = {
    "tables": [
        {"name": "orders", "partition_key": "pk"},
        {"name": "counters", "partition_key": "id", "partition_key_type": "N"},
    ],
    "regions": [
        {"name": "eu-west-1", "endpoint_url": "http://127.0.0.1:9"},
        {"name": "us-east-1", "endpoint_url": "http://127.0.0.1:9"},
    ],
}


def consumers(failure: BaseException) -> tuple[RegionConsumers, list[str]]:
    """The region's consumers: orders' raises ``failure``; counters' polls until stopped."""
    region = RegionConsumers(parse_config(DOC), region="eu-west-1")
    stopped: list[str] = []

    def fails(*, stop: threading.Event, idle_exit_after: float | None = None) -> None:
        raise failure

    def polls(*, stop: threading.Event, idle_exit_after: float | None = None) -> None:
        assert stop.wait(10), "never told to stop"
        stopped.append("counters")

    orders, counters = region.consumers
    orders.run = fails  # type: ignore[method-assign]
    counters.run = polls  # type: ignore[method-assign]
    return region, stopped


def test_one_consumer_per_configured_table_sharing_the_regions_clients() -> None:
    region = RegionConsumers(parse_config(DOC), region="eu-west-1")
    try:
        assert ["orders", "counters"] == [c.table_name for c in region.consumers]
        assert all(c.dynamodb == region.dynamodb for c in region.consumers)
    finally:
        region.close()


def test_a_halting_consumer_stops_the_others_and_names_its_table() -> None:
    region, stopped = consumers(ConsumerHaltedError("eu-west-1: AWS rejected the credentials"))

    with pytest.raises(ConsumerHaltedError) as halted:
        region.run(stop=threading.Event())
    assert "table orders: eu-west-1: AWS rejected the credentials" == str(halted.value)
    assert ["counters"] == stopped


def test_an_unexpected_error_in_one_consumer_is_raised_not_swallowed() -> None:
    """A bug in one table's loop ends `georep run` with it (exit 1), never a quiet exit 0."""
    region, stopped = consumers(RuntimeError("a bug"))

    with pytest.raises(RuntimeError, match="a bug"):
        region.run(stop=threading.Event())
    assert ["counters"] == stopped
