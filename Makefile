# Every target creates .venv if it is missing and installs the project into it first.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed

.PHONY: install demo test test-deep lint typecheck bench bench-replication clean

$(STAMP): pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[test]'
	touch $(STAMP)

# DynamoDB Local (AWS's engine) is fetched at install time from the npm package
# amplify-dynamodb-simulator into .cache/ (never committed); skipped if npm or Java 17 is missing.
DDBLOCAL := .cache/dynamodb-local/georep-install.json

$(DDBLOCAL): | $(STAMP)
	$(PY) -m service.backends.fetch

install: $(STAMP) $(DDBLOCAL)

demo: $(STAMP) $(DDBLOCAL)
	$(PY) -m service.demo

lint: $(STAMP)
	$(PY) -m ruff check service resolvers tests bench
	$(PY) -m ruff format --check service resolvers tests bench

typecheck: $(STAMP)
	$(PY) -m mypy

test: lint typecheck $(DDBLOCAL)
	GEOREP_REQUIRE_DDBLOCAL=$(CI) HYPOTHESIS_PROFILE=ci $(PY) -m pytest -q

test-deep: $(STAMP)
	HYPOTHESIS_PROFILE=deep $(PY) -m pytest -q tests/property

bench: $(STAMP)
	$(PY) bench/core.py

bench-replication: $(STAMP) $(DDBLOCAL)
	$(PY) bench/replication.py --backend dynamodb-local
	$(PY) bench/replication.py --backend moto

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
