"""``georep verify`` with the tombstone store (issue 22), as a user runs it against the moto
server: a deleted key is absent from every table and tombstoned in every store, and verify
reads both places. A settled delete is identical; a store that lost its tombstone, or a table
that kept (or got back) the deleted item, is divergent; ``--repair`` mends both with
transactions, and no repair writes a deleted key back."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from service.adapters.backends import EmbeddedBackend
from service.core.places import read_key
from service.core.tombstones import store_key
from service.core.verify import store_print
from service.surfaces.local import drain
from service.surfaces.sdk import GeorepTable
from tests.integration.cluster import REGIONS, Cluster, make_cluster
from tests.integration.test_verify import consumers_of, verify, verify_json

pytestmark = pytest.mark.integration

STORE = "georep-tombstones"
GONE = {"pk": {"S": "gone"}}


def deleted_cluster(backend: EmbeddedBackend, tmp_path: Path) -> tuple[Cluster, Any, list[Any]]:
    """Three regions with the store; ``gone`` written in one region and deleted in another,
    three live keys beside it, replication settled. Returns the cluster, ``gone``'s item as
    every table held it before the delete, and the consumers (stopped: nothing runs them
    unless a test drains them)."""
    cluster = make_cluster(
        backend, tmp_path, replication=f'tombstone_store = true\ntombstone_table = "{STORE}"'
    )
    consumers = consumers_of(cluster)  # their setup creates every region's store
    sdk = GeorepTable(cluster.client(REGIONS[0]), config=cluster.config, region=REGIONS[0])
    for n in range(3):
        sdk.put({"pk": {"S": f"k{n}"}, "v": {"S": f"v{n}"}})
    sdk.put({**GONE, "v": {"S": "to be deleted"}})
    drain(consumers)
    before = get(cluster, REGIONS[2], GONE)
    assert before is not None
    cluster.client(REGIONS[1]).delete_item(TableName=cluster.table_name, Key=GONE)  # raw boto3
    drain(consumers)
    assert_deleted_everywhere(cluster)
    return cluster, before, consumers


def get(cluster: Cluster, region: str, key: dict[str, Any]) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        cluster.client(region)
        .get_item(TableName=cluster.table_name, Key=key, ConsistentRead=True)
        .get("Item")
    )
    return item


def stored(cluster: Cluster, region: str) -> dict[str, Any] | None:
    item: dict[str, Any] | None = (
        cluster.client(region)
        .get_item(
            TableName=STORE, Key=store_key(cluster.config.table.name, GONE), ConsistentRead=True
        )
        .get("Item")
    )
    return item


def assert_deleted_everywhere(cluster: Cluster) -> None:
    """Plain get_item finds nothing in any region, and every store holds one tombstone."""
    assert dict.fromkeys(REGIONS) == {r: get(cluster, r, GONE) for r in REGIONS}
    tombstones = {store_print(stored(cluster, r)) for r in REGIONS}
    assert 1 == len(tombstones) and None not in tombstones, tombstones
    state = read_key(None, stored(cluster, REGIONS[0]), settings=cluster.config.settings())
    assert state.tombstone is not None


def rows_of(report: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {row["region"]: row for row in report["rows"]}


def test_a_settled_delete_is_identical_and_verify_exits_0(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """The deleted key is in no table and in every store: it counts as compared (once), is
    identical, and ``--key`` finds it (deleted), not "not found"."""
    cluster, _, consumers = deleted_cluster(backend, tmp_path)
    code, report = verify_json(cluster, "--timeout", "1")
    assert 0 == code, report
    summary = report["summary"]
    assert ("identical", 4, 4, 0) == (
        summary["result"],
        summary["items_compared"],
        summary["identical"],
        summary["divergent_found"],
    )
    done = verify(cluster, "--key", "gone", "--timeout", "1")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "not found" not in done.stderr
    for consumer in consumers:
        consumer.close()


def test_a_store_that_lost_its_tombstone_is_divergent_and_repair_writes_it_back(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    cluster, _, consumers = deleted_cluster(backend, tmp_path)
    lost = REGIONS[2]
    cluster.client(lost).delete_item(
        TableName=STORE, Key=store_key(cluster.config.table.name, GONE)
    )

    code, report = verify_json(cluster, "--timeout", "1.5")
    assert 1 == code, report
    assert ("divergent", 1) == (report["summary"]["result"], report["summary"]["divergent_found"])
    rows = rows_of(report)
    assert {("gone", "divergent")} == {(r["key"]["pk"], r["status"]) for r in report["rows"]}
    assert "absent" == rows[lost]["holds"]
    assert ("tombstone", True) == (rows[REGIONS[0]]["holds"], rows[REGIONS[0]]["deleted"])

    done = verify(cluster, "--repair", "--timeout", "1.5")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert "repaired: 1" in done.stdout
    assert_deleted_everywhere(cluster)
    assert 0 == verify(cluster, "--timeout", "1").returncode

    drain(consumers)  # the repair's writes are echoes: replication changes nothing
    assert_deleted_everywhere(cluster)
    for consumer in consumers:
        consumer.close()


def test_repair_never_brings_back_a_deleted_item_a_region_still_holds(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """One region holds the item as it was before the delete and no tombstone, as if the
    delete never reached it (put back with raw boto3 behind the stopped consumers). A repair
    that read the tables only saw the item in one region and nothing in two, and copied it
    back; reading the stores, the delete wins: the repair deletes the item there and writes
    its tombstone, in one transaction."""
    cluster, before, consumers = deleted_cluster(backend, tmp_path)
    lagging = REGIONS[0]
    client = cluster.client(lagging)
    client.delete_item(TableName=STORE, Key=store_key(cluster.config.table.name, GONE))
    client.put_item(TableName=cluster.table_name, Item=before)

    code, report = verify_json(cluster, "--timeout", "1.5")
    assert 1 == code, report
    rows = rows_of(report)
    assert ("stamped", False) == (rows[lagging]["holds"], rows[lagging]["deleted"])
    assert "tombstone" == rows[REGIONS[1]]["holds"] == rows[REGIONS[2]]["holds"]

    done = verify(cluster, "--repair", "--timeout", "1.5")
    assert 0 == done.returncode, done.stdout + done.stderr
    assert_deleted_everywhere(cluster)
    assert {f"k{n}" for n in range(3)} == set(cluster.scan(REGIONS[1]))  # the live keys stay

    drain(consumers)  # the put's INSERT and the repair's REMOVE: neither brings it back
    assert_deleted_everywhere(cluster)
    assert 0 == verify(cluster, "--timeout", "1").returncode
    for consumer in consumers:
        consumer.close()


def test_an_applications_put_after_the_delete_is_repaired_as_its_new_write_everywhere(
    backend: EmbeddedBackend, tmp_path: Path
) -> None:
    """A plain put beside the tombstone (no georep metadata) came after the delete: every
    tombstone installation checks the table. verify reports it (pending a raw adoption, then
    divergent as the consumers are stopped); the repair adopts it as a successor of the
    delete, as replication would, and writes it everywhere with the tombstones dropped. When
    the consumers then read its record, nothing changes: repair and replication agree."""
    cluster, _, consumers = deleted_cluster(backend, tmp_path)
    item = {**GONE, "v": {"S": "a new order, after the delete"}}
    cluster.client(REGIONS[1]).put_item(TableName=cluster.table_name, Item=item)

    code, report = verify_json(cluster, "--timeout", "1.5")
    assert 1 == code, report
    rows = rows_of(report)
    assert ("raw", "raw") == (rows[REGIONS[1]]["holds"], rows[REGIONS[1]]["why"].split(";")[0])

    done = verify(cluster, "--repair", "--timeout", "1.5")
    assert 0 == done.returncode, done.stdout + done.stderr
    for region in REGIONS:
        held = get(cluster, region, GONE)
        assert held is not None and item["v"] == held["v"], region
        assert store_print(stored(cluster, region)) is None, region

    drain(consumers)
    assert cluster.identical()
    assert 0 == verify(cluster, "--timeout", "1").returncode
    for consumer in consumers:
        consumer.close()
