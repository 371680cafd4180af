# Stockade: developer and CI entry points.
#   make run        seed the sample product and serve the API (embedded SQLite default)
#   make test       unit + integration tests (real MySQL-compatible server and Redis)
#   make test-unit  unit tests only, no servers needed
#   make lint       ruff and mypy
#   make lock       regenerate the lock files in requirements/ from pyproject.toml
#   make help       list every target
#
# Installs come from the lock files only (exact versions, with hashes): requirements/serve.txt
# for `make run`, requirements/test.txt (serving + test + lint tools) for the test and lint
# targets, requirements/bench.txt for `make bench`.

SHELL := /bin/bash
.DEFAULT_GOAL := help

VENV        := .venv
VENV_PY     := $(VENV)/bin/python
SERVE_LOCK  := requirements/serve.txt
TEST_LOCK   := requirements/test.txt
BENCH_LOCK  := requirements/bench.txt
SERVE_STAMP := $(VENV)/.installed-serve
STAMP       := $(VENV)/.installed-test
BENCH_STAMP := $(VENV)/.installed-bench
#: the uv that `make lock` installs into $(VENV) to resolve the lock files
UV_VERSION  := 0.13.9
LOCK_ARGS   ?=
PYTEST_ARGS ?=
BENCH_ARGS  ?=
HOST        ?= 127.0.0.1
PORT        ?= 8000

# Prefer python3.11; fall back to python3 only when it is at least 3.11 (pyproject requires it).
PYTHON ?= $(shell command -v python3.11 2>/dev/null || \
            { python3 -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && command -v python3; })

.PHONY: help venv install run test test-unit test-integration lint format-check lock run-distributed bench clean

help:
	@echo "Stockade targets:"
	@echo "  make venv             create $(VENV) and install the package with the test and lint tools"
	@echo "  make run              seed, then serve the API on http://$(HOST):$(PORT) (SQLite, no env needed)"
	@echo "  make test             ensure MySQL/Redis answer, then run tests/unit and tests/integration"
	@echo "  make test-unit        unit tests only (no servers)"
	@echo "  make lint             ruff check and mypy (make format-check: ruff format --check)"
	@echo "  make lock             regenerate requirements/*.txt from pyproject.toml (LOCK_ARGS=--upgrade for newest)"
	@echo "  make run-distributed  MySQL + Redis + Celery deployment (scripts/run-distributed.sh)"
	@echo "  make bench            benchmarks/bench.py: Stockade vs baselines under wrk, MariaDB+Redis and SQLite,"
	@echo "                        a flash sale, PASS/MISS per target, plot in benchmarks/results.png (~7 min);"
	@echo "                        then benchmarks/drain.py: 1000 orders drained by a real worker and embedded (~2 min)"
	@echo "  make clean            remove $(VENV), caches, *.db files and benchmarks/results.png"
	@echo "Pass extra pytest options with PYTEST_ARGS='-k webhook -x'; bench options with BENCH_ARGS=--quick."

venv install: $(STAMP)

$(VENV_PY):
	@if [ -z "$(PYTHON)" ]; then \
	    echo "ERROR: need python3.11 (or python3 >= 3.11) on PATH to create $(VENV)" >&2; exit 1; \
	fi
	@echo "==> creating $(VENV) with $(PYTHON) ($$($(PYTHON) --version 2>&1))"
	"$(PYTHON)" -m venv "$(VENV)"

# install_locked LOCK: exactly the locked versions (hashes checked), then this package itself
# without dependencies, so nothing outside the lock gets in. Re-run only when the lock or
# pyproject.toml is newer than the stamp, so repeat runs are instant.
define install_locked
	@echo "==> pip install -r $(1) (exact versions from the lock file)"
	@$(VENV_PY) -m pip install --progress-bar on --require-hashes -r $(1)
	@echo "==> pip install --no-deps -e . (the stockade package, editable)"
	@$(VENV_PY) -m pip install --quiet --no-deps -e .
	@touch "$@"
	@echo "==> $(VENV) ready ($(1))"
endef

$(SERVE_STAMP): $(SERVE_LOCK) pyproject.toml | $(VENV_PY)
	$(call install_locked,$(SERVE_LOCK))

$(STAMP): $(TEST_LOCK) pyproject.toml | $(VENV_PY)
	$(call install_locked,$(TEST_LOCK))

run: $(SERVE_STAMP)
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

run-distributed: $(SERVE_STAMP)
	@echo "==> scripts/run-distributed.sh"
	exec bash scripts/run-distributed.sh

# The bench lock: the test install plus matplotlib.
$(BENCH_STAMP): $(BENCH_LOCK) pyproject.toml | $(VENV_PY)
	$(call install_locked,$(BENCH_LOCK))

# Needs wrk, a MySQL-compatible server and Redis (see benchmarks/bench.py --help and drain.py --help).
bench: $(BENCH_STAMP)
	@echo "==> benchmarks/bench.py $(BENCH_ARGS)"
	$(VENV_PY) benchmarks/bench.py $(BENCH_ARGS)
	@echo "==> benchmarks/drain.py"
	$(VENV_PY) benchmarks/drain.py

lint: $(STAMP)
	@echo "==> ruff check"
	$(VENV)/bin/ruff check .
	@echo "==> mypy (configured in pyproject.toml)"
	$(VENV)/bin/mypy

format-check: $(STAMP)
	$(VENV)/bin/ruff format --check .

# One command regenerates every lock file after a dependency changes in pyproject.toml; pins
# that still fit are kept (LOCK_ARGS=--upgrade takes the newest that fit). Universal: the same
# files serve Linux, macOS and the Docker image.
lock: | $(VENV_PY)
	@$(VENV_PY) -m pip install --quiet "uv==$(UV_VERSION)"
	@mkdir -p requirements
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_ARGS) --universal --python-version 3.11 --generate-hashes \
	    --quiet -o $(SERVE_LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_ARGS) --universal --python-version 3.11 --generate-hashes \
	    --quiet --extra test --extra lint -o $(TEST_LOCK)
	$(VENV)/bin/uv pip compile pyproject.toml $(LOCK_ARGS) --universal --python-version 3.11 --generate-hashes \
	    --quiet --extra test --extra lint --extra bench -o $(BENCH_LOCK)
	@echo "==> requirements/*.txt regenerated; commit them with pyproject.toml"

clean:
	@echo "==> removing $(VENV), caches, build output and *.db files (with their -versions and -writers files)"
	rm -rf "$(VENV)" .pytest_cache .hypothesis .mypy_cache .ruff_cache build dist .prometheus-multiproc
	rm -f benchmarks/results.png
	find . -path ./.git -prune -o -name '__pycache__' -type d -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -name '*.egg-info' -type d -prune -exec rm -rf {} +
	find . -path ./.git -prune -o -type f \( -name '*.db' -o -name '*.db-shm' -o -name '*.db-wal' -o -name '*.db-versions' -o -name '*.db-writers' \) -exec rm -f {} +
