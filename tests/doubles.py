"""Test doubles for driving the real stream consumer against service/adapters/streams_memory.py: a
clock
the test moves, and a replicator that records what it was handed and fails what it is told to."""

from __future__ import annotations

import threading
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Executor, Future
from dataclasses import dataclass, field
from typing import Any, TypeVar

from service.adapters.checkpoints import MemoryCheckpoints, MemoryCheckpointTable
from service.adapters.leases import MemoryLeaseTable
from service.adapters.metrics import MemoryMetrics
from service.adapters.streams_memory import MemoryStreams
from service.engine.consumer import StreamConsumer
from service.engine.leases import LeaseKeeper
from service.engine.pipeline import RecordResult
from service.ports import CheckpointTable, ShardState, StatusStore

T = TypeVar("T")


@dataclass
class Clock:
    now: float = 1_700_000_000.0

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


def key_of(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["Keys"]["pk"]["S"])


def sequence_of(record: Mapping[str, Any]) -> str:
    return str(record["dynamodb"]["SequenceNumber"])


@dataclass
class ScriptedReplicator:
    """Hands back one result per record, like service.engine.pipeline.Replicator: a record of a
    key in ``failing`` fails, and so do the later records of that key in the batch (the
    pipeline keeps per-key order by failing the rest of the key's lane). ``on_record`` sees
    every record."""

    failing: set[str] = field(default_factory=set)
    fail_all: str | None = None  # an error reason for every record: a destination is down
    handed: list[str] = field(default_factory=list)  # sequence numbers, in order
    applied: set[str] = field(default_factory=set)
    on_record: Callable[[Mapping[str, Any]], None] | None = None

    def prepare(self, records: Sequence[Mapping[str, Any]]) -> None:
        return None  # nothing to read beforehand

    def process(self, records: Sequence[Mapping[str, Any]]) -> list[RecordResult]:
        results, blocked = [], set()
        for record in records:
            key, sequence = key_of(record), sequence_of(record)
            if self.on_record is not None:
                self.on_record(record)
            self.handed.append(sequence)
            if self.fail_all or key in self.failing or key in blocked:
                blocked.add(key)
                reason = self.fail_all or "AccessDeniedException: not authorized"
                results.append(RecordResult(sequence, "failed", reason))
            else:
                self.applied.add(sequence)
                results.append(RecordResult(sequence, "ok"))
        return results

    def submit(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        scope: object = None,
        on_settled: Callable[[int, RecordResult], None] = lambda index, result: None,
    ) -> list[RecordResult]:
        """The window interface, settled at once (every record before submit returns)."""
        results = self.process(records)
        for index, result in enumerate(results):
            on_settled(index, result)
        return results

    def forget(self, scope: object) -> None:
        pass

    def stop_waiting(self, scope: object = None) -> None:
        pass

    def wait_again(self) -> None:
        pass


def consumer_on(
    streams: MemoryStreams,
    *,
    checkpoints: CheckpointTable,
    replicator: ScriptedReplicator,
    clock: Clock,
    metrics: MemoryMetrics | None = None,
    batch_size: int = 10,
    status_store: StatusStore | None = None,
) -> StreamConsumer:
    """The real polling loop over the in-memory stream, with a fixed jitter (half way)."""
    return StreamConsumer(
        region="r0",
        table_name=streams.table_name,
        dynamodb=streams,
        streams=streams,
        checkpoints=checkpoints,
        replicator=replicator,
        metrics=metrics if metrics is not None else MemoryMetrics(),
        batch_size=batch_size,
        clock=clock,
        wall=clock,
        jitter=lambda: 0.5,
        status_store=status_store,
    )


@dataclass
class Ticking(Clock):
    """A clock that moves ``step`` seconds every time it is read, and runs what was set to
    happen at a time once the clock passes it (a destination that answers after a while)."""

    step: float = 0.05
    alarms: list[tuple[float, Callable[[], None]]] = field(default_factory=list)

    def __call__(self) -> float:
        self.now += self.step
        due = [alarm for alarm in self.alarms if alarm[0] <= self.now]
        self.alarms = [alarm for alarm in self.alarms if alarm[0] > self.now]
        for _, action in due:
            action()
        return self.now

    def at(self, when: float, action: Callable[[], None]) -> None:
        self.alarms.append((when, action))


