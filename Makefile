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
# The community edition's server: its own port and data directory beside the Apache one's.
COMMUNITY_ENV = TSDB_PORT=$${TSDB_COMMUNITY_PORT:-} TSDB_DATA_DIR=$${TSDB_COMMUNITY_DATA_DIR:-}
COMMUNITY = $(COMMUNITY_ENV) TSDB_EDITION=community $(TSDB)
DOCKER_TESTBED := scripts/docker-testbed.sh
# Extra pytest arguments, e.g. make test PYTEST_ARGS='-k schema -x'
PYTEST_ARGS ?=
# Parallel test workers (pytest-xdist); 0 runs the tests in this process, one at a time.
# tests/conftest.py keeps the Docker tests and the cron-daemon tests each on one worker.
TEST_WORKERS ?= 3

.PHONY: venv test db-start db-stop lint run

venv: $(VENV_STAMP)

$(VENV_STAMP): $(REQUIREMENTS)
	$(PYTHON) -c 'import sys; v = sys.version_info[:2]; sys.exit(None if (3, 11) <= v < (3, 13) else f"Python {v[0]}.{v[1]}: need 3.11 or 3.12; set PYTHON=python3.X")'
	$(PYTHON) -m venv $(VENV)
	$(VENV_PY) -m pip install --quiet --disable-pip-version-check $(addprefix -r ,$(REQUIREMENTS))
	touch $@

# Starts the databases if needed and stops them afterwards only if this run started them, so
# a developer's running servers stay up. Two editions of TimescaleDB (docs/development.md, "Both
# editions"): Debian's Apache build, and the community edition of the official image when
# its source is there (../shared/timescaledb-src, or TSDB_COMMUNITY_SOURCE); in CI it must
# be. Its port and data directory: TSDB_COMMUNITY_PORT, TSDB_COMMUNITY_DATA_DIR. As root it
# also starts the Docker test bed (engine and base images for tests/test_docker.py) and stops
# it afterwards if it started it; without root those tests skip. Exits non-zero when pytest
# does (exit 5, no tests collected, included); make itself reports any failure as exit 2.
test: venv
	@stop_apache=0 stop_community=0 stop_docker=0
	trap '((!stop_apache)) || $(TSDB) stop; ((!stop_community)) || $(COMMUNITY) stop; ((!stop_docker)) || $(DOCKER_TESTBED) stop' EXIT
	$(TSDB) status >/dev/null 2>&1 || stop_apache=1
	settings=$$($(TSDB) start)
	eval "$$settings"
	export TEST_DB_HOST=$$DB_HOST TEST_DB_PORT=$$DB_PORT TEST_DB_USER=$$DB_USER
	if [[ $${CI:-} == true ]] || $(COMMUNITY) available 2>/dev/null; then
		$(COMMUNITY) status >/dev/null 2>&1 || stop_community=1
		settings=$$($(COMMUNITY) start)
		eval "$$settings"
		export TEST_COMMUNITY_DB_HOST=$$DB_HOST TEST_COMMUNITY_DB_PORT=$$DB_PORT TEST_COMMUNITY_DB_USER=$$DB_USER
	else
		$(COMMUNITY) available || true
		echo "make test: the community-edition tests skip (docs/development.md, 'Both editions')" >&2
	fi
	if ((EUID == 0)); then
		$(DOCKER_TESTBED) status 2>/dev/null || stop_docker=1
		settings=$$($(DOCKER_TESTBED) start)
		eval "$$settings"
		export DOCKER DOCKER_HOST DOCKER_CONFIG
	fi
	$(VENV_PY) -m pytest --numprocesses=$(TEST_WORKERS) --dist=loadscope $(PYTEST_ARGS)

# The local TimescaleDB's settings go to .tsdb.env too (git-ignored), which ingest.py reads
# when neither the environment nor a .env sets them: after `make run` or `make db-start`,
# `.venv/bin/python ingestion/ingest.py status` from here reaches that database.
LOCAL_DB_FILE := .tsdb.env
define start_local_db
settings=$$($(TSDB) start)
printf '# Written by make (scripts/timescaledb.sh start): the local database.\n%s\n' "$$settings" >$(LOCAL_DB_FILE)
eval "$$settings"
endef

db-start:
	@$(start_local_db)
	cat $(LOCAL_DB_FILE)

db-stop:
	$(TSDB) stop

# ruff over the tree, and mypy over the package (pyproject.toml); CI runs this before the tests.
lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy

run: venv
	@$(start_local_db)
	export DB_HOST DB_PORT DB_NAME DB_USER
	$(VENV_PY) ingestion/ingest.py

# Throughput and memory (bench/run.py) on the local TimescaleDB, started and stopped as for
# `make test`; the benchmark makes and drops its own databases there. Takes ~3 minutes, and
# as much again on the community edition when its source is there (bench/results-community.json).
# Parameters, e.g. make bench BENCH_ARGS='--participants 10 --days 1 --json /tmp/bench.json'
BENCH_ARGS ?=

# A canned recipe of both benchmarks: the local TimescaleDB, started unless it runs already
# (then stop_apache=1, for the recipe's trap), its settings exported.
define start_bench_db
$(TSDB) status >/dev/null 2>&1 || stop_apache=1
settings=$$($(TSDB) start)
eval "$$settings"
export DB_HOST DB_PORT DB_USER
endef

.PHONY: bench bench-scale

bench: venv
	@stop_apache=0 stop_community=0
	trap '((!stop_apache)) || $(TSDB) stop; ((!stop_community)) || $(COMMUNITY) stop' EXIT
	$(start_bench_db)
	$(VENV_PY) bench/run.py $(BENCH_ARGS)
	if $(COMMUNITY) available 2>/dev/null; then
		$(COMMUNITY) status >/dev/null 2>&1 || stop_community=1
		settings=$$($(COMMUNITY) start)
		eval "$$settings"
		$(VENV_PY) bench/run.py --json bench/results-community.json $(BENCH_ARGS)
	fi

# Workers at scale (bench/scale.py): Google participants against the fake with latency at
# WORKERS=1, 8, 32, synthetic WORKERS=1 vs 2, memory at WORKERS=8; a projection to 1,000 and
# 10,000, beside 20 participants at 1 Hz measured at WORKERS=8. Takes ~15 minutes, on the
# Apache edition only. e.g.
# make bench-scale BENCH_ARGS='--participants 50'
bench-scale: venv
	@stop_apache=0
	trap '((!stop_apache)) || $(TSDB) stop' EXIT
	$(start_bench_db)
	$(VENV_PY) bench/scale.py $(BENCH_ARGS)
