"""bench/side_summary.py and bench/naive.py's pure parts: what counts as divergent, the run's
summary and targets, and the writes the naive replicator derives from a stream page. No
timing here: the speed targets live in the benchmark's results, never in tests."""

from __future__ import annotations

from typing import Any

from bench.naive import GUARD, batches, plan
from bench.side_summary import divergent_keys, judge, percentile, summarise, user_view


def s(value: str) -> dict[str, str]:
    return {"S": value}


def test_user_view_drops_bookkeeping_and_reads_a_tombstone_as_absent() -> None:
    """georep's metadata and the naive loop guard are not application data; an item with
    nothing but its key left (a georep tombstone) is absent."""
    stamped = {"pk": s("k"), "n": {"N": "1"}, "_georep": s("meta"), GUARD: s("eu-west-1")}
    tombstone = {"pk": s("k"), "_georep": s("meta"), "_georep_ttl": {"N": "9"}}
    assert {"pk": s("k"), "n": {"N": "1"}} == user_view(stamped)
    assert None is user_view(tombstone)
    assert None is user_view(None)


def test_divergent_keys_counts_different_values_and_missing_items() -> None:
    """A key differs when one region holds other data, or holds it where another holds
    nothing; the same data under different bookkeeping does not differ."""
    same = {"pk": s("a"), "n": {"N": "1"}}
    tables = {
        "r1": {
            "a": same,
            "b": {"pk": s("b"), "n": {"N": "2"}},
            "c": {"pk": s("c"), "n": {"N": "3"}},
        },
        "r2": {"a": {**same, GUARD: s("r1")}, "b": {"pk": s("b"), "n": {"N": "5"}}},
        "r3": {"a": {**same, "_georep": s("m")}, "b": {"pk": s("b"), "n": {"N": "2"}}},
    }
    assert ["b", "c"] == divergent_keys(tables)


def test_percentile_is_nearest_rank_and_none_without_values() -> None:
    values = [float(v) for v in range(1, 101)]
    assert 50.0 == percentile(values, 0.5)
    assert 99.0 == percentile(values, 0.99)
    assert None is percentile([], 0.99)


def point(rate: float | None, *, p99: float = 0.2, divergent: int = 0, rss: float = 80.0) -> Any:
    out: dict[str, Any] = {
        "lag": {"p50_s": p99 / 2, "p99_s": p99},
        "divergent_keys": divergent,
        "peak_rss_mb": rss,
    }
    if rate is not None:
        out["records_per_s"] = rate
    return out


def test_summary_ratios_are_taken_within_the_run_on_the_uniform_workload() -> None:
    """Every headline ratio divides two rates of this run: georep stamped against the ceiling
    (two destination writes a record), the naive put, itself at 40 ms; raw against stamped."""
    result = {
        "regions": ["a", "b", "c"],
        "ceiling": {"0": {"writes_per_s": 200.0}, "40": {"writes_per_s": 100.0}},
        "points": {
            "naive-put": {
                "0": {"uniform": point(50.0), "conflict": point(40.0, divergent=3)},
                "40": {"uniform": point(40.0)},
            },
            "georep-stamped": {
                "0": {"uniform": point(80.0), "conflict": point(60.0)},
                "40": {"uniform": point(88.0, p99=0.3), "bursts": point(None, p99=0.4)},
            },
            "georep-raw": {
                "0": {"uniform": {**point(70.0), "records": 100, "replicator_records": 300}},
                "40": {"uniform": point(66.0, rss=90)},
            },
        },
    }
    summary = summarise(result)
    assert 0.8 == summary["georep_vs_ceiling"]  # 80 records/s x 2 / 200
    assert 1.6 == summary["georep_vs_naive_put"]
    assert 1.1 == summary["wan_40ms_vs_loopback"]
    assert 0.943 == summary["raw_40ms_vs_loopback"]
    assert 0.75 == summary["raw_vs_stamped_40ms"]
    assert 0.4 == summary["lag_p99_s"]  # the worst georep point
    assert 0 == summary["divergent_keys_georep"]
    assert 3 == summary["divergent_keys_naive_put_conflict_mix"]
    assert 90 == summary["rss_peak_mb_georep"]
    assert None is summary["georep_vs_naive_batch"]
    assert 3.0 == summary["writes_per_record_georep_raw"]  # two destinations + its annotation


def test_judge_passes_fails_and_leaves_unmeasured_targets_open() -> None:
    verdicts = judge({"raw_40ms_vs_loopback": 0.96, "raw_vs_stamped_40ms": 0.9})
    assert True is verdicts["raw_40ms_vs_loopback"]["pass"]
    assert False is verdicts["raw_vs_stamped_40ms"]["pass"]
    assert None is verdicts["divergent_keys_georep"]["pass"]


def test_naive_plan_tags_copies_skips_copies_and_sends_removes() -> None:
    """A page's writes: a put of the new image with the loop guard, nothing for a record that
    is itself a copy, a delete of the keys for a REMOVE."""
    page = [
        {"eventName": "INSERT", "dynamodb": {"Keys": {"pk": s("a")}, "NewImage": {"pk": s("a")}}},
        {
            "eventName": "MODIFY",
            "dynamodb": {"Keys": {"pk": s("b")}, "NewImage": {"pk": s("b"), GUARD: s("x")}},
        },
        {"eventName": "REMOVE", "dynamodb": {"Keys": {"pk": s("c")}, "OldImage": {"pk": s("c")}}},
    ]
    writes = plan(page, "eu-west-1")
    assert [("put", {"pk": s("a"), GUARD: s("eu-west-1")}), ("delete", {"pk": s("c")})] == writes


def test_naive_batches_puts_before_deletes_25_at_a_time() -> None:
    """The reference's batched handler: every put, then every delete, in chunks of 25."""
    writes = [("put", {"pk": s(str(i))}) for i in range(30)] + [("delete", {"pk": s("d")})]
    chunks = batches(writes)
    assert [25, 6] == [len(c) for c in chunks]
    assert {"DeleteRequest": {"Key": {"pk": s("d")}}} == chunks[-1][-1]
