"""The stream reader's bookkeeping: lineage, closed shards, expired iterators, trimmed data.

A scripted stand-in for the streams client plays the server's side of the protocol (the real
one is exercised over HTTP in tests/integration); here we need errors the emulators cannot be
made to produce on demand. (tests/unit/test_consumer.py and tests/property/test_stream_reader.py
use service/adapters/streams_memory.py, which also ages records out and replaces streams.)
"""

from __future__ import annotations

from typing import Any, cast

import pytest
from botocore.exceptions import ClientError

from service.adapters.checkpoints import MemoryCheckpoints
from service.adapters.metrics import MemoryMetrics
from service.engine.streams import StreamReader
from service.ports import ShardState


def _trimmed(reader: StreamReader) -> float:
    """How many losses the reader reported (its default metrics are in memory)."""
    return cast(MemoryMetrics, reader.metrics).total("trimmed_data")


def _error(code: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": code}}, "GetRecords")


class ScriptedStreams:
    """Shards with records; ``closed`` shards end; errors can be queued per operation."""

    def __init__(self, shards: dict[str, tuple[str | None, list[str], bool]]) -> None:
        self.shards = shards  # id -> (parent, sequence numbers, closed)
        self.errors: dict[str, list[ClientError]] = {"get_records": [], "get_shard_iterator": []}

    def describe_stream(self, **_: Any) -> dict[str, Any]:
        return {
            "StreamDescription": {
                "Shards": [
                    {"ShardId": sid, **({"ParentShardId": p} if p else {})}
                    for sid, (p, _, _) in self.shards.items()
                ]
            }
        }

    def get_shard_iterator(
        self, *, ShardId: str, ShardIteratorType: str, **kw: Any
    ) -> dict[str, Any]:
        if self.errors["get_shard_iterator"]:
            raise self.errors["get_shard_iterator"].pop(0)
        seqs = self.shards[ShardId][1]
        start = {
            "TRIM_HORIZON": lambda: 0,
            "AT_SEQUENCE_NUMBER": lambda: seqs.index(kw["SequenceNumber"]),
            "AFTER_SEQUENCE_NUMBER": lambda: seqs.index(kw["SequenceNumber"]) + 1,
        }[ShardIteratorType]()
        return {"ShardIterator": f"{ShardId}:{start}"}

    def get_records(self, *, ShardIterator: str, Limit: int) -> dict[str, Any]:
        if self.errors["get_records"]:
            raise self.errors["get_records"].pop(0)
        shard, start = ShardIterator.split(":")
        _, seqs, closed = self.shards[shard]
        batch = seqs[int(start) : int(start) + Limit]
        end = int(start) + len(batch)
        records = [{"dynamodb": {"SequenceNumber": s}} for s in batch]
        following = None if closed and end >= len(seqs) else f"{shard}:{end}"
        return {"Records": records, **({"NextShardIterator": following} if following else {})}


def test_a_child_shard_is_read_only_after_its_parent_is_finished() -> None:
    streams = ScriptedStreams({"p": (None, ["1", "2"], True), "c": ("p", ["3"], False)})
    reader = StreamReader(streams, stream_arn="arn", checkpoints=MemoryCheckpoints(), batch_size=10)
    assert ["p"] == reader.ready_shards()
    batch = reader.read("p")
    assert ["1", "2"] == [r["dynamodb"]["SequenceNumber"] for r in batch.records]
    assert batch.closed
    assert ["p"] == reader.ready_shards()  # not finished until the batch is committed
    reader.commit("p", sequence="2", finished=True)
    assert ["c"] == reader.ready_shards()


def test_a_child_whose_parent_is_gone_unread_is_ready_and_the_loss_is_loud() -> None:
    """Rule 3: the parent was never read to its end by this consumer (here: a first start on a
    stream older than its retention), so its records were never replicated."""
    streams = ScriptedStreams({"c": ("trimmed-parent", ["3"], False)})
    store = MemoryCheckpoints()
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store)
    assert ["c"] == reader.ready_shards()
    assert store.repair is not None and "trimmed-parent" in store.repair
    assert 1 == _trimmed(reader)


def test_a_checkpointed_parent_that_aged_out_is_loud_not_skipped() -> None:
    """Finding 3 of issue 7: a consumer stopped for over a day finds its checkpointed shard gone
    from the stream. Its child is read (from the trim horizon), but the records after the
    checkpoint are lost: a repair marker and the trimmed_data metric, as for trimming inside a
    listed shard, and only once."""
    streams = ScriptedStreams({"child": ("parent", ["7"], False)})
    store = MemoryCheckpoints()
    store.save("parent", ShardState(sequence="3"))
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store)
    assert ["child"] == reader.ready_shards()
    assert store.repair is not None and "parent" in store.repair
    assert 1 == _trimmed(reader)
    assert store.shards["parent"].finished  # reported once: a restart does not report it again
    restarted = StreamReader(streams, stream_arn="arn", checkpoints=store)
    assert ["child"] == restarted.ready_shards()
    assert 0 == _trimmed(restarted)


