"""Bad input never escapes: Hypothesis-generated batches of stream records and Lambda events,
good records mixed with malformed ones, through the consumer's pipeline (``Replicator.process``)
and the Lambda handler (``LambdaReplication.handle``), over in-memory tables (issue 17).

What must hold for every batch:

* nothing raises, and every record gets exactly one result;
* each record broken on purpose (truncated images, wrong attribute types, missing keys or
  sequence numbers, oversized items, tampered ``_georep``, metadata naming unknown regions,
  records that are not objects) is dead-lettered with a reason, and the dead-letter sink holds
  exactly those;
* the good records of the same batch are applied: every region holds each one's value;
* a local write carrying metadata copied from another write, or a forged origin, is adopted
  and replicated, never dropped as an echo (its value reaches every region).

The judgement is this file's own: which records are good, bad or copies is decided when they
are made, never by asking the code under test. Wrong event sources and non-stream events are
refused as a whole (an EventError naming what came), which tests/integration/test_lambda_handler
covers; here the handler's records are always from aws:dynamodb.

In the ``deep`` profile each test runs 10,000 batches; the numbers of records tried are printed
at the end of the run (tests/conftest.py, ``pytest_terminal_summary``).
"""

from __future__ import annotations

import base64
import copy
import os
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from hypothesis import given, settings
from hypothesis import strategies as st

from resolvers import LastWriterWins
from service.adapters.deadletter import MemoryDeadLetters
from service.adapters.memory import MemoryTable
from service.core.stamp import stamp
from service.core.stored import Absent, Settings
from service.core.values import digest
from service.core.version import META_ATTR, encode_item
from service.engine.pipeline import Replicator
from service.surfaces import lambda_handler

REGIONS = ("eu-west-1", "us-east-1", "ap-south-1")
SOURCE = REGIONS[0]
SETTINGS = Settings(regions=REGIONS, key_attributes=("pk",), resolver=LastWriterWins())
DEEP = os.environ.get("HYPOTHESIS_PROFILE") == "deep"
EXAMPLES = settings(max_examples=10_000) if DEEP else settings()

# How many records were tried, by kind; printed by tests/conftest.py at the end of the run.
TRIED: Counter[str] = Counter()

Kind = Literal["good", "bad", "copy"]


@dataclass
class Made:
    """One record of a batch, with what this test knows it to be."""

    record: Any
    kind: Kind
    value: str | None  # the unique value a good record or a copy must bring everywhere
    how: str  # what was done to it, for the failure message


# -- good records: real writes to a source table, taken from its own stream -------------------


def _source_writes(count: int, stamped: list[bool]) -> tuple[MemoryTable, list[dict[str, Any]]]:
    """``count`` local writes to the source table, one key each (raw or stamped through the
    core, as the SDK does), and the stream records they made."""
    table = MemoryTable(region=SOURCE, key_attributes=("pk",), first_sequence=2**40)
    for i in range(count):
        data = {"pk": {"S": f"k{i}"}, "v": {"S": f"value-{i}"}}
        if stamped[i]:
            version = stamp(
                Absent(),
                data,
                region=SOURCE,
                now_hlc=(1_700_000_000_000 + i) << 16,
                write_id=f"01J{i:023d}",
                settings=SETTINGS,
            )
            assert version is not None
            table.put_raw(encode_item(version, horizon_ms=SETTINGS.horizon_ms))
        else:
            table.put_raw(data)
    return table, list(table.stream)


# -- what can be done to a record -------------------------------------------------------------

WRONG_VALUES: list[Any] = [
    {"S": 5},
    {"N": "not a number"},
    {"N": 7},
    {"X": "unknown type"},
    {"S": "a", "N": "1"},
    {},
    {"L": "not a list"},
    {"M": ["not", "a", "map"]},
    {"SS": "not a set"},
    {"BOOL": "yes"},
    {"NULL": "maybe"},
    "a bare string",
    None,
    [1, 2],
]

