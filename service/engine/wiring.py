"""Wiring a region from its configuration: boto3 clients, retries counted, the Replicator with
its tables and conflict log. The consumer, the Lambda handler and the commands build here."""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, HTTPClientError
from botocore.exceptions import ConnectionError as BotoConnectionError

from service.adapters.checkpoints import DynamoCheckpointTable
from service.adapters.conflicts import DynamoConflicts
from service.adapters.deadletter import DynamoDeadLetters
from service.adapters.dynamo import DynamoTable, IncompleteResponseError, ensure_store_table
from service.adapters.leases import DynamoLeaseTable
from service.adapters.metrics import LabelledMetrics, MemoryMetrics, TeeMetrics
from service.config import Config
from service.engine.consumer import StreamConsumer, halting_reason, retry_delay
from service.engine.heartbeat import StatusTracker
from service.engine.leases import LeaseKeeper, new_worker_id, process_gone
from service.engine.pipeline import Replicator
from service.engine.streams import AWS_ERRORS, error_code
from service.errors import ConsumerHaltedError
from service.ports import DeadLetterSink, Metrics

# NOTE: adaptive mode adds client-side rate limiting after the first throttle; the limiter
# lives in the client, so there is exactly one client per destination region, reused.
BOTO_CONFIG = BotoConfig(retries={"mode": "adaptive", "max_attempts": 10}, max_pool_connections=64)


def clients_for(
    config: Config,
    service: str,
    *,
    session: boto3.Session | None = None,
    boto_config: BotoConfig = BOTO_CONFIG,
) -> dict[str, Any]:
    """One boto3 client per configured region (endpoint from config, or AWS), with a
    connection pool as large as the requests that can be in flight to a region at once."""
    session = session or boto3.Session()
    configured = getattr(boto_config, "max_pool_connections", None) or 10
    pool = max(configured, pool_size(config))
    boto_config = boto_config.merge(BotoConfig(max_pool_connections=pool))
    return {
        r.name: session.client(
            service,  # type: ignore[call-overload]
            region_name=r.name,
            endpoint_url=r.endpoint_url,
            config=boto_config,
        )
        for r in config.regions
    }


# Requests of a consumer that are not replicated writes: checkpoints, leases, heartbeats, dead
# letters, describe calls.
log = logging.getLogger("georep.consumer")

CONTROL_CONNECTIONS = 8


def pool_size(config: Config) -> int:
    """Connections a region's client may need at once: the replicator keeps
    ``write_concurrency`` writes in flight to each destination, and each of those threads may
    also log a conflict in the consumer's own region, so the consumer's own client sees up to
    one write thread per region at once, plus its control calls. A smaller pool makes urllib3
    discard connections ("Connection pool is full", 42 warnings in 8 s of catching up)."""
    writers = config.replication.write_concurrency * len(config.regions)
    # NOTE: one replicator per table shares the region's client (`georep run` with
    # [[tables]]): each table's writers, and its control calls, may be in flight at once.
    return (writers + CONTROL_CONNECTIONS) * len(config.tables)


SETUP_RETRY_CAP_S = 20.0  # the longest wait between two attempts to set a consumer up

THROTTLES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
    }
)


def transient(error: BaseException) -> bool:
    """What waiting may fix: a throttle, a 5xx, a connection reset, refused or timed out, an
    answer cut short. Not a refusal (no table, no right, invalid request) or a credentials
    error."""
    if isinstance(error, IncompleteResponseError | BotoConnectionError | HTTPClientError):
        return True
    if isinstance(error, ClientError):
        status = int(error.response.get("ResponseMetadata", {}).get("HTTPStatusCode", 400))
        return error_code(error) in THROTTLES or status >= 500
    return False


def count_retries(client: Any, *, metrics: Metrics, region: str) -> None:
    """Count throttles and retryable errors as botocore sees them (its ``needs-retry`` event);
    the retrying itself stays botocore's (adaptive mode)."""

    def on_needs_retry(response: Any = None, **_: Any) -> None:
        if not response:
            return
        http, parsed = response
        code = (parsed or {}).get("Error", {}).get("Code", "")
        if code in THROTTLES:
            metrics.incr("throttles", {"region": region})
        elif getattr(http, "status_code", 200) >= 500:
            metrics.incr("server_errors", {"region": region})

    client.meta.events.register("needs-retry.*", on_needs_retry)


def conflict_log_for(config: Config, client: Any) -> DynamoConflicts | None:
    """The conflict table in the region ``client`` reaches, as configured (None: no log)."""
    name = config.replication.conflict_table
    if not name:
        return None
    return DynamoConflicts(
        client,
        table_name=name,
        retention_days=config.replication.conflict_retention_days,
        tombstone_table=store_table_of(config),
    )


def store_table_of(config: Config) -> str | None:
    """The tombstone store's table in every region, if deletes use one (issue 22)."""
    replication = config.replication
    return replication.tombstone_table if replication.tombstone_store else None


