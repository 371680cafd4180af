"""The public HTTP API contract (tests/api_contract.py) in distributed mode: MariaDB, Redis cache, Celery publisher.

The contract's `make_api` closes the task publisher so no task runs behind a test's back
(tests drive background work with `api.run_tasks()` on their FixedClock). So no Celery
worker runs here: it would receive nothing. The Celery path itself is covered by
test_distributed_worker.py. What this adds is every contract test through the Redis
product cache and with the broker configured (readiness probes Redis and the broker).
"""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
pytest.register_assert_rewrite("api_contract")

from api_contract import *  # noqa: E402,F403  (the contract's test functions)
from api_contract import make_api, settings_for  # noqa: E402

from stockade.adapters.clock import FixedClock  # noqa: E402
from stockade.entrypoints.bootstrap import build_services  # noqa: E402
from tests.integration.distributed_helpers import broker_url  # noqa: E402,F401 - a fixture


@pytest.fixture
def api(mysql_url, redis_url, broker_url):  # noqa: F811
    clock = FixedClock()
    settings = settings_for(mysql_url, redis_url=redis_url, broker_url=broker_url)
    with build_services(settings, clock=clock, migrate_schema=True) as services:
        yield make_api(services, clock)