TAMPERED_META: list[Callable[[dict[str, Any]], Any]] = [
    lambda meta: {"S": "not a map"},
    lambda meta: {"M": {}},
    lambda meta: {"M": {**meta["M"], "s": {"N": "999"}}},  # a schema from the future
    lambda meta: {"M": {**meta["M"], "v": {"M": {"moon-1": {"N": "1"}}}}},  # unknown region
    lambda meta: {"M": {**meta["M"], "v": {"S": "x"}}},
    lambda meta: {"M": {**meta["M"], "o": {"N": "1"}}},
    lambda meta: {"M": {**meta["M"], "o": {"S": "moon-1#abc"}}},  # an actor of no region
    lambda meta: {"M": {k: v for k, v in meta["M"].items() if k != "w"}},
    lambda meta: {"M": {**meta["M"], "h": {"S": "not a clock"}}},
]


def _dynamodb(record: dict[str, Any]) -> dict[str, Any]:
    body = record["dynamodb"]
    assert isinstance(body, dict)
    return body


def break_record(record: dict[str, Any], choice: int, pick: int) -> tuple[Any, str]:
    """A copy of ``record`` broken in way ``choice`` (``pick`` selects a variant)."""
    broken = copy.deepcopy(record)
    body = _dynamodb(broken)
    match choice:
        case 0:
            return ["not a record", 42, None, [broken]][pick % 4], "not an object"
        case 1:
            del broken["dynamodb"]
            return broken, "no dynamodb"
        case 2:
            broken["eventName"] = ["TRUNCATE", None, 3, "insert"][pick % 4]
            return broken, "unknown eventName"
        case 3:
            body["SequenceNumber"] = [None, 12, ""][pick % 3]
            if pick % 4 == 3:
                del body["SequenceNumber"]
            return broken, "no sequence number"
        case 4:
            body["Keys"] = [{}, None, {"pk": {"N": 5}}, "k"][pick % 4]
            return broken, "no or broken Keys"
        case 5:
            body["NewImage"] = {k: v for k, v in body["NewImage"].items() if k != "pk"}
            return broken, "truncated image: no key attribute"
        case 6:
            del body["NewImage"]
            return broken, "INSERT without a new image"
        case 7:
            body["NewImage"]["v"] = WRONG_VALUES[pick % len(WRONG_VALUES)]
            return broken, f"wrong attribute value {body['NewImage']['v']!r}"
        case 8:
            body["NewImage"]["big"] = {"S": "x" * 410_000}
            return broken, "oversized item"
        case 9:
            body["NewImage"] = ["not", "an", "image"]
            return broken, "image is not a map"
        case 10:
            meta = body["NewImage"].get(META_ATTR)
            if meta is None:  # a raw record: give it metadata that is not metadata at all
                body["NewImage"][META_ATTR] = {"S": "forged"}
                return broken, "_georep is not a map"
            tamper = TAMPERED_META[pick % len(TAMPERED_META)]
            body["NewImage"][META_ATTR] = tamper(meta)
            return broken, f"tampered _georep #{pick % len(TAMPERED_META)}"
        case 11:
            body["ApproximateCreationDateTime"] = ["yesterday", None, [1]][pick % 3]
            return broken, "creation time is not a time"
        case _:
            body["NewImage"]["nested"] = {"M": {"deep": WRONG_VALUES[pick % len(WRONG_VALUES)]}}
            return broken, "wrong attribute value inside a map"


BREAKS = 13


def copy_metadata(record: dict[str, Any], donor: dict[str, Any] | None) -> tuple[Any, str]:
    """A raw local write that carries metadata it did not earn: copied from another write
    (a read-modify-write that kept ``_georep``), or forged to claim another origin region."""
    copied = copy.deepcopy(record)
    image = _dynamodb(copied)["NewImage"]
    if donor is not None:
        image[META_ATTR] = copy.deepcopy(_dynamodb(donor)["NewImage"][META_ATTR])
        return copied, "metadata copied from another write"
    version = stamp(
        Absent(),
        {"pk": {"S": "elsewhere"}, "v": {"S": "other data"}},
        region=REGIONS[1],  # a version of another region, for other data
        now_hlc=1_800_000_000_000 << 16,
        write_id="01J" + "9" * 23,
        settings=SETTINGS,
    )
    assert version is not None
    image[META_ATTR] = encode_item(version, horizon_ms=SETTINGS.horizon_ms)[META_ATTR]
    assert digest({k: v for k, v in image.items() if k != META_ATTR}) != version.meta.digest
    return copied, "forged origin (another region's metadata over this data)"


