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
	@echo "  make bench            benchmarks/run_all.py, then benchmarks/http_bench.py"
	@echo "  make clean            remove $(VENV), caches and *.db files"
	@echo "Pass extra pytest options with PYTEST_ARGS='-k webhook -x'."

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

bench: $(STAMP)
	@echo "==> benchmarks/run_all.py $(BENCH_ARGS) (in-process server-side cost)"
	$(VENV_PY) benchmarks/run_all.py $(BENCH_ARGS)
	@echo "==> benchmarks/http_bench.py (over sockets, then a flash sale)"
	$(VENV_PY) benchmarks/http_bench.py

clean:
	@echo "==> removing $(VENV), caches, build output and *.db files"
	rm -rf "$(VENV)" .pytest_cache .hypothesis build dist .prometheus-multiproc
	find . -path ./.git -prune -o -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type f \( -name '*.db' -o -name '*.db-shm' -o -name '*.db-wal' \) -exec rm -f {} +
