# Stockade: developer and CI entry points.
#   make run        seed the sample product and serve the API (embedded SQLite default)
#   make test       unit + integration tests (real MySQL-compatible server and Redis)
#   make test-unit  unit tests only, no servers needed
#   make help       list every target

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
VENV_PY     := $(VENV)/bin/python
STAMP       := $(VENV)/.installed
BENCH_STAMP := $(VENV)/.installed-bench
PYTEST_ARGS ?=
BENCH_ARGS  ?=
HOST        ?= 127.0.0.1
PORT        ?= 8000

# Prefer python3.11; fall back to python3 only when it is at least 3.11 (pyproject requires it).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || \
            { python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && command -v python3; })

.PHONY: help venv install run test test-unit test-integration run-distributed bench clean

help:
	@echo "Stockade targets:"
	@echo "  make venv             create $(VENV) and install the package with test extras"
	@echo "  make run              seed, then serve the API on http://$(HOST):$(PORT) (SQLite, no env needed)"
	@echo "  make test             ensure MySQL/Redis answer, then run tests/unit and tests/integration"
	@echo "  make test-unit        unit tests only (no servers)"
	@echo "  make run-distributed  MySQL + Redis + Celery deployment (scripts/run-distributed.sh)"
	@echo "  make bench            benchmarks/bench.py: Stockade vs baselines under wrk, MariaDB+Redis and SQLite,"
	@echo "                        a flash sale, PASS/MISS per target, plot in benchmarks/results.png (~7 min);"
	@echo "                        then benchmarks/drain.py: 1000 orders drained by a real worker and embedded (~2 min)"
	@echo "  make clean            remove $(VENV), caches, *.db files and benchmarks/results.png"
	@echo "Pass extra pytest options with PYTEST_ARGS='-k webhook -x'; bench options with BENCH_ARGS=--quick."

venv install: $(STAMP)

# Re-install only when pyproject.toml is newer than the stamp, so repeat runs are instant.
$(STAMP): pyproject.toml
	@if [ -z "$(PYTHON)" ]; then \
	    echo "ERROR: need python3.11 (or python3 >= 3.11) on PATH to create $(VENV)" >&2; exit 1; \
	fi
	@if [ ! -x "$(VENV_PY)" ]; then \
	    echo "==> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"; \
	    "$(PYTHON)" -m venv "$(VENV)"; \
	fi
	@echo "==> upgrading pip"
	@$(VENV_PY) -m pip install --quiet --upgrade pip
	@echo "==> pip install -e '.[test]' (pyproject.toml changed or first install)"
	@$(VENV_PY) -m pip install --quiet -e '.[test]'
	@touch "$@"
	@echo "==> $(VENV) ready"

run: $(STAMP)
	@echo "==> stockade seed"
	$(VENV)/bin/stockade seed
	@echo "==> stockade serve on http://$(HOST):$(PORT)  (Ctrl-C to stop)"
	exec $(VENV)/bin/stockade serve --host $(HOST) --port $(PORT)

# ensure_services.py finds or starts the servers (or defers to Docker); the fixtures
# in tests/integration/conftest.py then locate the same servers on their own.
# Under CI=true a missing server fails here and in the fixtures, never a silent skip.
test: $(STAMP)
	@echo "==> checking test services (MySQL-compatible server, Redis)"
	$(VENV_PY) scripts/ensure_services.py
	@echo "==> pytest tests/unit tests/integration $(PYTEST_ARGS)"
	$(VENV_PY) -m pytest tests/unit tests/integration $(PYTEST_ARGS)

test-unit: $(STAMP)
	@echo "==> pytest tests/unit $(PYTEST_ARGS)"
	$(VENV_PY) -m pytest tests/unit $(PYTEST_ARGS)

test-integration: $(STAMP)
	$(VENV_PY) scripts/ensure_services.py
	$(VENV_PY) -m pytest tests/integration $(PYTEST_ARGS)

run-distributed: $(STAMP)
	@echo "==> scripts/run-distributed.sh"
	exec bash scripts/run-distributed.sh

# The bench extra (matplotlib) on top of the test install; its own stamp, redone after $(STAMP).
$(BENCH_STAMP): $(STAMP)
	@echo "==> pip install -e '.[test,bench]'"
	@$(VENV_PY) -m pip install --quiet -e '.[test,bench]'
	@touch "$@"

# Needs wrk, a MySQL-compatible server and Redis (see benchmarks/bench.py --help and drain.py --help).
bench: $(BENCH_STAMP)
	@echo "==> benchmarks/bench.py $(BENCH_ARGS)"
	$(VENV_PY) benchmarks/bench.py $(BENCH_ARGS)
	@echo "==> benchmarks/drain.py"
	$(VENV_PY) benchmarks/drain.py

clean:
	@echo "==> removing $(VENV), caches, build output and *.db files (with their -versions and -writers files)"
	rm -rf "$(VENV)" .pytest_cache .hypothesis build dist .prometheus-multiproc
	rm -f benchmarks/results.png
	find . -path ./.git -prune -o -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type f \( -name '*.db' -o -name '*.db-shm' -o -name '*.db-wal' -o -name '*.db-versions' -o -name '*.db-writers' \) -exec rm -f {} +