def places_for(config: Config, *, region: str, client: Any) -> DynamoTable:
    """``region``'s table of the one table ``config`` names, with the region's tombstone
    store if deletes use one (``client``: the region's DynamoDB client)."""
    return DynamoTable(
        client,
        table_name=config.table_name(region),
        key_attributes=config.key_attributes,
        store_table=store_table_of(config),
        name=config.table.name,
    )


def replicator_for(
    config: Config,
    *,
    region: str,
    clients: Mapping[str, Any],
    dead_letters: DeadLetterSink,
    metrics: Metrics,
    patient: bool = False,
) -> Replicator:
    """``region``'s Replicator over every region's table (``clients``: one DynamoDB client
    per region), as configured: the consumer, the Lambda handler and ``georep dlq replay``
    build it here. Merges are logged in ``region``'s conflict table. ``config`` names one
    table (a [table] form, or ``for_table``); its name is recorded with each dead letter and
    conflict. ``patient``: the consumer's (`Replicator`): a deferred delivery waits in its
    lane; the Lambda handler and a replay must return, so they fail it instead."""
    tables = {
        name: places_for(config, region=name, client=client) for name, client in clients.items()
    }
    return Replicator(
        region=region,
        settings=config.settings(),
        tables=tables,
        dead_letters=dead_letters,
        metrics=metrics,
        write_concurrency=config.replication.write_concurrency,
        conflicts=conflict_log_for(config, clients[region]),
        table=config.table.name,
        patient=patient,
    )


class Consumer(StreamConsumer):
    """The consumer of ``region``'s stream of one table, wired to AWS (or an emulator) from the
    configuration (``config`` names one table: a [table] form, or ``for_table``). Everything it
    counts is labelled with the table. ``dynamodb``: the region's clients to share (the
    consumers of several tables in one process: :class:`RegionConsumers`); built otherwise."""

    def __init__(
        self,
        config: Config,
        *,
        region: str,
        session: boto3.Session | None = None,
        metrics: Metrics | None = None,
        dynamodb: Mapping[str, Any] | None = None,
    ) -> None:
        config.region(region)  # UnknownRegionError for a region not configured
        self.config = config
        metrics = LabelledMetrics(metrics or MemoryMetrics(), {"table": config.table.name})
        tracker = StatusTracker(started_at=time.time())
        metrics = TeeMetrics(metrics, tracker)  # the tracker sees the Replicator's lag
        if dynamodb is None:
            self.dynamodb = clients_for(config, "dynamodb", session=session)
            for name, client in self.dynamodb.items():
                count_retries(client, metrics=metrics, region=name)
        else:
            self.dynamodb = dict(dynamodb)
        own = config.region(region)
        streams = (session or boto3.Session()).client(
            "dynamodbstreams", region_name=region, endpoint_url=own.endpoint_url, config=BOTO_CONFIG
        )
        self.dead_letters = DynamoDeadLetters(
            self.dynamodb[region], table_name=config.replication.dead_letter_table
        )
        self.pipeline = replicator_for(
            config,
            region=region,
            clients=self.dynamodb,
            dead_letters=self.dead_letters,
            metrics=metrics,
            patient=True,
        )
        # Shards are shared with the region's other consumers through leases in the
        # checkpoint table (service/engine/leases.py).
        self.worker_id = new_worker_id()
        self.lease_table = DynamoLeaseTable(
            self.dynamodb[region], table_name=config.replication.checkpoint_table
        )
        # One GetRecords in flight per shard: a thread per open shard, up to 64 at once.
        self.read_pool = ThreadPoolExecutor(max_workers=64, thread_name_prefix="georep-read")
        self.checkpoint_table = DynamoCheckpointTable(
            self.dynamodb[region],
            table_name=config.replication.checkpoint_table,
            replica_table=config.table_name(region),
        )
        super().__init__(
            region=region,
            table_name=config.table_name(region),
            dynamodb=self.dynamodb[region],
            streams=streams,
            checkpoints=self.checkpoint_table,
            replicator=self.pipeline,
            metrics=metrics,
            batch_size=config.replication.batch_size,
            window_records=config.replication.window_records,
            window_bytes=config.replication.window_bytes,
            checkpoint_every=config.replication.checkpoint_every_seconds,
            read_executor=self.read_pool,
            leases=self._lease_keeper,
            idle_backoff=config.replication.idle_backoff_seconds,
            max_idle_backoff=config.replication.max_idle_backoff_seconds,
            status_store=self.checkpoint_table,
            tracker=tracker,
        )

    def _lease_keeper(self, stream_arn: str) -> LeaseKeeper:
        return LeaseKeeper(
            self.lease_table,
            stream_arn=stream_arn,
            owner=self.worker_id,
            lease_seconds=self.config.replication.lease_seconds,
            gone=process_gone,
            # NOTE: the renewals of a tick share the control connections of the region's pool
            # (the loop waits for the tick): 1,000 leases one by one took 6.85 s on moto.
            renew_concurrency=CONTROL_CONNECTIONS,
        )

    def setup(self) -> None:
        """Create the checkpoint, dead-letter and conflict tables if they are missing; find
        the stream."""
        try:
            self.checkpoint_table.ensure_table()
            self.dead_letters.ensure_table()
            conflicts = conflict_log_for(self.config, self.dynamodb[self.region])
            if conflicts is not None:
                conflicts.ensure_table()
            store = store_table_of(self.config)
            if store is not None:
                ensure_store_table(self.dynamodb[self.region], table_name=store)
        except AWS_ERRORS as error:
            raise ConsumerHaltedError(
                f"cannot create georep's tables in {self.region}: "
                f"{halting_reason(error) or f'{error_code(error)}: {error}'}"
            ) from error
        super().setup()

    def close(self) -> None:
        self.read_pool.shutdown(wait=True)
        self.pipeline.close()


