"""The naive replicator georep is measured against: the per-record Lambda of
``../shared/reference/dynamodb-cross-region-replication.md``, run as a stream poller.

    python bench/naive.py --endpoint-url URL --table NAME --region eu-west-1 \
        --regions eu-west-1,us-east-1,ap-southeast-2 --mode put|batch [--destinations-url URL]

One process per region, as an event source mapping is per stream: it reads its own region's
table stream over boto3 (GetRecords, ``Limit`` 100 as the reference's ``--batch-size 100``,
from TRIM_HORIZON) and writes every record to the other regions' tables, blind (no condition,
no resolution):

- ``put``: the reference's first handler. Every record of a page at once (its
  ``Promise.all``): PutItem of the new image for INSERT/MODIFY, DeleteItem of the keys for
  REMOVE, on a pool of ``--concurrency`` threads per destination; the next page once all are
  done. Records of one key in one page may overtake each other, as in the reference.
- ``batch``: the reference's batched handler. A page's new images as PutRequests, then its
  REMOVEs as DeleteRequests, in BatchWriteItems of 25, one after another per destination
  (the destinations in parallel, as two functions would be).

A failed write is counted and dropped, as the reference logs it and goes on.

The one addition the reference does not need, being one-way: a loop guard. With writers in
every region each replicator would send the others' copies back forever (moto emits a record
even for a put that changes nothing, docs/backends.md deviation 1; on AWS two conflicting
writes would swap places forever). So every copy carries ``_naive_from`` (the source region)
and a record whose new image has it is not replicated again, the usual tag multi-master
Lambda replicators add. REMOVE records have no new image and are always sent; deleting an
absent item emits no record, so that terminates.

On SIGTERM it finishes the page in hand and prints one JSON line of counts.
"""

from __future__ import annotations

import argparse
import json
import signal
import sys
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import boto3
from botocore.config import Config

GUARD = "_naive_from"
PAGE = 100  # the reference's event source mapping: --batch-size 100
BATCH = 25  # BatchWriteItem's limit on DynamoDB
IDLE_FIRST, IDLE_MAX = 0.05, 0.25  # the same idle backoff as georep's defaults


def plan(records: Sequence[Mapping[str, Any]], source: str) -> list[tuple[str, dict[str, Any]]]:
    """The writes a page asks for, in page order: ("put", item) or ("delete", key). A copy
    made by a replicator (it has ``_naive_from``) asks for none."""
    writes: list[tuple[str, dict[str, Any]]] = []
    for record in records:
        body = record["dynamodb"]
        if record["eventName"] == "REMOVE":
            writes.append(("delete", dict(body["Keys"])))
            continue
        image = body.get("NewImage")
        if image is None or GUARD in image:
            continue
        writes.append(("put", {**image, GUARD: {"S": source}}))
    return writes


def batches(writes: Sequence[tuple[str, dict[str, Any]]]) -> list[list[dict[str, Any]]]:
    """The reference's batching: every put, then every delete, 25 requests at a time."""
    requests = [{"PutRequest": {"Item": item}} for kind, item in writes if kind == "put"]
    requests += [{"DeleteRequest": {"Key": key}} for kind, key in writes if kind == "delete"]
    return [requests[i : i + BATCH] for i in range(0, len(requests), BATCH)]