@st.composite
def batches(draw: st.DrawFn) -> tuple[MemoryTable, list[Made]]:
    """A batch of the source's records: good ones, broken ones and metadata copies, shuffled."""
    count = draw(st.integers(min_value=1, max_value=6))
    stamped = draw(st.lists(st.booleans(), min_size=count, max_size=count))
    table, records = _source_writes(count, stamped)
    made: list[Made] = []
    for i, record in enumerate(records):
        value = f"value-{i}"
        fate = draw(st.sampled_from(["good", "good", "bad", "copy"]))
        if fate == "good":
            made.append(Made(record, "good", value, "as written"))
        elif fate == "bad":
            broken, how = break_record(
                record,
                draw(st.integers(min_value=0, max_value=BREAKS - 1)),
                draw(st.integers(min_value=0, max_value=50)),
            )
            made.append(Made(broken, "bad", None, how))
        elif stamped[i]:  # a stamped write keeps its own metadata: it stays a good record
            made.append(Made(record, "good", value, "as written"))
        else:
            donors = [r for j, r in enumerate(records) if stamped[j]]
            donor = draw(st.sampled_from([None, *donors]))
            changed, how = copy_metadata(record, donor)
            made.append(Made(changed, "copy", value, how))
    return table, draw(st.permutations(made))


# -- the property -----------------------------------------------------------------------------


def _world(source: MemoryTable) -> tuple[dict[str, MemoryTable], MemoryDeadLetters]:
    tables = {SOURCE: source} | {
        r: MemoryTable(region=r, key_attributes=("pk",)) for r in REGIONS[1:]
    }
    return tables, MemoryDeadLetters()


def check(
    made: list[Made], results: list[Any], tables: Mapping[str, MemoryTable], dead: Any
) -> None:
    TRIED.update(m.kind for m in made)
    assert len(made) == len(results), "one result per record"
    for m, result in zip(made, results, strict=True):
        if m.kind == "bad":
            assert "dead-lettered" == result.status, f"{m.how}: {result}"
            assert result.reason, f"{m.how}: dead-lettered without a reason"
        else:
            assert "ok" == result.status, f"{m.how}: {result}"
    assert sum(m.kind == "bad" for m in made) == len(dead.entries)
    assert all(e["reason"] for e in dead.entries)
    arrived(made, tables)


def arrived(made: list[Made], tables: Mapping[str, MemoryTable]) -> None:
    """Every good record and every copy holds its value in every region."""
    for m in made:
        if m.kind == "bad":
            continue
        key = _dynamodb(m.record)["Keys"]
        for region, table in tables.items():
            item = table.get(key)
            assert item is not None, f"{m.how}: {key} never reached {region}"
            assert {"S": m.value} == item.get("v"), f"{m.how}: {region} holds {item}"


@EXAMPLES
@given(batches())
def test_every_bad_record_of_a_batch_is_dead_lettered_and_the_good_ones_applied(
    batch: tuple[MemoryTable, list[Made]],
) -> None:
    """The consumer's path: one batch through ``Replicator.process``."""
    source, made = batch
    through_the_pipeline(source, made)


def through_the_pipeline(source: MemoryTable, made: list[Made]) -> None:
    """``made``'s records as one batch of ``source``'s stream, then `check`."""
    tables, dead = _world(source)
    replicator = Replicator(
        region=SOURCE, settings=SETTINGS, tables=tables, dead_letters=dead, metrics=_Null()
    )
    try:
        results = replicator.process([m.record for m in made])
    finally:
        replicator.close()
    check(made, results, tables, dead)