class RegionConsumers:
    """Every configured table's consumer of one region, in one process (``georep run
    --region R`` with ``[[tables]]``): a :class:`Consumer` per table, each with its own stream,
    leases, checkpoints and replicator, each polling in a thread of its own, all sharing the
    region's clients (one connection pool per region, sized for every table's writers).

    Why a consumer per table rather than one loop over every stream: the loop of one stream is
    the one the property tests prove (window, leases, checkpoints), and it stays exactly that;
    a table that fails (throttled, its stream disabled) backs off alone; the cost is a polling
    thread per table (docs/decisions.md, "Many tables: a consumer per table").

    A consumer that halts (what waiting cannot fix: credentials, a deleted table), or fails on
    an unexpected error, stops the others, which checkpoint what they applied, and its error is
    raised in the caller's thread (a halt naming its table when there are several).
    """

    def __init__(
        self,
        config: Config,
        *,
        region: str,
        session: boto3.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        config.region(region)
        self.region = region
        self.config = config
        self.dynamodb = clients_for(config, "dynamodb", session=session)
        for name, client in self.dynamodb.items():
            count_retries(client, metrics=metrics or MemoryMetrics(), region=name)
        self.tables = config.table_names
        self.consumers = [
            Consumer(
                scoped, region=region, session=session, metrics=metrics, dynamodb=self.dynamodb
            )
            for scoped in config.scoped()
        ]

    def _named(self, table: str, error: ConsumerHaltedError) -> ConsumerHaltedError:
        """``error`` naming its table, when there are several (one table: as it was)."""
        if len(self.tables) == 1:
            return error
        return ConsumerHaltedError(f"table {table}: {error}")

    def setup(self, *, stop: threading.Event | None = None) -> None:
        """Set every table's consumer up. What waiting may fix (`transient`: the region
        unreachable, throttled, a 5xx) is logged and tried again with backoff, until ``stop``
        is set: a consumer (re)started while its region is cut off waits for it, as a running
        one does (a chaos run's consumer restarted during a partition exited; session 38)."""
        for table, consumer in zip(self.tables, self.consumers, strict=True):
            failures = 0
            while True:
                try:
                    consumer.setup()
                    break
                except ConsumerHaltedError as error:
                    cause = error.__cause__
                    stopping = stop is not None and stop.is_set()
                    if cause is None or not transient(cause) or stopping:
                        named = self._named(table, error)
                        if named is error:
                            raise
                        raise named from error
                    failures += 1
                    delay = retry_delay(
                        failures, base=0.5, cap=SETUP_RETRY_CAP_S, jitter=random.random
                    )
                    log.warning("%s; retrying in %.2f s", self._named(table, error), delay)
                    if stop is not None:
                        stop.wait(delay)
                    else:
                        time.sleep(delay)

    def run(self, *, stop: threading.Event, idle_exit_after: float | None = None) -> None:
        """Run every table's consumer until ``stop`` is set (or each has been idle for
        ``idle_exit_after``); raise the first ConsumerHaltedError once all have stopped."""
        inner = threading.Event()
        halted: list[tuple[str, BaseException]] = []

        def one(table: str, consumer: Consumer) -> None:
            try:
                consumer.run(stop=inner, idle_exit_after=idle_exit_after)
            except BaseException as error:  # a bug too: raised in the caller's thread below
                halted.append((table, error))
                inner.set()  # the others stop too, after checkpointing

        threads = [
            threading.Thread(target=one, args=pair, name=f"georep-{pair[0]}", daemon=True)
            for pair in zip(self.tables, self.consumers, strict=True)
        ]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            if stop.wait(0.1):
                inner.set()
            for thread in threads:
                thread.join(0.0)
        if halted:
            table, error = halted[0]
            if not isinstance(error, ConsumerHaltedError):
                raise error  # as a single consumer's run would have: georep run exits 1
            named = self._named(table, error)
            if named is error:
                raise error
            raise named from error

    def close(self) -> None:
        for consumer in self.consumers:
            consumer.close()