@dataclass
class HeldReplicator(ScriptedReplicator):
    """The window interface with records really in flight: each record submitted stays
    unsettled until the test settles it (:meth:`settle`, oldest first, or :meth:`settle_all`),
    as a slow or stuck destination would leave it."""

    held: list[tuple[Callable[[int, RecordResult], None], int, Mapping[str, Any]]] = field(
        default_factory=list
    )
    forgotten: list[object] = field(default_factory=list)
    # ``waiting``: the records held are deliveries waiting patiently for an adoption, which
    # `stop_waiting` settles as failed (the patient Replicator's deferral); ``stopped``: the
    # scopes (None: every scope) told to stop waiting.
    waiting: bool = False
    stopped: list[object] = field(default_factory=list)

    def submit(
        self,
        records: Sequence[Mapping[str, Any]],
        *,
        scope: object = None,
        on_settled: Callable[[int, RecordResult], None] = lambda index, result: None,
    ) -> None:
        for index, record in enumerate(records):
            self.handed.append(sequence_of(record))
            self.held.append((on_settled, index, record))

    def settle(self, count: int = 1, *, failed: bool = False) -> list[str]:
        """Settle the ``count`` oldest records in flight (applied, or ``failed``)."""
        settled = []
        for on_settled, index, record in self.held[:count]:
            sequence = sequence_of(record)
            if failed:
                on_settled(index, RecordResult(sequence, "failed", "ThrottlingException"))
            else:
                self.applied.add(sequence)
                on_settled(index, RecordResult(sequence, "ok"))
            settled.append(sequence)
        del self.held[:count]
        return settled

    def settle_all(self) -> list[str]:
        return self.settle(len(self.held))

    def forget(self, scope: object) -> None:
        self.forgotten.append(scope)

    def stop_waiting(self, scope: object = None) -> None:
        self.stopped.append(scope)
        if not self.waiting:
            return
        held, self.held = self.held, []
        for on_settled, index, record in held:
            reason = "the raw item here, written after a delete, is not adopted yet"
            on_settled(index, RecordResult(sequence_of(record), "failed", reason))

    def wait_again(self) -> None:
        pass


@dataclass(frozen=True)
class Save:
    """One checkpoint save a consumer attempted, and whether the store took it."""

    shard: str
    sequence: str | None
    finished: bool
    accepted: bool


class LoggedCheckpoints(MemoryCheckpoints):
    def __init__(self, log: list[Save]) -> None:
        super().__init__()
        self.log = log

    def save(self, shard_id: str, state: ShardState) -> bool:
        accepted = super().save(shard_id, state)
        self.log.append(Save(shard_id, state.sequence, state.finished, accepted))
        return accepted


class LoggedCheckpointTable(MemoryCheckpointTable):
    """The in-memory checkpoint table, keeping every save attempted (``saves``)."""

    def __init__(self) -> None:
        super().__init__()
        self.saves: list[Save] = []

    def for_stream(self, stream_arn: str) -> MemoryCheckpoints:
        if stream_arn not in self.streams:
            self.streams[stream_arn] = LoggedCheckpoints(self.saves)
        return self.streams[stream_arn]

    def stored(self) -> dict[str, ShardState]:
        """Every shard's stored checkpoint (one stream)."""
        return {s: st for store in self.streams.values() for s, st in store.shards.items()}


def leased_consumer(
    streams: MemoryStreams,
    *,
    name: str,
    checkpoints: CheckpointTable,
    leases: MemoryLeaseTable,
    replicator: ScriptedReplicator,
    clock: Callable[[], float],
    lease_seconds: float = 3.0,
    batch_size: int = 2,
    dynamodb: Any = None,
    **options: Any,
) -> StreamConsumer:
    """One of a region's consumer processes: shards shared with the others through ``leases``
    (``dynamodb``: its DescribeTable client, the stream's by default)."""
    return StreamConsumer(
        region="r0",
        table_name=streams.table_name,
        dynamodb=dynamodb if dynamodb is not None else streams,
        streams=streams,
        checkpoints=checkpoints,
        replicator=replicator,
        metrics=MemoryMetrics(),
        batch_size=batch_size,
        leases=lambda arn: LeaseKeeper(
            leases, stream_arn=arn, owner=name, lease_seconds=lease_seconds, clock=clock
        ),
        clock=clock,
        wall=clock,
        jitter=lambda: 0.5,
        **options,
    )


class HeldReads(Executor):
    """A read executor whose GetRecords calls stay in flight until the test runs them
    (:meth:`release`), as a slow stream would leave them."""

    def __init__(self) -> None:
        self.pending: list[tuple[Future[Any], Callable[..., Any], tuple[Any, ...]]] = []

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self.pending.append((future, fn, args))
        return future

    def in_flight(self) -> list[str]:
        """The shards of the reads in flight (the consumer passes ``(reader, shard)``)."""
        return [str(args[1]) for _, _, args in self.pending]

    def release(self) -> None:
        pending, self.pending = self.pending, []
        for future, fn, args in pending:
            try:
                future.set_result(fn(*args))
            except Exception as error:
                future.set_exception(error)


class Abandoned(BaseException):
    """Raised in a stepped task's thread when the test ends without finishing it (a
    BaseException, so the code under test, which turns errors into outcomes, lets it pass)."""


@dataclass(eq=False)
class SteppedTask:
    """One callable submitted to a :class:`SteppedExecutor`. ``paused_at``: what it is about
    to do while paused (what the code under test passed to :meth:`SteppedExecutor.pause`)."""

    fn: Callable[..., Any]
    args: tuple[Any, ...]
    kwargs: dict[str, Any]
    future: Future[Any]
    thread: threading.Thread | None = None
    paused_at: object = None
    finished: bool = False
    error: BaseException | None = None
    fail: BaseException | None = None  # raised at the pause point when next stepped
    abandoned: bool = False
    go: threading.Event = field(default_factory=threading.Event)
    yielded: threading.Event = field(default_factory=threading.Event)

    @property
    def started(self) -> bool:
        return self.thread is not None