class NaiveReplicator:
    def __init__(
        self,
        *,
        endpoint_url: str,
        destinations_url: str,
        table: str,
        region: str,
        regions: Sequence[str],
        mode: str,
        concurrency: int,
    ) -> None:
        session = boto3.Session()
        config = Config(max_pool_connections=concurrency, retries={"mode": "standard"})
        self.table, self.region, self.mode = table, region, mode
        self.source = session.client("dynamodb", region_name=region, endpoint_url=endpoint_url)
        # NOTE: region_name matters: moto ignores the region in a stream ARN (docs/backends.md).
        self.streams = session.client(
            "dynamodbstreams", region_name=region, endpoint_url=endpoint_url
        )
        self.destinations = {
            r: session.client(
                "dynamodb", region_name=r, endpoint_url=destinations_url, config=config
            )
            for r in regions
            if r != region
        }
        self.pools = {r: ThreadPoolExecutor(concurrency) for r in self.destinations}
        self.counts = {"records": 0, "skipped": 0, "requests": 0, "errors": 0, "pages": 0}
        self._lock = threading.Lock()
        self.stop = threading.Event()

    def count(self, name: str, n: int = 1) -> None:
        with self._lock:
            self.counts[name] += n

    def iterators(self) -> list[str]:
        arn = self.source.describe_table(TableName=self.table)["Table"]["LatestStreamArn"]
        shards = self.streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]
        return [
            self.streams.get_shard_iterator(
                StreamArn=arn, ShardId=s["ShardId"], ShardIteratorType="TRIM_HORIZON"
            )["ShardIterator"]
            for s in shards
        ]

    def run(self) -> None:
        iterators: list[str | None] = list(self.iterators())
        idle = IDLE_FIRST
        while not self.stop.is_set() and any(iterators):
            read = 0
            for i, iterator in enumerate(iterators):
                if iterator is None:
                    continue
                page = self.streams.get_records(ShardIterator=iterator, Limit=PAGE)
                iterators[i] = page.get("NextShardIterator")
                if page["Records"]:
                    self.replicate(page["Records"])
                    read += len(page["Records"])
            if read:
                idle = IDLE_FIRST
            else:
                self.stop.wait(idle)
                idle = min(2 * idle, IDLE_MAX)

    def replicate(self, records: Sequence[Mapping[str, Any]]) -> None:
        writes = plan(records, self.region)
        self.count("pages")
        self.count("records", len(records))
        self.count("skipped", len(records) - len(writes))
        if self.mode == "put":
            futures = [
                self.pools[r].submit(self._one, r, kind, item)
                for r in self.destinations
                for kind, item in writes
            ]
        else:
            chunks = batches(writes)
            futures = [self.pools[r].submit(self._batches, r, chunks) for r in self.destinations]
        for future in futures:
            future.result()

    def _one(self, destination: str, kind: str, item: dict[str, Any]) -> None:
        client = self.destinations[destination]
        try:
            if kind == "put":
                client.put_item(TableName=self.table, Item=item)
            else:
                client.delete_item(TableName=self.table, Key=item)
        except Exception as error:  # the reference logs and drops a failed write
            self.count("errors")
            print(f"naive: {kind} to {destination} failed: {error}", file=sys.stderr)
        self.count("requests")

    def _batches(self, destination: str, chunks: list[list[dict[str, Any]]]) -> None:
        client = self.destinations[destination]
        for chunk in chunks:
            try:
                client.batch_write_item(RequestItems={self.table: chunk})
            except Exception as error:  # the reference logs and drops the batch
                self.count("errors", len(chunk))
                print(f"naive: batch to {destination} failed: {error}", file=sys.stderr)
            self.count("requests")

    def close(self) -> None:
        for pool in self.pools.values():
            pool.shutdown(wait=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--endpoint-url", required=True, help="the backend (own region's stream)")
    parser.add_argument("--destinations-url", default=None, help="default: --endpoint-url")
    parser.add_argument("--table", required=True)
    parser.add_argument("--region", required=True)
    parser.add_argument("--regions", required=True, help="comma-separated, this one included")
    parser.add_argument("--mode", choices=["put", "batch"], default="put")
    parser.add_argument("--concurrency", type=int, default=64, help="threads per destination")
    args = parser.parse_args()
    replicator = NaiveReplicator(
        endpoint_url=args.endpoint_url,
        destinations_url=args.destinations_url or args.endpoint_url,
        table=args.table,
        region=args.region,
        regions=args.regions.split(","),
        mode=args.mode,
        concurrency=args.concurrency,
    )
    signal.signal(signal.SIGTERM, lambda *_: replicator.stop.set())
    started = time.time()
    print(f"naive {args.mode} replicator for {args.region}: polling", flush=True)
    try:
        replicator.run()
    finally:
        replicator.close()
        print(json.dumps({**replicator.counts, "seconds": round(time.time() - started, 1)}))


if __name__ == "__main__":
    main()
