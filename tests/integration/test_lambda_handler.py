"""The Lambda handler: Lambda-shaped events in, ReportBatchItemFailures out.

The integration tests build real events: items written through the SDK in the source region,
their stream records read back with the streams API, then converted the way Lambda delivers
them (epoch seconds, binary as base64 text, eventSource/awsRegion/eventSourceARN).
"""

from __future__ import annotations

import base64
import copy
import datetime as dt
import json
import socket
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend, create_replica_table
from service.adapters.deadletter import DynamoDeadLetters, MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.config import parse_config
from service.core.version import TTL_ATTR
from service.engine.pipeline import Replicator
from service.errors import EventError
from service.ports import WriteResult
from service.surfaces import lambda_handler
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster

pytestmark = pytest.mark.integration

EVENTS = Path(__file__).with_name("events")
SOURCE = REGIONS[0]
DESTINATIONS = REGIONS[1:]
BLOB = bytes(range(256))  # every byte value: a wrong decoding cannot go unnoticed


# -- helpers -----------------------------------------------------------------------------------


def _lambda_json(value: object) -> object:
    if isinstance(value, bytes):
        return base64.b64encode(value).decode()
    if isinstance(value, dt.datetime):
        return float(int(value.timestamp()))  # Lambda: epoch seconds, whole at best
    raise TypeError(f"unexpected {type(value).__name__} in a stream record")


def lambda_event(cluster: Cluster, region: str) -> dict[str, Any]:
    """Every record of ``region``'s stream, shaped as Lambda's event source mapping sends it."""
    streams = cluster.session().client(
        "dynamodbstreams", region_name=region, endpoint_url=cluster.backend.endpoint_url
    )
    return stream_event(cluster.client(region), streams, table=cluster.table_name, region=region)


def stream_event(dynamodb: Any, streams: Any, *, table: str, region: str) -> dict[str, Any]:
    """Every record of ``table``'s stream (``dynamodb``/``streams``: clients of ``region``),
    shaped as Lambda's event source mapping sends it (eventSourceARN: that stream's)."""
    arn = dynamodb.describe_table(TableName=table)["Table"]["LatestStreamArn"]
    records: list[dict[str, Any]] = []
    for shard in streams.describe_stream(StreamArn=arn)["StreamDescription"]["Shards"]:
        iterator = streams.get_shard_iterator(
            StreamArn=arn, ShardId=shard["ShardId"], ShardIteratorType="TRIM_HORIZON"
        )["ShardIterator"]
        while iterator:
            page = streams.get_records(ShardIterator=iterator, Limit=1000)
            if not page["Records"]:
                break
            records.extend(page["Records"])
            iterator = page.get("NextShardIterator")
    event_records = []
    for record in records:
        shaped = json.loads(json.dumps(record, default=_lambda_json))
        shaped["eventSource"] = "aws:dynamodb"
        shaped["awsRegion"] = record.get("awsRegion") or region  # a constant on emulators
        shaped["eventSourceARN"] = arn
        event_records.append(shaped)
    return {"Records": event_records}


def sequences(event: Mapping[str, Any]) -> list[str]:
    return [r["dynamodb"]["SequenceNumber"] for r in event["Records"]]


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture
def lambda_env(monkeypatch: pytest.MonkeyPatch) -> Iterator[pytest.MonkeyPatch]:
    """A fresh container per test: the module-level replicator is rebuilt from the env."""
    lambda_handler.reset()
    monkeypatch.setenv("AWS_MAX_ATTEMPTS", "1")  # an unreachable region fails fast
    yield monkeypatch
    lambda_handler.reset()


def configure(monkeypatch: pytest.MonkeyPatch, cluster: Cluster, config: Path) -> None:
    for name, value in cluster.env().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("GEOREP_CONFIG", str(config))
    monkeypatch.setenv("GEOREP_REGION", SOURCE)
    lambda_handler.reset()


def source_cluster(backend: EmbeddedBackend, tmp_path: Path) -> Cluster:
    cluster = make_cluster(backend, tmp_path)
    DynamoDeadLetters(
        cluster.client(SOURCE), table_name=cluster.config.replication.dead_letter_table
    ).ensure_table()
    return cluster


