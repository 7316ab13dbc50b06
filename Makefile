# Developer and CI entry points. `make test` is the one command CI runs (.ci/run).

SHELL := bash
.SHELLFLAGS := -euo pipefail -c
# One shell per recipe, so a recipe's trap and variables live through all its lines.
.ONESHELL:
.DEFAULT_GOAL := test

# wearipedia 0.1.7 needs Python < 3.13 and the service 3.11 or later (datetime.UTC); the venv
# check below says so early.
PYTHON ?= python3
VENV := .venv
VENV_PY := $(VENV)/bin/python
# Touched after a successful install, so the venv is rebuilt only when a requirements file
# changes.
VENV_STAMP := $(VENV)/.installed
REQUIREMENTS := ingestion/requirements.txt requirements-dev.txt
TSDB := scripts/timescaledb.sh
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k schema -x'
PYTEST_ARGS ?=

.PHONY: venv test db-start db-stop lint run

venv: $(VENV_STAMP)

$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(None if (3, 11) <= v < (3, 13) else f"Python {v[0]}.{v[1]}: need 3.11 or 3.12; set PYTHON=python3.X")'
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	touch $@

# Starts the database if needed and stops it afterwards only if this run started it, so a
# developer's running server stays up. Exits non-zero when pytest does (exit 5, no tests
# collected, included); make itself reports any failure as exit 2.
test: venv
	@started=0
	$(TSDB) status >/dev/null 2>&1 || started=1
	if ((started)); then trap '$(TSDB) stop' EXIT; fi
	settings=$$($(TSDB) start)
	eval "$$settings"
	export TEST_DB_HOST=$$DB_HOST TEST_DB_PORT=$$DB_PORT TEST_DB_USER=$$DB_USER
	$(VENV_PY) -m pytest $(PYTEST_ARGS)

db-start:
	$(TSDB) start

db-stop:
	$(TSDB) stop

lint: venv
	$(VENV)/bin/ruff check .

run: venv
	@settings=$$($(TSDB) start)
	eval "$$settings"
	export DB_HOST DB_PORT DB_NAME DB_USER
	$(VENV_PY) ingestion/ingest.py

# Throughput and memory (bench/run.py) on the local TimescaleDB, started and stopped as for
# `make test`; the benchmark makes and drops its own databases there. Takes ~3 minutes.
# Parameters, e.g. make bench BENCH_ARGS='--participants 10 --days 1 --json /tmp/bench.json'
BENCH_ARGS ?=

.PHONY: bench

bench: venv
	@started=0
	$(TSDB) status >/dev/null 2>&1 || started=1
	if ((started)); then trap '$(TSDB) stop' EXIT; fi
	settings=$$($(TSDB) start)
	eval "$$settings"
	export DB_HOST DB_PORT DB_USER
	$(VENV_PY) bench/run.py $(BENCH_ARGS)