def _as_lambda_sends(record: Any) -> Any:
    """The record as Lambda delivers it: binary values in base64, the creation time in epoch
    seconds (a number), ``eventSource`` aws:dynamodb."""
    if not isinstance(record, dict):
        return record
    out = copy.deepcopy(record)

    def encode(value: Any) -> Any:
        if isinstance(value, bytes):
            return base64.b64encode(value).decode()
        if isinstance(value, dict):
            return {k: encode(v) for k, v in value.items()}
        if isinstance(value, list):
            return [encode(v) for v in value]
        return value

    out.setdefault("eventSource", "aws:dynamodb")
    out.setdefault("awsRegion", "us-east-1")  # moto's constant: never read as the region
    body = out.get("dynamodb")
    if isinstance(body, dict):
        for image in ("Keys", "NewImage", "OldImage"):
            if isinstance(body.get(image), dict):
                body[image] = encode(body[image])
        created = body.get("ApproximateCreationDateTime")
        if isinstance(created, int):  # the in-memory stream's epoch milliseconds
            body["ApproximateCreationDateTime"] = created / 1000
    return out


@EXAMPLES
@given(batches())
def test_the_lambda_handler_dead_letters_bad_records_and_applies_the_good_ones(
    batch: tuple[MemoryTable, list[Made]],
) -> None:
    """The Lambda path: the same batches as events of Lambda's shape through ``handle``. No
    failure is reported (a dead-lettered record is not a poison record: reporting it would
    make Lambda retry it forever)."""
    source, made = batch
    tables, dead = _world(source)
    metrics = lambda_handler.EmfMetrics(region=SOURCE)
    replicator = Replicator(
        region=SOURCE, settings=SETTINGS, tables=tables, dead_letters=dead, metrics=metrics
    )
    app = lambda_handler.LambdaReplication(replicator=replicator, metrics=metrics)
    event = {"Records": [_as_lambda_sends(m.record) for m in made]}
    try:
        response = app.handle(event, None)
    finally:
        app.close()
    assert {"batchItemFailures": []} == response
    TRIED.update(m.kind for m in made)
    assert sum(m.kind == "bad" for m in made) == len(dead.entries)
    arrived(made, tables)


class _Null:
    def incr(self, name: str, labels: Mapping[str, str], value: float = 1) -> None:
        pass

    def observe(self, name: str, labels: Mapping[str, str], value: float) -> None:
        pass


# -- what the fuzzing found -------------------------------------------------------------------


def _one_raw_write_and(broken: Callable[[dict[str, Any]], None]) -> list[Made]:
    """A good raw write of k0, and a broken copy of a raw write of k1."""
    _table, records = _source_writes(2, [False, False])
    bad = copy.deepcopy(records[1])
    broken(_dynamodb(bad))
    return [Made(records[0], "good", "value-0", "as written"), Made(bad, "bad", None, "broken")]


def _run(made: list[Made]) -> None:
    source = MemoryTable(region=SOURCE, key_attributes=("pk",))
    source.put_raw({"pk": {"S": "k0"}, "v": {"S": "value-0"}})
    through_the_pipeline(source, made)


def test_a_record_whose_image_lacks_its_key_is_dead_lettered_and_the_batch_goes_on() -> None:
    """Found by the fuzzing above: a raw write's image without the key attribute raised
    RecordError out of ``Replicator.process`` (the lane key is computed from the image), so
    the whole batch failed and the shard retried it forever."""
    _run(_one_raw_write_and(lambda body: body["NewImage"].pop("pk")))


def test_a_record_whose_image_holds_another_key_than_its_keys_is_dead_lettered() -> None:
    """Its version would be written under the image's key, not the one the record names."""
    _run(_one_raw_write_and(lambda body: body["NewImage"].update(pk={"S": "someone-else"})))


def test_malformed_attribute_values_are_dead_lettered_before_any_write() -> None:
    """Found by the fuzzing above: ``{"SS": "not a set"}``, ``{"N": "not a number"}`` and
    friends passed the digest (it encoded whatever it was given), so the in-memory table
    stored them and DynamoDB would have rejected the write at every destination. The digest,
    which walks every value anyway, now refuses them."""
    for wrong in WRONG_VALUES:
        _run(_one_raw_write_and(lambda body, wrong=wrong: body["NewImage"].update(v=wrong)))
    for wrong in ({"SS": ["a", "a"]}, {"NS": []}, {"N": "NaN"}, {"BOOL": 1}, {"NULL": False}):
        _run(_one_raw_write_and(lambda body, wrong=wrong: body["NewImage"].update(v=wrong)))