def dead_letters(cluster: Cluster) -> list[dict[str, Any]]:
    table = cluster.config.replication.dead_letter_table
    return DynamoDeadLetters(cluster.client(SOURCE), table_name=table).entries()


# -- pure unit tests ---------------------------------------------------------------------------


def test_binary_values_are_decoded_from_base64_at_every_depth() -> None:
    """B, BS, and B/BS nested in M and L come back as the exact bytes; other types and the
    event itself are left untouched."""
    text = base64.b64encode(BLOB).decode()
    record = {
        "eventName": "INSERT",
        "dynamodb": {
            "Keys": {"pk": {"B": text}},
            "NewImage": {
                "pk": {"B": text},
                "set": {"BS": [text, "AA=="]},
                "doc": {"M": {"inner": {"M": {"b": {"B": text}}}, "l": {"L": [{"BS": ["/w=="]}]}}},
                "s": {"S": text},
            },
            "SequenceNumber": "1",
        },
    }
    original = copy.deepcopy(record)
    decoded = lambda_handler.decode_record(record)
    image = decoded["dynamodb"]["NewImage"]
    assert {"B": BLOB} == decoded["dynamodb"]["Keys"]["pk"]
    assert {"B": BLOB} == image["pk"]
    assert {"BS": [BLOB, b"\x00"]} == image["set"]
    assert {"B": BLOB} == image["doc"]["M"]["inner"]["M"]["b"]
    assert {"L": [{"BS": [b"\xff"]}]} == image["doc"]["M"]["l"]
    assert {"S": text} == image["s"]
    assert original == record


def test_a_binary_value_that_is_not_base64_is_a_record_error() -> None:
    """Garbage in a B value is refused with a RecordError (dead-lettered), never stored as
    the wrong bytes."""
    with pytest.raises(lambda_handler.RecordError, match="base64"):
        lambda_handler.decode_binary({"M": {"x": {"B": "not base64!"}}})


def _memory_app(
    config_doc: dict[str, Any], tables: Mapping[str, Any], region: str
) -> tuple[lambda_handler.LambdaReplication, MemoryDeadLetters]:
    config = parse_config(config_doc)
    metrics = lambda_handler.EmfMetrics(region=region)
    dead = MemoryDeadLetters()
    replicator = Replicator(
        region=region, settings=config.settings(), tables=tables, dead_letters=dead, metrics=metrics
    )
    return lambda_handler.LambdaReplication(replicator=replicator, metrics=metrics), dead


