"""The standalone consumer: one process per region, polling its own table's stream.

Lambda's event source mapping does the same job at scale (service/lambda_handler.py); both
hand records to the same :class:`service.pipeline.Replicator`.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Mapping
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from service.config import Config
from service.deadletter import DynamoDeadLetters
from service.dynamo import DynamoTable
from service.pipeline import MemoryMetrics, Metrics, Replicator
from service.streams import DynamoCheckpoints, StreamReader

log = logging.getLogger("georep.consumer")

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
    """One boto3 client per configured region (endpoint from config, or AWS)."""
    session = session or boto3.Session()
    return {
        r.name: session.client(
            service,  # type: ignore[call-overload]
            region_name=r.name,
            endpoint_url=r.endpoint_url,
            config=boto_config,
        )
        for r in config.regions
    }


THROTTLES = frozenset(
    {
        "ProvisionedThroughputExceededException",
        "ThrottlingException",
        "RequestLimitExceeded",
        "LimitExceededException",
    }
)


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


class Consumer:
    def __init__(
        self,
        config: Config,
        *,
        region: str,
        session: boto3.Session | None = None,
        metrics: Metrics | None = None,
    ) -> None:
        config.region(region)  # UnknownRegionError for a region not configured
        self.config, self.region = config, region
        self.metrics: Metrics = metrics or MemoryMetrics()
        self.dynamodb = clients_for(config, "dynamodb", session=session)
        for name, client in self.dynamodb.items():
            count_retries(client, metrics=self.metrics, region=name)
        own = config.region(region)
        self.streams = (session or boto3.Session()).client(
            "dynamodbstreams", region_name=region, endpoint_url=own.endpoint_url, config=BOTO_CONFIG
        )
        settings = config.settings()
        keys = config.key_attributes
        tables = {
            name: DynamoTable(client, table_name=config.table_name(name), key_attributes=keys)
            for name, client in self.dynamodb.items()
        }
        self.dead_letters = DynamoDeadLetters(
            self.dynamodb[region], table_name=config.replication.dead_letter_table
        )
        self.replicator = Replicator(
            region=region,
            settings=settings,
            tables=tables,
            dead_letters=self.dead_letters,
            metrics=self.metrics,
            write_concurrency=config.replication.write_concurrency,
        )
        self.reader: StreamReader | None = None

    def setup(self) -> None:
        """Find the stream; create the checkpoint and dead-letter tables if they are missing."""
        client = self.dynamodb[self.region]
        table = client.describe_table(TableName=self.config.table_name(self.region))["Table"]
        stream_arn = table.get("LatestStreamArn")
        if not stream_arn:
            raise RuntimeError(
                f"table {self.config.table_name(self.region)} in {self.region} has no stream; "
                "enable NEW_AND_OLD_IMAGES (georep init does)"
            )
        checkpoints = DynamoCheckpoints(
            client, table_name=self.config.replication.checkpoint_table, stream_arn=stream_arn
        )
        checkpoints.ensure_table()
        self.dead_letters.ensure_table()
        self.reader = StreamReader(
            self.streams,
            stream_arn=stream_arn,
            checkpoints=checkpoints,
            metrics=self.metrics,
            region=self.region,
            batch_size=self.config.replication.batch_size,
        )

    def poll_once(self) -> int:
        """Read one batch from every ready shard, replicate it, checkpoint. Returns records."""
        if self.reader is None:
            self.setup()
        reader = self.reader
        assert reader is not None
        processed = 0
        for shard_id in reader.ready_shards():
            batch = reader.read(shard_id)  # trimmed data is reported by the reader
            if not batch.records:
                if batch.closed:
                    reader.commit(shard_id, sequence=None, finished=True)
                continue
            results = self.replicator.process(batch.records)
            processed += len(batch.records)
            self._observe_age(batch.records[-1])
            failed = next((i for i, r in enumerate(results) if r.status == "failed"), None)
            if failed is None:
                reader.commit(shard_id, sequence=results[-1].sequence, finished=batch.closed)
            else:
                # Checkpoint what was applied, then replay from the first failed record.
                done = results[failed - 1].sequence if failed else None
                if done is not None:
                    reader.commit(shard_id, sequence=done, finished=False)
                reader.rewind(shard_id)
        return processed

    def _observe_age(self, record: Mapping[str, Any]) -> None:
        created = record.get("dynamodb", {}).get("ApproximateCreationDateTime")
        if hasattr(created, "timestamp"):
            age = max(time.time() - created.timestamp(), 0.0)
            self.metrics.observe("iterator_age_seconds", {"region": self.region}, age)

    def run(self, *, stop: threading.Event, idle_exit_after: float | None = None) -> None:
        """Poll until ``stop`` is set (or, with ``idle_exit_after``, until idle that long)."""
        backoff = self.config.replication.idle_backoff_seconds
        idle_since: float | None = None
        while not stop.is_set():
            if self.poll_once():
                backoff, idle_since = self.config.replication.idle_backoff_seconds, None
                continue
            idle_since = idle_since or time.monotonic()
            if idle_exit_after is not None and time.monotonic() - idle_since >= idle_exit_after:
                return
            stop.wait(backoff)
            backoff = min(backoff * 2, self.config.replication.max_idle_backoff_seconds)

    def close(self) -> None:
        self.replicator.close()