_stepping = threading.local()


class SteppedExecutor(Executor):
    """An executor whose tasks run only when the test steps them, one thread at a time, so
    work is really in flight (submitted, not finished) while the test does other things, and
    the interleaving is the test's to choose.

    A task stepped for the first time starts in a thread of its own and runs until it reaches
    a pause point (:meth:`pause`, which the code under test reaches through a double such as
    :class:`PausingTable`) or finishes; stepped again, it goes on from there. The test's
    thread waits meanwhile: exactly one thread runs at any time, so the schedule is as
    deterministic as an inline one. :meth:`run_all` finishes everything (tasks not started
    yet run inline, in the caller's thread, and never pause); :meth:`abandon` stops the
    threads of a test that ends early.
    """

    def __init__(self, *, timeout: float = 60.0) -> None:
        self.tasks: list[SteppedTask] = []
        self.timeout = timeout

    def submit(self, fn: Callable[..., T], /, *args: Any, **kwargs: Any) -> Future[T]:
        future: Future[T] = Future()
        self.tasks.append(SteppedTask(fn, args, kwargs, future))
        return future

    def paused(self) -> list[SteppedTask]:
        return [task for task in self.tasks if task.started]

    def step(self, task: SteppedTask, *, fail: BaseException | None = None) -> None:
        """Run ``task`` to its next pause point or its end (``fail``: raised at the pause
        point it is resumed from, as a request that never reached its destination)."""
        assert task in self.tasks, "the task finished already"
        task.fail = fail if task.started else None
        if task.thread is None:
            task.thread = threading.Thread(target=self._body, args=(task,), daemon=True)
            task.thread.start()
        else:
            task.go.set()
        if not task.yielded.wait(self.timeout):
            raise AssertionError(f"a stepped task neither paused nor ended in {self.timeout} s")
        task.yielded.clear()
        if task.finished:
            self.tasks.remove(task)
            if task.error is not None:
                raise task.error

    def finish(self, task: SteppedTask) -> None:
        """Run ``task`` to its end: inline if it has not started, else step by step."""
        if task.started:
            while task in self.tasks:
                self.step(task)
            return
        self.tasks.remove(task)
        try:
            task.future.set_result(task.fn(*task.args, **task.kwargs))
        except Exception as error:
            task.future.set_exception(error)
            raise

    def run_all(self) -> None:
        """Finish every task, the oldest first (tasks submitted meanwhile too)."""
        while self.tasks:
            self.finish(self.tasks[0])

    def abandon(self) -> None:
        """End the threads of tasks still paused (their work is dropped) and forget the rest."""
        for task in self.paused():
            task.abandoned = True
            task.go.set()
            task.yielded.wait(self.timeout)
        self.tasks.clear()

    def pause(self, where: object) -> None:
        """A pause point: in a stepped task's thread, hand control back to the test until the
        task is stepped again (``where``: what the task is about to do); elsewhere nothing."""
        task = getattr(_stepping, "task", None)
        if task is None:
            return
        task.paused_at = where
        task.yielded.set()
        task.go.wait()
        task.go.clear()
        task.paused_at = None
        if task.abandoned:
            raise Abandoned()
        fail, task.fail = task.fail, None
        if fail is not None:
            raise fail

    @staticmethod
    def _body(task: SteppedTask) -> None:
        _stepping.task = task
        try:
            task.future.set_result(task.fn(*task.args, **task.kwargs))
        except Abandoned:
            pass  # the test ended: nobody reads this future
        except BaseException as error:
            task.error = error
            task.future.set_exception(error)
        finally:
            _stepping.task = None
            task.finished = True
            task.yielded.set()


class PausingTable:
    """A table whose conditional writes (``write``, ``annotate``, ``commit``), sent from a task
    of ``executor``, first pause there: the point between a replicator's read and its
    conditional write, where concurrency bites. Reads pass straight through."""

    def __init__(self, table: Any, executor: SteppedExecutor) -> None:
        self.table = table
        self.executor = executor

    def _pause(self, key: Mapping[str, Any]) -> None:
        self.executor.pause((self.table.region, dict(key)))

    def get(self, key: Mapping[str, Any]) -> Any:
        return self.table.get(key)

    def get_stored(self, key: Mapping[str, Any]) -> Any:
        return self.table.get_stored(key)

    def get_many(self, keys: Any) -> Any:
        return self.table.get_many(keys)

    def get_stored_many(self, keys: Any) -> Any:
        return self.table.get_stored_many(keys)

    def write(self, key: Mapping[str, Any], item: Any, precondition: Any) -> Any:
        self._pause(key)
        return self.table.write(key, item, precondition)

    def annotate(self, key: Mapping[str, Any], meta: Any, precondition: Any) -> Any:
        self._pause(key)
        return self.table.annotate(key, meta, precondition)

    def commit(self, key: Mapping[str, Any], *, table: Any, store: Any) -> Any:
        self._pause(key)
        return self.table.commit(key, table=table, store=store)