def test_the_aws_sample_event_is_replicated_and_metrics_are_flushed_as_emf(
    capsys: pytest.CaptureFixture[str],
) -> None:
    """The exact sample event of the AWS docs (INSERT, MODIFY, REMOVE of Id 101) replicates
    with no failure reported, both regions end identical, and one invocation prints EMF
    documents in namespace georep with region/destination dimensions only."""
    doc = {
        "table": {"name": "my-table", "partition_key": "Id", "partition_key_type": "N"},
        "regions": [{"name": "us-west-2"}, {"name": "eu-west-1"}],
    }
    tables = {r: MemoryTable(region=r, key_attributes=("Id",)) for r in ("us-west-2", "eu-west-1")}
    app, dead = _memory_app(doc, tables, "us-west-2")
    event = json.loads((EVENTS / "dynamodb_stream_sample.json").read_text())

    response = app.handle(event, None)

    assert {"batchItemFailures": []} == response
    assert [] == dead.entries
    assert tables["us-west-2"].items == tables["eu-west-1"].items
    emf = [json.loads(line) for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert {"georep"} == {d["_aws"]["CloudWatchMetrics"][0]["Namespace"] for d in emf}
    dimension_sets = {
        tuple(sorted(dims)) for d in emf for dims in d["_aws"]["CloudWatchMetrics"][0]["Dimensions"]
    }
    assert {("region",), ("destination", "region")} == dimension_sets
    assert [3.0] == next(d["records_read"] for d in emf if "records_read" in d)


def _two_region_app() -> tuple[lambda_handler.LambdaReplication, MemoryDeadLetters]:
    doc = {
        "table": {"name": "orders", "partition_key": "pk"},
        "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}],
    }
    tables = {r: MemoryTable(region=r, key_attributes=("pk",)) for r in ("eu-west-1", "us-east-1")}
    return _memory_app(doc, tables, "eu-west-1")


def test_an_empty_batch_is_answered_with_no_failures() -> None:
    """The console's and `sam local`'s test events send ``{"Records": []}``: nothing to do,
    nothing failed. (Issue 7, finding 10: it raised UnexpectedBatchTypeError.)"""
    app, dead = _two_region_app()

    assert {"batchItemFailures": []} == app.handle({"Records": []}, None)
    assert [] == dead.entries


SQS_EVENT = {
    "Records": [
        {
            "messageId": "059f36b4-87a3-44ab-83d2-661975830a7d",
            "body": "Test message.",
            "eventSource": "aws:sqs",
            "awsRegion": "us-east-1",
        }
    ]
}
SCHEDULED_EVENT = {"version": "0", "detail-type": "Scheduled Event", "source": "aws.events"}


@pytest.mark.parametrize(
    ("event", "says"),
    [
        (SQS_EVENT, "received records from aws:sqs"),
        (SCHEDULED_EVENT, "received an object with keys [detail-type, source, version]"),
        ({}, "received an empty object"),
        ({"Records": None}, "received an object with keys [Records]"),
        ([], "received a list: []"),
    ],
    ids=["sqs", "scheduled", "empty", "records-null", "list"],
)
def test_an_event_that_is_not_a_stream_event_is_one_clear_error(event: Any, says: str) -> None:
    """A function wired to the wrong trigger fails with one EventError that says what it
    received, and dead-letters nothing (an SQS message is not a malformed stream record)."""
    app, dead = _two_region_app()

    with pytest.raises(EventError) as raised:
        app.handle(event, None)

    assert str(raised.value).endswith(says)
    assert [] == dead.entries


class _FailingFor:
    """A table port whose reads and writes of one partition key raise (a throttle that
    outlasted botocore's retries, say); other keys go through."""

    def __init__(self, inner: MemoryTable, *, pk: str) -> None:
        self.inner, self.pk = inner, pk

    def get(self, key: Mapping[str, Any]) -> Mapping[str, Any] | None:
        self._check(key)
        return self.inner.get(key)

    def write(self, key: Mapping[str, Any], item: Any, precondition: Any) -> WriteResult:
        self._check(key)
        return self.inner.write(key, item, precondition)

    def _check(self, key: Mapping[str, Any]) -> None:
        if key["pk"] == {"S": self.pk}:
            raise ConnectionError(f"{self.pk} is unreachable")


def _raw_record(sequence: str, pk: str, value: str, *, old: str | None = None) -> dict[str, Any]:
    new_image = {"pk": {"S": pk}, "v": {"S": value}}
    body: dict[str, Any] = {
        "ApproximateCreationDateTime": 1693997155.0,
        "Keys": {"pk": {"S": pk}},
        "NewImage": new_image,
        "SequenceNumber": sequence,
        "SizeBytes": 40,
        "StreamViewType": "NEW_AND_OLD_IMAGES",
    }
    if old is not None:
        body["OldImage"] = {"pk": {"S": pk}, "v": {"S": old}}
    return {
        "eventID": sequence,
        "eventName": "MODIFY" if old is not None else "INSERT",
        "eventVersion": "1.1",
        "eventSource": "aws:dynamodb",
        "awsRegion": "us-east-1",
        "dynamodb": body,
        "eventSourceARN": "arn:aws:dynamodb:us-east-1:123456789012:table/t/stream/x",
    }


def test_a_failing_key_reports_its_records_and_its_later_records_only() -> None:
    """When one key's writes fail, that key's records are reported (so its later records wait:
    per-key order holds on retry) and the other key's records are not; every identifier is a
    real sequence number, and Lambda's restart point is the key's first record. (Memory
    tables without a tombstone store: no delete here.)"""
    doc = {
        "table": {"name": "orders", "partition_key": "pk"},
        "regions": [{"name": "eu-west-1"}, {"name": "us-east-1"}],
        "replication": {"tombstone_store": False},
    }
    tables: dict[str, Any] = {
        "eu-west-1": MemoryTable(region="eu-west-1", key_attributes=("pk",)),
        "us-east-1": _FailingFor(MemoryTable(region="us-east-1", key_attributes=("pk",)), pk="a"),
    }
    app, dead = _memory_app(doc, tables, "eu-west-1")
    event = {
        "Records": [
            _raw_record("100", "b", "b1"),
            _raw_record("200", "a", "a1"),
            _raw_record("300", "b", "b2", old="b1"),
            _raw_record("400", "a", "a2", old="a1"),
        ]
    }

    response = app.handle(event, None)

    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert all(reported)
    assert "400" in reported  # the key's last record always waits
    assert set(reported) <= {"200", "400"}  # 200 may be coalesced into 400 (it dominates)
    assert [] == dead.entries
    assert tables["us-east-1"].inner.get({"pk": {"S": "b"}}) is not None


# -- integration: real streams, real HTTP --------------------------------------------------------


def test_lambda_event_from_a_real_stream_replicates_binary_values_byte_identically(
    backend: EmbeddedBackend, tmp_path: Path, lambda_env: pytest.MonkeyPatch
) -> None:
    """Items with B, BS and nested binary values, written through the SDK and delivered in
    Lambda's shape (base64 text), reach both destinations byte-identical to the source, with
    no failure reported; the handler is built once and reused across invocations."""
    cluster = source_cluster(backend, tmp_path)
    configure(lambda_env, cluster, cluster.config_path)
    sdk = GeorepTable(cluster.client(SOURCE), config=cluster.config, region=SOURCE)
    sdk.put(
        {
            "pk": {"S": "bin"},
            "b": {"B": BLOB},
            "bs": {"BS": [BLOB, b"\x00", b"\xff\xfe"]},
            "doc": {"M": {"b": {"B": b"\x00\x01"}, "l": {"L": [{"B": b"\x80"}]}}},
        }
    )
    sdk.put({"pk": {"S": "plain"}, "v": {"S": "one"}})
    sdk.put({"pk": {"S": "plain"}, "v": {"S": "two"}})
    sdk.put({"pk": {"S": "gone"}, "v": {"S": "x"}})
    sdk.delete({"pk": {"S": "gone"}})
    event = lambda_event(cluster, SOURCE)
    assert isinstance(event["Records"][0]["dynamodb"]["NewImage"]["b"]["B"], str)

    assert {"batchItemFailures": []} == lambda_handler.handler(event, None)
    first = lambda_handler.app()
    assert {"batchItemFailures": []} == lambda_handler.handler(event, None)  # a redelivery
    assert first is lambda_handler.app()

    source = cluster.scan(SOURCE)
    for region in DESTINATIONS:
        assert source == cluster.scan(region)
    assert BLOB == cluster.scan(DESTINATIONS[0])["bin"]["b"]["B"]
    assert {BLOB, b"\x00", b"\xff\xfe"} == set(cluster.scan(DESTINATIONS[1])["bin"]["bs"]["BS"])
    assert [] == dead_letters(cluster)


def test_malformed_records_in_the_middle_are_dead_lettered_and_the_rest_applied(
    backend: EmbeddedBackend, tmp_path: Path, lambda_env: pytest.MonkeyPatch
) -> None:
    """A record with an unknown eventName and one whose binary value is not base64, placed in
    the middle of a real batch, go to the dead-letter table; the other records are applied and
    no failure is reported (a dead-lettered record is not a poison record)."""
    cluster = source_cluster(backend, tmp_path)
    configure(lambda_env, cluster, cluster.config_path)
    sdk = GeorepTable(cluster.client(SOURCE), config=cluster.config, region=SOURCE)
    for n in range(4):
        sdk.put({"pk": {"S": f"k{n}"}, "v": {"S": f"v{n}"}, "b": {"B": bytes([n, 255])}})
    event = lambda_event(cluster, SOURCE)
    middle = len(event["Records"]) // 2
    unknown = copy.deepcopy(event["Records"][middle])
    unknown["eventName"] = "TRUNCATE"
    bad_binary = copy.deepcopy(event["Records"][middle])
    bad_binary["dynamodb"]["NewImage"]["b"] = {"B": "%%% not base64 %%%"}
    event["Records"][middle:middle] = [unknown, bad_binary]

    assert {"batchItemFailures": []} == lambda_handler.handler(event, None)

    source = cluster.scan(SOURCE)
    assert 4 == len(source)
    for region in DESTINATIONS:
        assert source == cluster.scan(region)
    entries = dead_letters(cluster)
    assert 2 == len(entries)
    assert {"RecordError"} == {e["error"] for e in entries}


def test_an_unreachable_destination_reports_failures_from_the_first_affected_record(
    backend: EmbeddedBackend, tmp_path: Path, lambda_env: pytest.MonkeyPatch
) -> None:
    """With one destination's endpoint on a closed port, every record that must reach it is
    reported with its own non-empty sequence number, starting at the first such record (a
    dead-lettered record before it is not reported); redelivering from that point once the
    region is back brings every region to the same state. (A record superseded by a later one
    of the same key in the batch is coalesced away and not reported; the later one is.)"""
    cluster = source_cluster(backend, tmp_path)
    broken = tmp_path / "broken.toml"
    text = cluster.config_path.read_text()
    down = DESTINATIONS[0]
    head, tail = text.split(f'name = "{down}"\n', 1)
    tail = tail.replace(backend.endpoint_url, f"http://127.0.0.1:{closed_port()}", 1)
    broken.write_text(f'{head}name = "{down}"\n{tail}')
    configure(lambda_env, cluster, broken)
    sdk = GeorepTable(cluster.client(SOURCE), config=cluster.config, region=SOURCE)
    for n in range(3):
        sdk.put({"pk": {"S": f"k{n}"}, "v": {"S": f"v{n}"}})
    event = lambda_event(cluster, SOURCE)
    malformed = copy.deepcopy(event["Records"][0])
    malformed["eventName"] = "TRUNCATE"
    malformed["dynamodb"]["SequenceNumber"] = "0"
    event["Records"].insert(0, malformed)

    response = lambda_handler.handler(event, None)

    reported = [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert all(isinstance(r, str) and r for r in reported)
    assert sequences(event)[1:] == reported
    assert 1 == len(dead_letters(cluster))

    # Lambda restarts from the lowest reported sequence number, with the region back.
    configure(lambda_env, cluster, cluster.config_path)
    retry = {"Records": event["Records"][sequences(event).index(reported[0]) :]}
    assert {"batchItemFailures": []} == lambda_handler.handler(retry, None)
    assert cluster.identical()


def _replace_table_with_numeric_keys(cluster: Cluster, region: str) -> None:
    """``region``'s replica table, recreated with a numeric partition key: every georep write
    there is a ValidationException (a type mismatch), however often it is retried."""
    client = cluster.client(region)
    client.delete_table(TableName=cluster.table_name)
    client.create_table(
        TableName=cluster.table_name,
        KeySchema=[{"AttributeName": "pk", "KeyType": "HASH"}],
        AttributeDefinitions=[{"AttributeName": "pk", "AttributeType": "N"}],
        BillingMode="PAY_PER_REQUEST",
    )


def test_a_destination_rejecting_a_write_dead_letters_it_instead_of_blocking_the_shard(
    backend: EmbeddedBackend, tmp_path: Path, lambda_env: pytest.MonkeyPatch
) -> None:
    """A ValidationException cannot be fixed by retrying: the record goes to the dead-letter
    table with what happened at each destination, no failure is reported (so it does not hold
    the shard until the retry limit), and the other destination is written."""
    cluster = source_cluster(backend, tmp_path)
    configure(lambda_env, cluster, cluster.config_path)
    rejecting, healthy = DESTINATIONS
    # The table changes after the cold start checked it (which would refuse it now).
    lambda_env.setattr(lambda_handler, "check_tables", lambda *_, **__: {})
    _replace_table_with_numeric_keys(cluster, rejecting)
    sdk = GeorepTable(cluster.client(SOURCE), config=cluster.config, region=SOURCE)
    sdk.put({"pk": {"S": "k"}, "v": {"S": "one"}})
    event = lambda_event(cluster, SOURCE)

    assert {"batchItemFailures": []} == lambda_handler.handler(event, None)

    assert cluster.scan(SOURCE) == cluster.scan(healthy)
    (entry,) = dead_letters(cluster)
    assert "RequestRejectedError" == entry["error"]
    assert "ValidationException" in entry["reason"]
    assert "applied (written)" == entry["destinations"][healthy]
    assert entry["destinations"][rejecting].startswith("rejected (RequestRejectedError:")


def test_a_missing_destination_table_is_retried_while_the_others_are_written(
    backend: EmbeddedBackend, tmp_path: Path, lambda_env: pytest.MonkeyPatch
) -> None:
    """ResourceNotFoundException counts as transient (the table may be being created or
    restored): the record is reported failed and nothing is dead-lettered, but the other
    destination is written meanwhile; once the table is back, the retry converges."""
    cluster = source_cluster(backend, tmp_path)
    configure(lambda_env, cluster, cluster.config_path)
    missing, healthy = DESTINATIONS
    # The table goes after the cold start checked it (which would refuse it now).
    lambda_env.setattr(lambda_handler, "check_tables", lambda *_, **__: {})
    cluster.client(missing).delete_table(TableName=cluster.table_name)
    sdk = GeorepTable(cluster.client(SOURCE), config=cluster.config, region=SOURCE)
    sdk.put({"pk": {"S": "k"}, "v": {"S": "one"}})
    event = lambda_event(cluster, SOURCE)

    response = lambda_handler.handler(event, None)

    assert sequences(event) == [f["itemIdentifier"] for f in response["batchItemFailures"]]
    assert [] == dead_letters(cluster)
    assert cluster.scan(SOURCE) == cluster.scan(healthy)
    create_replica_table(
        cluster.client(missing),
        table_name=cluster.table_name,
        partition_key="pk",
        ttl_attribute=TTL_ATTR,
    )
    assert {"batchItemFailures": []} == lambda_handler.handler(event, None)
    assert cluster.identical()


def test_the_lambda_handler_keeps_a_filtered_item_and_a_redacted_attribute_where_they_belong() -> (
    None
):
    """Issue 20: the function serves residency rules as `georep run` does (the same pipeline).
    Two raw INSERTs in eu-west-1 in the shape AWS delivers: an EU item reaches eu-central-1
    whole and us-east-1 only as a withheld marker (keys and metadata, nothing an application
    reads); a US item reaches us-east-1 without its redacted ssn."""
    regions = ("eu-west-1", "eu-central-1", "us-east-1")
    doc = {
        "table": {"name": "users", "partition_key": "Id", "partition_key_type": "N"},
        "regions": [{"name": r} for r in regions],
        "filters": [
            {
                "name": "eu-residency",
                "when": {"attribute": "residency", "equals": "EU"},
                "regions": ["eu-west-1", "eu-central-1"],
            }
        ],
        "redactions": [{"attributes": ["ssn"], "regions": ["us-east-1"]}],
    }
    tables = {r: MemoryTable(region=r, key_attributes=("Id",)) for r in regions}
    app, dead = _memory_app(doc, tables, "eu-west-1")
    sample = json.loads((EVENTS / "dynamodb_stream_sample.json").read_text())["Records"][0]
    arn = "arn:aws:dynamodb:eu-west-1:123456789012:table/users/stream/2026-12-07T00:00:00.000"
    records = []
    for n, (key, residency) in enumerate([("1", "EU"), ("2", "US")], start=1):
        record = copy.deepcopy(sample)
        image = {"Id": {"N": key}, "residency": {"S": residency}, "ssn": {"S": f"ssn-{key}"}}
        record["dynamodb"].update(Keys={"Id": {"N": key}}, NewImage=image, SequenceNumber=str(n))
        record.update(eventID=str(n), awsRegion="eu-west-1", eventSourceARN=arn)
        records.append(record)

    assert {"batchItemFailures": []} == app.handle({"Records": records}, None)
    assert [] == dead.entries

    def read(region: str, key: str) -> dict[str, Any]:
        item = tables[region].items[json.dumps({"Id": ["N", key]})]
        return {k: v for k, v in item.items() if not k.startswith("_georep")}

    assert {"Id": {"N": "1"}, "residency": {"S": "EU"}, "ssn": {"S": "ssn-1"}} == read(
        "eu-central-1", "1"
    )
    assert {"Id": {"N": "1"}} == read("us-east-1", "1")  # the marker: no data
    assert {"Id": {"N": "2"}, "residency": {"S": "US"}, "ssn": {"S": "ssn-2"}} == read(
        "eu-central-1", "2"
    )
    assert {"Id": {"N": "2"}, "residency": {"S": "US"}} == read("us-east-1", "2")
