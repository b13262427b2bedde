"""service/engine/chaos/proxy.py: each fault reaches botocore the way DynamoDB's failures do,
over HTTP against the moto server; and what a truncated answer does to georep's stream reader."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import boto3
import pytest
from botocore.config import Config
from botocore.exceptions import ClientError, ConnectionClosedError, ReadTimeoutError

from service.adapters.backends import MotoServer, create_replica_table
from service.adapters.checkpoints import MemoryCheckpoints
from service.adapters.dynamo import IncompleteResponseError
from service.engine.chaos.proxy import Fault, FaultProxy
from service.engine.streams import StreamReader

pytestmark = pytest.mark.integration

ONE_ATTEMPT = Config(retries={"mode": "standard", "total_max_attempts": 1})


@pytest.fixture(scope="module")
def moto() -> Iterator[MotoServer]:
    with MotoServer() as backend:
        yield backend


@pytest.fixture
def proxy(moto: MotoServer) -> Iterator[FaultProxy]:
    url = urlsplit(moto.endpoint_url)
    with FaultProxy(url.hostname or "127.0.0.1", url.port or 80, seed=1) as running:
        yield running


def _client(url: str, service: str = "dynamodb") -> Any:
    return boto3.client(
        service,
        region_name="eu-west-1",
        endpoint_url=url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=ONE_ATTEMPT,
    )


@pytest.fixture
def table(moto: MotoServer) -> str:
    name = f"proxy-{id(moto) % 100000}"
    client = _client(moto.endpoint_url)
    if name not in client.list_tables()["TableNames"]:
        create_replica_table(client, table_name=name, partition_key="pk", ttl_attribute="ttl")
    client.put_item(TableName=name, Item={"pk": {"S": "a"}, "v": {"S": "x" * 200}})
    return name


@pytest.mark.parametrize(
    ("fault", "code"),
    [
        (Fault.THROTTLE, "ProvisionedThroughputExceededException"),
        (Fault.ERROR_500, "InternalServerError"),
        (Fault.ERROR_503, "ServiceUnavailableException"),
    ],
)
def test_an_error_answer_is_the_error_dynamodb_sends(
    proxy: FaultProxy, table: str, fault: Fault, code: str
) -> None:
    proxy.storm(fault, probability=1.0, seconds=60)
    with pytest.raises(ClientError) as raised:
        _client(proxy.url).get_item(TableName=table, Key={"pk": {"S": "a"}})
    assert code == raised.value.response["Error"]["Code"]
    assert {fault: 1} == dict(proxy.injected)


@pytest.mark.parametrize("fault", [Fault.DROP, Fault.LOST_RESPONSE, Fault.PARTITION])
def test_a_dropped_connection_is_a_closed_connection(
    proxy: FaultProxy, table: str, moto: MotoServer, fault: Fault
) -> None:
    """A lost response is applied all the same: the client cannot tell."""
    if fault is Fault.PARTITION:
        proxy.partition(seconds=60)
    else:
        proxy.storm(fault, probability=1.0, seconds=60)
    item = {"pk": {"S": f"dropped-{fault}"}}
    with pytest.raises(ConnectionClosedError):
        _client(proxy.url).put_item(TableName=table, Item=item)
    landed = "Item" in _client(moto.endpoint_url).get_item(TableName=table, Key=item)
    assert (fault is Fault.LOST_RESPONSE) == landed


def test_a_calm_proxy_relays_every_request_unchanged(proxy: FaultProxy, table: str) -> None:
    proxy.storm(Fault.THROTTLE, probability=1.0, seconds=60)
    proxy.calm()
    answer = _client(proxy.url).get_item(TableName=table, Key={"pk": {"S": "a"}})
    assert "x" * 200 == answer["Item"]["v"]["S"]
    assert 0 == sum(proxy.injected.values())


def test_a_truncated_get_records_answer_does_not_close_the_shard(
    proxy: FaultProxy, table: str, moto: MotoServer
) -> None:
    """Found by georep chaos: botocore handed a truncated GetRecords answer over as an empty
    success (no Records, no NextShardIterator) and StreamReader.read took the shard for
    closed; the consumer finished it and never read it again (regions diverged for good). An
    answer without Records is now an error, retried from the checkpoint."""
    arn = _client(moto.endpoint_url).describe_table(TableName=table)["Table"]["LatestStreamArn"]
    reader = StreamReader(
        _client(proxy.url, "dynamodbstreams"), stream_arn=arn, checkpoints=MemoryCheckpoints()
    )
    (shard,) = reader.ready_shards()
    reader.read(shard)  # the iterator, taken before the fault
    proxy.storm(Fault.HALF_CLOSE, probability=1.0, seconds=60)
    with pytest.raises(IncompleteResponseError):
        reader.read(shard)  # an error, retried from the checkpoint; never a closed shard
    assert not reader.state[shard].finished


def test_a_client_that_hangs_up_during_latency_leaves_no_traceback(
    proxy: FaultProxy, table: str, capfd: pytest.CaptureFixture[str]
) -> None:
    """A `make chaos` run printed 72 BrokenPipeError tracebacks: clients killed by the run or
    timing out during injected latency, answered after they had gone. The proxy stays quiet
    about a client that hung up and keeps serving."""
    proxy.storm(Fault.LATENCY, probability=1.0, seconds=60)
    impatient = boto3.client(
        "dynamodb",
        region_name="eu-west-1",
        endpoint_url=proxy.url,
        aws_access_key_id="x",
        aws_secret_access_key="x",
        config=Config(read_timeout=0.05, retries={"mode": "standard", "total_max_attempts": 1}),
    )
    for _ in range(3):
        with pytest.raises(ReadTimeoutError):
            impatient.get_item(TableName=table, Key={"pk": {"S": "a"}})
    time.sleep(1.8)  # the held requests are forwarded and answered to closed sockets
    proxy.calm()
    assert (
        "x" * 200
        == _client(proxy.url).get_item(TableName=table, Key={"pk": {"S": "a"}})["Item"]["v"]["S"]
    )
    assert "Traceback" not in capfd.readouterr().err
