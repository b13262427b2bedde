"""The checkpoint rule (service/core/checkpoints.py) and the in-memory store that applies it;
tests/integration/test_checkpoints.py shows DynamoDB's condition refuses the same saves."""

from __future__ import annotations

from hypothesis import given
from hypothesis import strategies as st

from service.adapters.checkpoints import MemoryCheckpoints
from service.core.checkpoints import ShardState, may_save, position_key

# AWS's sequence numbers are 21 to 40 digits; shorter ones keep the string order honest.
sequences = st.integers(0, 10**40 - 1).map(str)


@given(sequences, sequences)
def test_position_keys_sort_as_the_sequence_numbers_do_as_integers(a: str, b: str) -> None:
    assert (int(a) < int(b)) == (position_key(a) < position_key(b))


def test_a_sequence_number_is_compared_as_an_integer_not_as_a_string() -> None:
    """ "9" < "10" as numbers, not as strings: a shorter sequence number is an earlier one."""
    assert may_save(ShardState(sequence="9"), ShardState(sequence="10"))
    assert not may_save(ShardState(sequence="10"), ShardState(sequence="9"))


def test_a_checkpoint_only_moves_forward() -> None:
    cases = [
        (None, ShardState(), True),  # discovery creates
        (None, ShardState(sequence="5"), True),
        (ShardState(), ShardState(), False),  # a peer's discovery never replaces a state
        (ShardState(sequence="5"), ShardState(created_after=1.0), False),  # nor resets one
        (ShardState(), ShardState(sequence="5"), True),
        (ShardState(sequence="5"), ShardState(sequence="6"), True),
        (ShardState(sequence="5"), ShardState(sequence="5"), False),  # not forward
        (ShardState(sequence="6"), ShardState(sequence="5"), False),
        (ShardState(sequence="6"), ShardState(sequence="5", finished=True), True),
        (ShardState(finished=True), ShardState(sequence="9"), False),  # finished stays so
        (ShardState(finished=True), ShardState(finished=True), False),
        (ShardState(finished=True), ShardState(), False),
    ]
    assert [expected for _, _, expected in cases] == [may_save(s, n) for s, n, _ in cases]


def test_the_memory_store_refuses_what_the_rule_refuses() -> None:
    store = MemoryCheckpoints()
    assert store.save("s", ShardState(created_after=1.0))
    assert store.save("s", ShardState(sequence="12", created_after=1.0))
    assert not store.save("s", ShardState(created_after=2.0))
    assert not store.save("s", ShardState(sequence="6", created_after=1.0))
    assert {"s": ShardState(sequence="12", created_after=1.0)} == store.load()
