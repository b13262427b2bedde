"""The mutants tools/mutation.py applies, one at a time: plausible one-line bugs in the window,
the consumer, leases, checkpoints, verify and backfill (issue 16). Each names the tests that
should catch it; a survivor is argued here (equivalent) or killed by a named test.
"""

from __future__ import annotations

from dataclasses import dataclass


@dataclass(frozen=True)
class Mutant:
    id: str
    file: str
    find: str  # exact text, occurring once in the file
    replace: str
    tests: tuple[str, ...]


UNIT = "tests/unit"
WINDOW = (
    "tests/unit/test_window.py",
    "tests/unit/test_pipeline.py",
    "tests/property/test_convergence.py",
)
CONSUMER = (
    "tests/unit/test_consumer.py",
    "tests/unit/test_streams.py",
    "tests/property/test_stream_reader.py",
)
LEASES = (
    "tests/unit/test_leases.py",
    "tests/unit/test_lease_decisions.py",
    "tests/property/test_leases.py",
)
VERIFY = (
    "tests/unit/test_verifier.py",
    "tests/unit/test_verify.py",
    "tests/integration/test_verify.py",
)
BACKFILL = (
    "tests/unit/test_backfill.py",
    "tests/unit/test_backfill_cost.py",
    "tests/integration/test_backfill.py",
)

MUTANTS: list[Mutant] = [
    # -- the checkpoint rule ------------------------------------------------------------------
    Mutant(
        "checkpoint-safe-position-past-outstanding",
        "service/engine/checkpoint.py",
        "return min(self._outstanding, default=self._read)",
        "return max(self._outstanding, default=self._read)",
        (*CONSUMER, "tests/property/test_convergence.py"),
    ),
    Mutant(
        "checkpoint-done-forgets-other-destinations",
        "service/engine/checkpoint.py",
        "        if left:\n            self._outstanding[position] = left",
        "        if False:\n            self._outstanding[position] = left",
        (*CONSUMER, "tests/property/test_convergence.py"),
    ),
    Mutant(
        "checkpoint-read-position-off-by-one",
        "service/engine/checkpoint.py",
        "self._read = position + 1",
        "self._read = position + 2",
        (*CONSUMER, "tests/property/test_convergence.py"),
    ),
    # -- the window -----------------------------------------------------------------------------
    Mutant(
        "window-waiting-counts-as-settled",
        "service/engine/pipeline.py",
        'retry = {d: x for d, x in deliveries.items() if x.handled in ("failed", "waiting")}',
        'retry = {d: x for d, x in deliveries.items() if x.handled in ("failed",)}',
        WINDOW,
    ),
    Mutant(
        "window-rejected-is-ok",
        "service/engine/pipeline.py",
        'rejected = {d: x for d, x in deliveries.items() if x.handled == "rejected"}',
        'rejected = {d: x for d, x in deliveries.items() if x.handled == "refused"}',
        WINDOW,
    ),
    Mutant(
        "window-dead-letter-failure-lets-record-go",
        "service/engine/pipeline.py",
        """            return RecordResult(
                result.sequence, "failed", reason, result.outcome, result.deliveries
            )""",
        """            return RecordResult(
                result.sequence, "ok", reason, result.outcome, result.deliveries
            )""",
        WINDOW,
    ),
    Mutant(
        "window-coalesces-concurrent-versions",
        "service/engine/pipeline.py",
        "and compare(task.send.version.meta, queued.send.version.meta) is Order.AFTER",
        "and compare(task.send.version.meta, queued.send.version.meta) is not Order.BEFORE",
        WINDOW,
    ),
    Mutant(
        "window-coalesces-adoption-with-forward",
        "service/engine/pipeline.py",
        "        queued.here == task.here\n        and compare",
        "        True\n        and compare",
        WINDOW,
    ),
    Mutant(
        "window-failed-lane-not-held",
        "service/engine/pipeline.py",
        '                        lane.failed_at = _sequence_of(task.send.record) or f"#{task.send.index}"',
        "                        lane.failed_at = None",
        WINDOW,
    ),
    Mutant(
        "window-unknown-errors-permanent",
        "service/engine/pipeline.py",
        "    return isinstance(error, GeorepError)",
        "    return isinstance(error, Exception)",
        (*WINDOW, "tests/unit/test_consumer.py"),
    ),
    # -- leases (the pure decision) -------------------------------------------------------------
    Mutant(
        "leases-fair-share-floor",
        "service/core/leases.py",
        "return math.ceil(shards / max(workers, 1))",
        "return shards // max(workers, 1)",
        LEASES,
    ),
    Mutant(
        "leases-unobserved-counts-as-lapsed",
        "service/core/leases.py",
        "            return True  # NOTE: not observed yet",
        "            return False  # NOTE: not observed yet",
        LEASES,
    ),
    Mutant(
        "leases-release-kept-when-not-ready",
        "service/core/leases.py",
        "release = tuple(lease for lease in mine if lease.shard not in ready_set)",
        "release = tuple(lease for lease in mine if lease.shard in ())",
        LEASES,
    ),
    Mutant(
        "leases-hand-over-ignored",
        "service/core/leases.py",
        "lease for lease in mine if lease not in release and lease.wanted_by not in (None, me)",
        "lease for lease in mine if lease not in release and lease.wanted_by is me",
        LEASES,
    ),
    # -- verify and repair ----------------------------------------------------------------------
    Mutant(
        "verify-lost-race-counts-as-written",
        "service/engine/verify.py",
        "            if not result.ok:\n                log.info",
        "            if False:\n                log.info",
        VERIFY,
    ),
    Mutant(
        "verify-repaired-not-read-back",
        "service/engine/verify.py",
        '            if verdict.kind != "identical":\n                check[name]',
        "            if False:\n                check[name]",
        VERIFY,
    ),
    Mutant(
        "verify-pending-is-clean",
        "service/engine/verify.py",
        'return not any(o.status in ("divergent", "pending", "unrepairable") for o in self.outcomes)',
        'return not any(o.status in ("divergent", "unrepairable") for o in self.outcomes)',
        VERIFY,
    ),
    # -- backfill -------------------------------------------------------------------------------
    Mutant(
        "backfill-progress-past-a-failed-page",
        "service/engine/backfill.py",
        "            clean = clean and not page_tally.failed",
        "            clean = clean",
        BACKFILL,
    ),
    Mutant(
        "backfill-gone-counts-as-delivered",
        "service/engine/backfill.py",
        '                        return ItemResult(label, "skipped", stamped)',
        '                        return ItemResult(label, "delivered", stamped)',
        BACKFILL,
    ),
    Mutant(
        "backfill-stamped-item-read-first-skipped",
        "service/engine/backfill.py",
        "        fast = ExpectAbsent() if stamped else None",
        "        fast = ExpectAbsent()",
        BACKFILL,
    ),
]
