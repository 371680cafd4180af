"""The public HTTP API contract (tests/api_contract.py) on a real MySQL-compatible server."""

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


@pytest.fixture
def api(mysql_url):
    clock = FixedClock()
    with build_services(settings_for(mysql_url), clock=clock, migrate_schema=True) as services:
        yield make_api(services, clock)
