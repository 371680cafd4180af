"""The embedded adapters: the in-process product cache and the in-process task runner."""

from __future__ import annotations

import threading
from datetime import datetime, timezone
from decimal import Decimal

import attrs
import pytest

from stockade.adapters.inprocess_tasks import InProcessTaskRunner
from stockade.adapters.memory_cache import InProcessProductCache
from stockade.application.ports import TaskMessage
from stockade.domain.model import Product

AT = datetime(2026, 1, 7, 8, 0, tzinfo=timezone.utc)
PHONE = Product(1, "Phone", Decimal("100.00"), 10, 0, 1, AT, AT)


def test_cache_serves_a_filled_product_until_it_is_invalidated():
    cache = InProcessProductCache()
    _, ticket = cache.get(1)
    cache.fill(PHONE, ticket)
    assert cache.get(1)[0] == PHONE
    cache.invalidate([1])
    assert cache.get(1)[0] is None


def test_cache_refuses_a_fill_with_a_ticket_taken_before_an_invalidation():
    cache = InProcessProductCache()
    _, ticket = cache.get(1)  # a slow reader misses and goes to the database...
    cache.invalidate([1])  # ...while a write commits...
    cache.fill(PHONE, ticket)  # ...then it tries to cache the row it read before the write
    assert cache.get(1)[0] is None
    _, fresh = cache.get(1)
    cache.fill(attrs.evolve(PHONE, stock=9), fresh)
    assert cache.get(1)[0].stock == 9


def test_cache_invalidation_of_one_product_keeps_the_others():
    cache = InProcessProductCache()
    other = attrs.evolve(PHONE, id=2)
    for product in (PHONE, other):
        cache.fill(product, cache.get(product.id)[1])
    cache.invalidate([1])
    assert cache.get(2)[0] == other


def test_cache_entry_past_its_ttl_is_a_miss():
    cache = InProcessProductCache(ttl_seconds=0)
    cache.fill(PHONE, cache.get(1)[1])
    assert cache.get(1)[0] is None


def test_cache_stays_bounded():
    cache = InProcessProductCache(max_entries=2)
    for pid in (1, 2, 3):
        cache.fill(attrs.evolve(PHONE, id=pid), cache.get(pid)[1])
    assert sum(cache.get(pid)[0] is not None for pid in (1, 2, 3)) <= 2
    assert cache.get(3)[0] is not None


@pytest.fixture
def runner():
    runner = InProcessTaskRunner(threads=1)
    yield runner
    runner.close()


def test_runner_runs_the_handler_registered_for_a_published_task(runner):
    seen, done = [], threading.Event()
    runner.register("t.ok", lambda m: (seen.append(m.payload), done.set()))
    runner.publish([TaskMessage(1, "t.ok", {"order_id": 7})])
    assert done.wait(30)  # generous: a loaded CI machine may be slow to schedule the runner thread
    assert seen == [{"order_id": 7}]


def test_runner_survives_a_failing_handler_and_an_unknown_task(runner, caplog):
    done = threading.Event()

    def explode(message):
        raise RuntimeError("boom")

    runner.register("t.fail", explode)
    runner.register("t.ok", lambda m: done.set())
    runner.publish([TaskMessage(1, "t.fail", {}), TaskMessage(2, "t.unknown", {}), TaskMessage(3, "t.ok", {})])
    assert done.wait(30)  # generous: a loaded CI machine may be slow to schedule the runner thread
    failures = [r for r in caplog.records if r.name == "stockade.tasks" and r.levelname == "ERROR"]
    assert any("t.fail" in r.getMessage() and r.exc_info for r in failures)
    assert any("t.unknown" in r.getMessage() for r in failures)


def test_publishing_to_a_closed_runner_does_not_raise():
    runner = InProcessTaskRunner(threads=1)
    runner.register("t.ok", lambda m: None)
    runner.close()
    runner.publish([TaskMessage(1, "t.ok", {})])
