# Every target creates .venv if it is missing and installs the project into it first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-deep chaos chaos-teeth lint typecheck bench bench-quick bench-soak bench-wan bench-memory bench-replication bench-store package clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# The embedded backend is the moto server (moto[server], Apache-2.0), installed with the test
# extra and started by the demo, the tests and the benchmarks themselves: nothing else to fetch.
install: $(STAMP)

demo: $(STAMP)
	$(VENV)/bin/georep demo

lint: $(STAMP)
	$(PY) -m ruff check service resolvers tests bench deploy tools
	$(PY) -m ruff format --check service resolvers tests bench deploy tools

typecheck: $(STAMP)
	$(PY) -m mypy

# One worker per core; tests are shared out one at a time and an idle worker takes queued tests
# from a busy one (worksteal: 583 s against 678 s for a file per worker on CI's 2 cores,
# session 36), so a few long files no longer finish last on one worker. A module's moto server
# (module-scoped fixture) then starts once per worker that runs its tests (under a second).
test: lint typecheck
	HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q -n auto --dist worksteal

# A fresh random seed each run, printed first; replay a failing run with `make test-deep SEED=n`
# (MACHINES=path narrows it, e.g. MACHINES=tests/property/test_rules_convergence.py;
# DEEP_PROFILE=deep-triage replays it in seconds, without shrinking a long schedule).
DEEP_PROFILE ?= deep
ifeq ($(SEED),)
SEED := $(shell $(PYTHON) -c 'import secrets; print(secrets.randbelow(2**32))')
endif
MACHINES ?= tests/property
test-deep: $(STAMP)
	@echo "test-deep: SEED=$(SEED) (replay: make test-deep SEED=$(SEED))"
	HYPOTHESIS_PROFILE=$(DEEP_PROFILE) $(PY) -m pytest -q --hypothesis-seed=$(SEED) $(MACHINES)

# A long `georep chaos` run (make test runs a short one, tests/chaos/): writers and faults for
# CHAOS_DURATION seconds on the embedded backend, with the resolver of CONFIG if it exists. The
# seed is printed first; `make chaos CHAOS_SEED=N` replays a run's schedule.
CHAOS_DURATION ?= 600
ifndef CHAOS_SEED
CHAOS_SEED     := $(shell $(PYTHON) -c 'import random; print(random.randrange(1 << 31))')
endif
CHAOS_FAULTS   ?= kill,standby,throttle,error_500,error_503,drop,half_close,lost_response,latency,partition,skew
chaos: $(STAMP)
	@echo "georep chaos: seed $(CHAOS_SEED) (replay: make chaos CHAOS_SEED=$(CHAOS_SEED))"
	$(VENV)/bin/georep chaos -c $(CONFIG) --duration $(CHAOS_DURATION) --writers 2 \
		--faults $(CHAOS_FAULTS) --seed $(CHAOS_SEED)

# Teeth for every fault kind (tools/chaos_teeth.py): each break of the code that handles a fault
# applied alone to a scratch copy, and the 30 s `georep chaos` run that should catch it; about
# 2 minutes a break. The table is printed, the runs kept in bench/results/chaos-teeth-*.json.
chaos-teeth: $(STAMP)
	$(PY) tools/chaos_teeth.py

# bench/side_by_side.py (issue 19): in one run, the backend's ceiling, the naive Lambda-style
# replicator (bench/naive.py: per-record PutItem, and BatchWriteItem) and georep (stamped and
# raw writes) on the same workloads at 0 and 40 ms one way; records/s and the ratios, lag,
# peak RSS, divergent keys after quiescence. bench-quick: uniform keys and the conflict mix,
# small backlogs, under 3 minutes, after bench/core.py (the core's decisions/s beside the previous
# run's, bench/results/core-history.jsonl); bench: all four workloads (uniform, hot keys, bursts,
# conflict), then bench/leases.py at 1,000 shards. Results: bench/results/side-by-side-*.json
# (README, "Benchmarks").
bench-quick: $(STAMP)
	$(PY) bench/core.py
	$(PY) bench/side_by_side.py --quick

bench: $(STAMP)
	$(PY) bench/side_by_side.py
	$(PY) bench/leases.py --shards 1000 --runs 3 \
		--json bench/results/leases-1000-$$(git rev-parse --short HEAD).json

# bench/soak.py: one consumer (georep's polling loop and window) replicating 1,000,000 records
# of a generated stream into tables that keep nothing; RSS sampled, peak and slope reported.
# SOAK_RECORDS=200000 for a shorter run. bench/results/soak-*.json.
SOAK_RECORDS ?= 1000000
bench-soak: $(STAMP)
	$(PY) bench/soak.py --records $(SOAK_RECORDS) \
		--json bench/results/soak-$(SOAK_RECORDS)-$$(git rev-parse --short HEAD).json

# bench/wan.py: replication across 0/40/100 ms of inter-region latency, about 6 minutes;
# results in bench/results/ (see docs/decisions.md).
bench-wan: $(STAMP)
	$(PY) bench/core.py
	$(PY) bench/wan.py

# bench/memory.py: backfill and dead-letter replay RSS at 10k, 100k and 1M items (the engines
# over generated sources and discarding tables), about 12 minutes; bench/results/memory-*.json.
bench-memory: $(STAMP)
	$(PY) bench/memory.py --json bench/results/memory-$$(git rev-parse --short HEAD).json

bench-replication: $(STAMP)
	$(PY) bench/replication.py

# bench/store_cost.py (issue 22): the tombstone store's cost, before (tombstone items) and after
# (the store) in one run, resolver lww, 3 regions on a moto server that counts every request:
# write and read units and requests per replicated change by kind (update, insert, SDK delete,
# raw delete adoption), and the replication rate of insert-heavy and delete-heavy backlogs at
# 0 and 40 ms one way. About 2-3 minutes; STORE_ARGS= for the longer run (about 5).
# Results: bench/results/store-cost-*.json, a table printed.
STORE_ARGS ?= --quick
bench-store: $(STAMP)
	$(PY) bench/store_cost.py $(STORE_ARGS)

# The Lambda function's zip (deploy/package.py): service/, resolvers/, CONFIG if it exists, and
# deploy/requirements.txt's wheels for manylinux2014_aarch64 / CPython 3.12 (boto3 is the
# runtime's). Reproducible: the same inputs give the same bytes. Byte-compiled when a python3.12
# is on PATH (Lambda's /var/task is read-only: no pycs means compiling on every cold start).
CONFIG    ?= georep.toml
PYTHON312 ?= python3.12
PACKAGE   := dist/georep-lambda.zip
HAS_312   := $(shell $(PYTHON312) -c 'import sys; print(sys.version_info[:2] == (3, 12))' 2>/dev/null)
package: $(STAMP)
	$(PY) deploy/package.py --out $(PACKAGE) $(if $(wildcard $(CONFIG)),--config $(CONFIG)) \
		$(if $(filter True,$(HAS_312)),--compile $(PYTHON312))

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis .cache
