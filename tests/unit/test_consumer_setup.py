"""A consumer starting while its region misbehaves: an answer cut short is an AWS error, not a
KeyError, and what waiting may fix is waited out (session 38: a chaos run's consumer, restarted
during a fault, exited with "unexpected KeyError: 'Table'", and the run failed its verdict)."""

from __future__ import annotations

import threading
from typing import Any

import pytest
from botocore.exceptions import EndpointConnectionError

from service.adapters.dynamo import IncompleteResponseError
from service.adapters.streams_memory import MemoryStreams, client_error
from service.engine.wiring import RegionConsumers, transient
from service.errors import ConsumerHaltedError
from tests.doubles import Clock, ScriptedReplicator
from tests.unit.test_window import consumer


class CutShort(MemoryStreams):
    """DescribeTable answered with an empty body ``cut`` times (botocore parses it as {})."""

    cut = 0

    def describe_table(self, *, TableName: str) -> dict[str, Any]:
        if self.cut:
            self.cut -= 1
            return {}
        return super().describe_table(TableName=TableName)


def test_a_describe_table_answer_cut_short_halts_setup_as_an_aws_error_not_a_key_error() -> None:
    streams = CutShort(clock=Clock())
    streams.cut = 1
    with pytest.raises(ConsumerHaltedError) as halted:
        consumer(streams, ScriptedReplicator(), Clock()).setup()
    assert isinstance(halted.value.__cause__, IncompleteResponseError)
    assert transient(halted.value.__cause__)


@pytest.mark.parametrize(
    ("error", "waits"),
    [
        (IncompleteResponseError(operation="DescribeTable", field="Table"), True),
        (EndpointConnectionError(endpoint_url="http://127.0.0.1:1"), True),
        (client_error("ThrottlingException", "DescribeTable"), True),
        (client_error("ResourceNotFoundException", "DescribeTable"), False),
        (client_error("AccessDeniedException", "DescribeTable"), False),
    ],
)
def test_what_waiting_may_fix(error: Exception, waits: bool) -> None:
    assert waits == transient(error)


class Flaky:
    """A table's consumer whose setup halts on ``causes`` in turn, then succeeds."""

    def __init__(self, *causes: Exception) -> None:
        self.causes = list(causes)
        self.attempts = 0

    def setup(self) -> None:
        self.attempts += 1
        if self.causes:
            cause = self.causes.pop(0)
            raise ConsumerHaltedError(f"cannot start replicating r0: {cause}") from cause


def region_consumers(*consumers: Flaky) -> RegionConsumers:
    made = RegionConsumers.__new__(RegionConsumers)  # the consumers only, no clients
    made.tables = [f"t{n}" for n in range(len(consumers))]
    made.consumers = list(consumers)  # type: ignore[arg-type]
    return made


def test_a_consumer_set_up_while_its_region_is_cut_off_waits_for_it() -> None:
    cut_off = Flaky(
        IncompleteResponseError(operation="DescribeTable", field="Table"),
        EndpointConnectionError(endpoint_url="http://127.0.0.1:1"),
    )
    stop = threading.Event()
    waited: list[float] = []
    stop.wait = lambda timeout=None: waited.append(timeout) or False  # type: ignore[method-assign]
    region_consumers(cut_off).setup(stop=stop)
    assert 3 == cut_off.attempts and 2 == len(waited)


def test_what_waiting_cannot_fix_halts_setup_at_once() -> None:
    gone = Flaky(client_error("ResourceNotFoundException", "DescribeTable"))
    with pytest.raises(ConsumerHaltedError):
        region_consumers(gone, Flaky()).setup(stop=threading.Event())
    assert 1 == gone.attempts


def test_a_stop_asked_for_while_setup_waits_ends_the_wait() -> None:
    stop = threading.Event()
    stop.set()
    cut_off = Flaky(EndpointConnectionError(endpoint_url="http://127.0.0.1:1"))
    with pytest.raises(ConsumerHaltedError):
        region_consumers(cut_off).setup(stop=stop)
    assert 1 == cut_off.attempts