def test_a_finished_parent_that_aged_out_is_not_a_loss() -> None:
    streams = ScriptedStreams({"child": ("parent", ["7"], False)})
    store = MemoryCheckpoints()
    store.save("parent", ShardState(sequence="3", finished=True))
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store)
    assert ["child"] == reader.ready_shards()
    assert None is store.repair


def test_reading_resumes_after_the_checkpoint_after_a_restart() -> None:
    streams = ScriptedStreams({"s": (None, ["1", "2", "3"], False)})
    store = MemoryCheckpoints()
    store.save("s", ShardState(sequence="2"))
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store)
    reader.ready_shards()
    assert ["3"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]


def test_an_expired_iterator_resumes_after_the_last_record_handed_out() -> None:
    """Records handed out may still be in flight (read ahead): an iterator that expired is
    taken again after the last of them, not at the checkpoint (which would hand them out
    twice); a rewind (after a failure, once they settled) goes back to the checkpoint."""
    streams = ScriptedStreams({"s": (None, ["1", "2"], False)})
    reader = StreamReader(streams, stream_arn="arn", checkpoints=MemoryCheckpoints(), batch_size=1)
    reader.ready_shards()
    assert 1 == len(reader.read("s").records)  # read "1", not committed
    streams.errors["get_records"].append(_error("ExpiredIteratorException"))
    assert [] == reader.read("s").records
    assert ["2"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]
    reader.rewind("s")
    # Nothing was committed, so reading starts again at the first record read: "1" again.
    assert ["1"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]


def test_a_rewind_replays_from_the_checkpoint() -> None:
    streams = ScriptedStreams({"s": (None, ["1", "2", "3"], False)})
    reader = StreamReader(streams, stream_arn="arn", checkpoints=MemoryCheckpoints(), batch_size=2)
    reader.ready_shards()
    reader.read("s")
    reader.commit("s", sequence="1", finished=False)
    reader.rewind("s")
    assert ["2", "3"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]


def test_a_checkpoint_past_retention_is_a_loud_error_never_a_silent_skip() -> None:
    """Rule 1: the checkpoint is older than the trim horizon: marked for repair, counted, and
    read again from the trim horizon."""
    streams = ScriptedStreams({"s": (None, ["9"], False)})
    store = MemoryCheckpoints()
    store.save("s", ShardState(sequence="5"))
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store)
    reader.ready_shards()
    streams.errors["get_shard_iterator"].append(_error("TrimmedDataAccessException"))
    assert [] == reader.read("s").records
    assert store.repair is not None and "trimmed" in store.repair
    assert 1 == _trimmed(reader)
    assert ["9"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]


@pytest.mark.parametrize("code", ["InternalFailure", "InternalServerError", "500"])
def test_a_server_error_from_get_shard_iterator_is_not_taken_for_trimmed_data(code: str) -> None:
    """Finding 7 of issue 7: only TrimmedDataAccessException means trimmed. A 500 is transient:
    it propagates (the consumer backs off and retries), no repair marker, no replay from the
    trim horizon."""
    streams = ScriptedStreams({"s": (None, ["5", "9"], False)})
    store = MemoryCheckpoints()
    store.save("s", ShardState(sequence="5"))
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store)
    reader.ready_shards()
    streams.errors["get_shard_iterator"].append(_error(code))
    with pytest.raises(ClientError):
        reader.read("s")
    assert None is store.repair
    assert "5" == reader.state["s"].sequence
    assert ["9"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]


def test_shards_are_listed_again_only_periodically_or_after_one_finishes() -> None:
    """DescribeStream is rate-limited on AWS: polling must not call it every time."""
    streams = ScriptedStreams({"p": (None, ["1"], True), "c": ("p", ["2"], False)})
    calls = 0
    original = streams.describe_stream

    def counting(**kw: Any) -> dict[str, Any]:
        nonlocal calls
        calls += 1
        return original(**kw)

    streams.describe_stream = counting  # type: ignore[method-assign]
    now = [0.0]
    reader = StreamReader(
        streams, stream_arn="arn", checkpoints=MemoryCheckpoints(), clock=lambda: now[0]
    )
    for _ in range(5):
        reader.ready_shards()
    assert 1 == calls
    reader.commit("p", sequence="1", finished=True)
    assert ["c"] == reader.ready_shards()
    assert 2 == calls
    now[0] += 11
    reader.ready_shards()
    assert 3 == calls


@pytest.mark.parametrize(("hours", "lost"), [(22.5, False), (23.5, True)])
def test_a_shard_read_from_its_trim_horizon_within_the_margin_of_24_hours_is_reported(
    hours: float, lost: bool
) -> None:
    """Rule 4's margin errs towards a marker: a shard without a checkpoint that may be 23.5 h
    old (within the hour's margin of the 24 h retention) is reported when read from its trim
    horizon; one 22.5 h old is not."""
    streams = ScriptedStreams({"s": (None, ["1"], False)})
    store = MemoryCheckpoints()
    now = 1_000_000.0
    store.save("s", ShardState(created_after=now - hours * 3600))
    reader = StreamReader(streams, stream_arn="arn", checkpoints=store, wall=lambda: now)
    reader.ready_shards()
    assert ["1"] == [r["dynamodb"]["SequenceNumber"] for r in reader.read("s").records]
    assert (1 if lost else 0) == _trimmed(reader)
