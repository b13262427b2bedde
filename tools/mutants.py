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


WINDOW = (
    "tests/unit/test_window.py",
    "tests/unit/test_pipeline.py",
    "tests/property/test_convergence.py",
)
CONSUMER = (
    "tests/unit/test_checkpoint_tracker.py",
    "tests/unit/test_consumer.py",
    "tests/unit/test_streams.py",
    "tests/unit/test_checkpoints.py",
    "tests/property/test_stream_reader.py",
    "tests/property/test_consumers.py",
)
CHECKPOINTS = (*CONSUMER, "tests/integration/test_checkpoints.py")
LEASES = (
    "tests/unit/test_leases.py",
    "tests/unit/test_lease_decisions.py",
    "tests/property/test_leases.py",
)
STORE = (
    "tests/unit/test_pipeline_store.py",
    "tests/unit/test_places.py",
    "tests/property/test_store_convergence.py",
)
VERIFY = (
    "tests/unit/test_verifier.py",
    "tests/unit/test_verify.py",
    "tests/integration/test_verify.py",
)
VERIFY_STORE = (
    "tests/unit/test_verify_store.py",
    "tests/unit/test_verifier.py",
    "tests/integration/test_verify_store.py",
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
    # Survived in session 30 (killed at b2e9edf by the version-counter machine after 390 s):
    # argued equivalent on reachable states. Only the own region's lane holds tasks with
    # different ``here`` (a restore, an adoption); coalescing also needs the later version to
    # succeed the queued one, and neither kind can: an adoption after a restore comes from a
    # raw write made after the tombstone was removed by hand (its old image is absent, so it
    # succeeds nothing), and a restore after an adoption puts back the tombstone the table
    # held, which is the adoption itself or older. A scripted test of the first order
    # (removal, raw put, one batch) passes with and without the mutant.
    Mutant(
        "window-coalesces-adoption-with-forward",
        "service/engine/pipeline.py",
        "        queued.here == task.here\n        and queued.gate is None",
        "        True\n        and queued.gate is None",
        WINDOW,
    ),
    Mutant(
        "window-failed-lane-not-held",
        "service/engine/pipeline.py",
        '                    lane.failed_at = _sequence_of(task.send.record) or f"#{task.send.index}"',
        "                    lane.failed_at = None",
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
    # -- verify and repair with the tombstone store (issue 22) ---------------------------------
    Mutant(
        "verify-store-repair-planned-on-tables-only",
        "service/engine/verify.py",
        "                stores=reading.stores,\n                settings=self.settings,\n                now_hlc",
        "                stores=None,\n                settings=self.settings,\n                now_hlc",
        VERIFY_STORE,
    ),
    Mutant(
        "verify-store-keys-only-in-stores-not-compared",
        "service/engine/verify.py",
        "        if stores is None:\n            return\n        report.compared",
        "        if True:\n            return\n        report.compared",
        VERIFY_STORE,
    ),
    Mutant(
        "verify-store-tombstones-not-compared",
        "service/core/verify.py",
        "(fingerprint(item), store_print(stores.get(r)) if stores is not None else None)",
        "(fingerprint(item), None)",
        VERIFY_STORE,
    ),
    Mutant(
        "verify-store-stale-tombstone-ignored",
        "service/core/verify.py",
        "            stale.add(region)",
        "            pass",
        VERIFY_STORE,
    ),
    Mutant(
        "verify-store-repair-forwarded-as-local",
        "service/core/verify.py",
        "            state, write.version, local=False, table=table, settings=settings",
        "            state, write.version, local=True, table=table, settings=settings",
        VERIFY_STORE,
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
    # -- monotonic, owned checkpoints (service/core/checkpoints.py and its stores) -------------
    Mutant(
        "checkpoints-a-finished-shard-reopens",
        "service/core/checkpoints.py",
        "    if stored.finished:\n        return False",
        "    if stored.finished:\n        return True",
        CHECKPOINTS,
    ),
    Mutant(
        "checkpoints-compared-as-strings",
        "service/core/checkpoints.py",
        "return position(new.sequence) > position(stored.sequence)",
        "return new.sequence > stored.sequence",
        CHECKPOINTS,
    ),
    Mutant(
        "checkpoints-a-save-may-stay-in-place",
        "service/core/checkpoints.py",
        "return position(new.sequence) > position(stored.sequence)",
        "return position(new.sequence) >= position(stored.sequence) - 1",
        CHECKPOINTS,
    ),
    Mutant(
        "checkpoints-discovery-resets",
        "service/core/checkpoints.py",
        "    if new.sequence is None:\n        return False",
        "    if new.sequence is None:\n        return True",
        CHECKPOINTS,
    ),
    Mutant(
        "checkpoints-dynamo-condition-forgets-forward",
        "service/adapters/checkpoints.py",
        'forward = "(attribute_not_exists(#p) OR #p < :p)"',
        'forward = "(attribute_not_exists(#p) OR #p <> :p)"',
        CHECKPOINTS,
    ),
    Mutant(
        "checkpoints-dynamo-finished-reopens",
        "service/adapters/checkpoints.py",
        '        unfinished = "#f <> :done"',
        '        unfinished = "#f <> :done OR #f = :done"',
        CHECKPOINTS,
    ),
    # -- the stream reader ----------------------------------------------------------------------
    # Equivalent, argued: a discovery save is refused only when another consumer saved the
    # shard between this reader's load and its listing, i.e. this one does not hold the
    # lease; taking the lease later always restarts the shard from the stored checkpoint
    # (refresh, killed above as reader-lease-taken-without-reloading), so the empty state
    # kept here is never read from. Without leases there is no other saver.
    Mutant(
        "reader-discovery-keeps-its-own-empty-state",
        "service/engine/streams.py",
        "                    state = self.checkpoints.load().get(shard_id, state)",
        "                    pass",
        CONSUMER,
    ),
    Mutant(
        "reader-lease-taken-without-reloading",
        "service/engine/streams.py",
        "            if shard_id in stored:\n                self._take(shard_id, stored[shard_id])",
        "            if False:\n                self._take(shard_id, stored[shard_id])",
        CONSUMER,
    ),
    Mutant(
        "reader-lost-iterator-resumes-at-checkpoint",
        "service/engine/streams.py",
        "sequence = self._handed.get(shard_id) or self.state[shard_id].sequence",
        "sequence = self.state[shard_id].sequence",
        CONSUMER,
    ),
    Mutant(
        "reader-retention-margin-sign",
        "service/engine/streams.py",
        "if age >= self.retention - self.margin:",
        "if age >= self.retention + self.margin:",
        CONSUMER,
    ),
    Mutant(
        "reader-truncated-answer-closes-the-shard",
        "service/engine/streams.py",
        '        if "Records" not in response:  # not even an empty list: the answer was cut short',
        "        if False:  # not even an empty list: the answer was cut short",
        ("tests/chaos/test_fault_proxy.py",),
    ),
    # -- the consumer loop ----------------------------------------------------------------------
    Mutant(
        "consumer-window-bound-off-by-one",
        "service/engine/consumer.py",
        "or records + self.batch_size > self.window_records",
        "or records > self.window_records",
        (*CONSUMER, "tests/unit/test_window.py"),
    ),
    Mutant(
        "consumer-lost-lease-still-checkpoints",
        "service/engine/consumer.py",
        "            if flow.lost or (self.leases is not None and not self.leases.holds(shard_id)):",
        "            if False:",
        CONSUMER,
    ),
    Mutant(
        "consumer-finishes-a-shard-with-records-in-flight",
        "service/engine/consumer.py",
        "            finished = flow.closed and drained and flow.failed is None",
        "            finished = flow.closed and flow.failed is None",
        CONSUMER,
    ),
    Mutant(
        "consumer-checkpoints-what-is-read-not-applied",
        "service/engine/consumer.py",
        "            safe = flow.tracker.safe_position()",
        "            safe = flow.tracker.read_position",
        CONSUMER,
    ),
    # -- raw-write adoption: the blind actor (docs/design.md, "Raw-write adoption") -----------
    Mutant(
        "adoption-never-blind",
        "service/core/stamp.py",
        "    return base is None or {a for a, _ in base.vv.entries} == {blind_actor(region)}",
        "    return False",
        ("tests/unit/test_raw_sequences.py", "tests/property/test_core.py"),
    ),
    Mutant(
        "adoption-blind-over-a-base-with-other-actors",
        "service/core/stamp.py",
        "    return base is None or {a for a, _ in base.vv.entries} == {blind_actor(region)}",
        "    return base is None or blind_actor(region) in {a for a, _ in base.vv.entries}",
        ("tests/property/test_core.py",),
    ),
    Mutant(
        "adoption-blind-clock-takes-sequence-bits",
        "service/core/adopt.py",
        "0 if blind else sequence_bits(change.sequence)",
        "sequence_bits(change.sequence)",
        ("tests/property/test_core.py",),
    ),
    Mutant(
        "conflict-merges-of-one-region-logged",
        "service/core/conflicts.py",
        "    if len(regions) == 1:\n        return False\n",
        "",
        ("tests/unit/test_raw_sequences.py",),
    ),
    # -- session 30: the successor's clock and the adoption's gate ------------------------------
    Mutant(
        "successor-timed-like-a-write",
        "service/core/stamp.py",
        "SUCCESSOR_STEP = 1\nWRITE_STEP = 2",
        "SUCCESSOR_STEP = 1\nWRITE_STEP = 1",
        ("tests/property/test_regressions.py",),
    ),
    Mutant(
        "adoption-overtakes-its-region",
        "service/engine/pipeline.py",
        '            gated = send.role == "adoption" and (\n'
        "                self.settings.resolver.keeps_deleted_data or self.settings.tombstone_store\n"
        "            )",
        "            gated = False",
        ("tests/property/test_regressions.py",),
    ),
    Mutant(
        "gate-opens-when-its-region-failed",
        "service/engine/pipeline.py",
        'ok=delivery.handled not in ("failed", "waiting"),',
        "ok=True,",
        ("tests/property/test_regressions.py",),
    ),
    # -- session 31: raw items under merge rules, own data under an annotation -----------------
    Mutant(
        "merge-rules-merge-beside-a-foreign-version",
        "service/core/apply.py",
        "            if keeps and here is None:\n",
        "            if keeps and here is None and incoming.meta.deleted:\n",
        ("tests/property/test_regressions.py", "tests/unit/test_pipeline.py"),
    ),
    Mutant(
        "merge-rules-no-read-path-over-raw-items",
        "service/engine/pipeline.py",
        "    if settings is not None and settings.resolver.keeps_deleted_data:\n",
        "    if settings is None:\n",
        ("tests/unit/test_pipeline.py",),
    ),
    Mutant(
        "deferred-delivery-reported-skipped",
        "service/engine/pipeline.py",
        'return Delivery("failed", decision.reason, RAW_NOT_ADOPTED)',
        'return Delivery("skipped", decision.reason)',
        ("tests/unit/test_pipeline.py", "tests/property/test_regressions.py"),
    ),
    # Killed by test_successors_of_a_regions_adoptions_never_retime_another_regions_value,
    # whose write over the raw item is made as an earlier SDK made it (``at_once``): since
    # SDK writes wait for an adoption under merge rules, only items written by earlier
    # versions reach this branch with another region's value (session 31's survivor).
    Mutant(
        "successor-even-where-the-merge-keeps-the-later-write",
        "service/core/apply.py",
        "                    if _same_resolution(merged, successor):",
        "                    if False:",
        ("tests/property/test_regressions.py",),
    ),
    # Survives, argued: ignoring field stamps writes the plain merge under field rules where
    # its data equals the successor's and only the stamps differ (the successor's raised above
    # the adoption). Every region computes that same plain merge from the same two versions,
    # so convergence and the one-version-per-vector check hold either way; what differs is
    # only how a later concurrent write of another region ranks against those attributes, and
    # the oracle accepts either winner of concurrent writes. Kept: it leaves field rules on
    # the successor the field-rules machine's deep runs were proven with.
    Mutant(
        "same-resolution-ignores-field-stamps",
        "service/core/apply.py",
        "        and merged.meta.fields == successor.meta.fields\n",
        "",
        ("tests/property/test_regressions.py", "tests/property/test_core.py"),
    ),
    Mutant(
        "own-adoption-drops-the-annotation-it-lacks",
        "service/core/apply.py",
        "                and compare(incoming.meta, copied) is Order.CONCURRENT\n",
        "                and False\n",
        ("tests/property/test_regressions.py", "tests/property/test_core.py"),
    ),
    # -- the lease keeper -----------------------------------------------------------------------
    Mutant(
        "keeper-draining-still-takes",
        "service/engine/leases.py",
        "                take=(),\n                want=0,",
        "                want=plan.want,",
        LEASES,
    ),
    Mutant(
        "keeper-forgets-what-it-took",
        "service/engine/leases.py",
        "        self.last_taken = frozenset(got)",
        "        self.last_taken = frozenset()",
        (*LEASES, *CONSUMER),
    ),
    # -- the tombstone store (issue 22, session 32) ------------------------------------------
    Mutant(
        "store-adoptions-not-gated",
        "service/engine/pipeline.py",
        "self.settings.resolver.keeps_deleted_data or self.settings.tombstone_store",
        "self.settings.resolver.keeps_deleted_data",
        STORE,
    ),
    Mutant(
        "store-only-successor-not-sent",
        "service/engine/pipeline.py",
        "                        return replace(applied, replacement=decision.version)",
        "                        return applied",
        STORE,
    ),
    Mutant(
        "stale-adoption-sends-no-state",
        "service/engine/pipeline.py",
        "                instead = _state_succeeding(state, version, here)",
        "                instead = None",
        STORE,
    ),
    Mutant(
        "insert-beside-a-tombstone-not-adopted-over-it",
        "service/core/adopt.py",
        "        beside is not None\n        and change.old is None",
        "        False\n        and change.old is None",
        STORE,
    ),
    Mutant(
        "copy-beside-a-tombstone-overwritten",
        "service/core/places.py",
        '        return Defer("the item here, copied in after a delete, is not adopted yet")',
        "        pass",
        STORE,
    ),
    # -- session 33: successors, merge rules with the store, replayed raw deletes ------------
    Mutant(
        "successor-raises-the-update-count",
        "service/core/stamp.py",
        "        count = max(replaced.meta.count, meta.count + 1)",
        "        count = max(replaced.meta.count, meta.count) + 1",
        ("tests/property/test_regressions.py", *STORE),
    ),
    Mutant(
        "raw-write-beside-a-stored-tombstone-not-taken-over-it",
        "service/core/places.py",
        "        and compare(incoming.meta, tombstone.meta) is Order.CONCURRENT",
        "        and compare(incoming.meta, tombstone.meta) is Order.AFTER",
        STORE,
    ),
    Mutant(
        "version-kept-beside-a-raw-item-drops-the-stored-tombstone",
        "service/core/places.py",
        "            and version.meta.digest != checked_digest(version.data)",
        "            and version.meta.digest == checked_digest({})",
        STORE,
    ),
    Mutant(
        "replayed-raw-delete-taken-for-an-echo",
        "service/core/adopt.py",
        "                if (adopted.meta.actor, adopted.meta.write_id, adopted.meta.vv) == (",
        "                if (adopted.meta.actor, adopted.meta.write_id, None) == (",
        STORE,
    ),
    # -- session 34: a later raw write's adoption over its predecessor's merge -------------
    Mutant(
        "later-raw-write-merged-with-its-predecessors-carried-merge",
        "service/core/apply.py",
        "        and adoption.vv.get(actor) < counter < adoption.vv.get(adoption.actor)",
        "        and adoption.vv.get(actor) < counter < 0",
        (
            "tests/property/test_core.py",
            "tests/property/test_regressions.py",
            "tests/property/test_convergence.py",
            *STORE,
        ),
    ),
    Mutant(
        "later-raw-write-succeeds-any-adoption-of-its-region",
        "service/core/apply.py",
        "        and adoption.vv.get(actor) < counter < adoption.vv.get(adoption.actor)",
        "        and adoption.vv.get(actor) < counter",
        (
            "tests/property/test_core.py",
            "tests/property/test_regressions.py",
            "tests/property/test_convergence.py",
            *STORE,
        ),
    ),
    Mutant(
        "successor-tombstone-with-the-store-left-to-its-echo",
        "service/engine/pipeline.py",
        "                    if state is not None and decision.version.meta.deleted:",
        "                    if state is not None and steps[0] is not None and steps[0].check:",
        STORE,
    ),
    # -- session 35: version counters with an application counter ----------------------------
    Mutant(
        "tombstone-keeps-only-its-key-under-an-application-counter",
        "service/core/stored.py",
        "        return {**self.keys_of(data), **{a: data[a] for a in kept if a in data}}",
        "        return self.keys_of(data)",
        (
            "tests/property/test_regressions.py",
            "tests/property/test_convergence.py",
            "tests/property/test_store_convergence.py",
        ),
    ),
    Mutant(
        "tombstone-ranks-with-the-version-it-deleted-on-the-clock",
        "resolvers/version_counter.py",
        "        deleted = self.attribute is not None and version.meta.deleted",
        "        deleted = False",
        (
            "tests/property/test_regressions.py",
            "tests/property/test_convergence.py",
            "tests/property/test_store_convergence.py",
        ),
    ),
    Mutant(
        "successor-under-an-application-counter-keeps-what-replaced-the-raw-write",
        "service/core/stamp.py",
        "        and settings.ranked_by_data\n",
        "        and False\n",
        (
            "tests/property/test_regressions.py",
            "tests/property/test_convergence.py",
            "tests/property/test_store_convergence.py",
        ),
    ),
    Mutant(
        "later-raw-write-retimed-under-an-application-counter",
        "service/core/apply.py",
        "                and not settings.ranked_by_data\n",
        "                and True\n",
        (
            "tests/property/test_regressions.py",
            "tests/property/test_convergence.py",
            "tests/property/test_store_convergence.py",
        ),
    ),
]
