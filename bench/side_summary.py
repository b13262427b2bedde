"""Pure helpers of bench/side_by_side.py: what a region's item means to a user, divergence,
percentiles, and the run's ``summary`` and targets. No I/O, so tests/unit can pin them."""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from typing import Any

SYSTEMS = ("naive-put", "naive-batch", "georep-stamped", "georep-raw")
GEOREP = ("georep-stamped", "georep-raw")
# The attributes a replicator adds: georep's metadata and tombstone expiry, the naive
# replicator's loop guard. The rest is what the application wrote.
BOOKKEEPING_PREFIXES = ("_georep", "_naive_from")

TARGETS: dict[str, tuple[str, float]] = {
    "raw_40ms_vs_loopback": (">=", 0.95),
    "raw_vs_stamped_40ms": (">=", 0.95),
    "divergent_keys_georep": ("<=", 0),
    "rss_peak_mb_georep": ("<=", 150.0),
}


def user_view(item: Mapping[str, Any] | None, key_attrs: Iterable[str] = ("pk",)) -> Any:
    """An item as the application sees it: None when absent or a georep tombstone (nothing
    left but the key once the bookkeeping is dropped), else its own attributes."""
    if item is None:
        return None
    data = {k: v for k, v in item.items() if not k.startswith(BOOKKEEPING_PREFIXES)}
    if set(data) <= set(key_attrs):
        return None
    return data


def divergent_keys(tables: Mapping[str, Mapping[str, Mapping[str, Any]]]) -> list[str]:
    """Keys whose user view is not the same in every region (``tables``: region -> key ->
    item), sorted."""
    keys = set().union(*(set(t) for t in tables.values())) if tables else set()
    out = []
    for key in keys:
        views = [user_view(t.get(key)) for t in tables.values()]
        if any(v != views[0] for v in views[1:]):
            out.append(key)
    return sorted(out)


def percentile(values: list[float], q: float) -> float | None:
    """The nearest-rank percentile, None for no values."""
    if not values:
        return None
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q * len(ordered)) - 1))]


def _ratio(a: float | None, b: float | None) -> float | None:
    return round(a / b, 3) if a and b else None


def summarise(result: Mapping[str, Any]) -> dict[str, Any]:
    """The run's summary from its points: ``result["points"][system][delay][workload]`` (each
    with ``records_per_s``, ``lag``, ``divergent_keys``, ``peak_rss_mb``) and
    ``result["ceiling"][delay]["writes_per_s"]``; delays are strings of ms ("0", "40").

    The headline ratios use the uniform workload; every point is kept in the result besides.
    ``georep_vs_ceiling`` counts destination writes (two per record with three regions) against
    the ceiling's conditional writes at the same delay."""
    points = result["points"]
    destinations = len(result.get("regions", ("a", "b", "c"))) - 1

    def rate(system: str, delay: str, workload: str = "uniform") -> float | None:
        point = points.get(system, {}).get(delay, {}).get(workload)
        return point.get("records_per_s") if point else None

    summary: dict[str, Any] = {}
    for delay, ceiling in result.get("ceiling", {}).items():
        summary[f"ceiling_writes_per_s_{delay}ms"] = ceiling.get("writes_per_s")
        stamped = rate("georep-stamped", delay)
        writes = stamped * destinations if stamped else None
        summary[f"georep_vs_ceiling_{delay}ms"] = _ratio(writes, ceiling.get("writes_per_s"))
    summary["georep_vs_ceiling"] = summary.get("georep_vs_ceiling_0ms")
    for delay in ("0", "40"):
        for naive in ("naive_put", "naive_batch"):
            system = naive.replace("_", "-")
            summary[f"georep_vs_{naive}_{delay}ms"] = _ratio(
                rate("georep-stamped", delay), rate(system, delay)
            )
            summary[f"georep_raw_vs_{naive}_{delay}ms"] = _ratio(
                rate("georep-raw", delay), rate(system, delay)
            )
    summary["georep_vs_naive_put"] = summary.get("georep_vs_naive_put_0ms")
    summary["georep_vs_naive_batch"] = summary.get("georep_vs_naive_batch_0ms")
    summary["raw_vs_stamped_0ms"] = _ratio(rate("georep-raw", "0"), rate("georep-stamped", "0"))
    summary["raw_vs_stamped_40ms"] = _ratio(rate("georep-raw", "40"), rate("georep-stamped", "40"))
    summary["wan_40ms_vs_loopback"] = _ratio(
        rate("georep-stamped", "40"), rate("georep-stamped", "0")
    )
    summary["raw_40ms_vs_loopback"] = _ratio(rate("georep-raw", "40"), rate("georep-raw", "0"))
    # What each system asked of the backend: the stream records its writes made, per record
    # of the backlog (a write that changes an item makes one), on the uniform workload at 0 ms.
    for system in SYSTEMS:
        point = points.get(system, {}).get("0", {}).get("uniform", {})
        if point.get("records") and point.get("replicator_records") is not None:
            name = system.replace("-", "_")
            summary[f"writes_per_record_{name}"] = round(
                point["replicator_records"] / point["records"], 2
            )

    for group, systems in (
        ("georep", GEOREP),
        ("naive_put", ("naive-put",)),
        ("naive_batch", ("naive-batch",)),
    ):
        runs = [
            point
            for system in systems
            for by_workload in points.get(system, {}).values()
            for point in by_workload.values()
        ]
        p50s = [r["lag"]["p50_s"] for r in runs if r.get("lag", {}).get("p50_s") is not None]
        p99s = [r["lag"]["p99_s"] for r in runs if r.get("lag", {}).get("p99_s") is not None]
        suffix = "" if group == "georep" else f"_{group}"
        # The worst point: a lag target holds for every workload and delay, or it does not.
        summary[f"lag_p50_s{suffix}"] = max(p50s) if p50s else None
        summary[f"lag_p99_s{suffix}"] = max(p99s) if p99s else None
        divergent = [r["divergent_keys"] for r in runs if r.get("divergent_keys") is not None]
        summary[f"divergent_keys_{group}"] = sum(divergent) if divergent else None
        rss = [r["peak_rss_mb"] for r in runs if r.get("peak_rss_mb")]
        summary[f"rss_peak_mb_{group}"] = round(max(rss), 1) if rss else None
        conflict = [
            points.get(system, {}).get(delay, {}).get("conflict", {}).get("divergent_keys")
            for system in systems
            for delay in points.get(system, {})
        ]
        known = [c for c in conflict if c is not None]
        if known:
            summary[f"divergent_keys_{group}_conflict_mix"] = sum(known)
    return {k: round(v, 4) if isinstance(v, float) else v for k, v in summary.items()}


def judge(summary: Mapping[str, Any]) -> dict[str, Any]:
    """Each target with the value measured and pass/fail (None: not measured)."""
    out: dict[str, Any] = {}
    for name, (op, target) in TARGETS.items():
        value = summary.get(name)
        ok = None if value is None else (value >= target if op == ">=" else value <= target)
        out[name] = {"target": f"{op} {target}", "value": value, "pass": ok}
    return out
