"""Sweeps from several processes at once: every expired hold is released exactly once."""

from __future__ import annotations

import re
import subprocess
import threading
from datetime import datetime, timedelta, timezone

import attrs
import pytest

from stockade.adapters.clock import FixedClock
from stockade.adapters.sql import migrate
from stockade.application.facade import Shop
from tests.integration.distributed_helpers import (
    DEADLINE_SECONDS,
    REPO_ROOT,
    STOCKADE_BIN,
    count_events,
    open_services,
    scalar,
    stockade_env,
)

HOLDS = 200


@pytest.fixture
def database(mysql_url: str) -> str:
    migrate(mysql_url)
    return mysql_url


def place_expired_holds(url: str, count: int) -> int:
    """A product with `count` one-unit holds that expired an hour ago (by the real clock); its id."""
    past = FixedClock(datetime.now(timezone.utc) - timedelta(hours=1))
    with open_services(url, clock=past, hold_ttl_seconds=60) as services:
        product = services.shop.create_product("Flash", "9.99", count)
        for _ in range(count):
            services.shop.hold(product.id, 1)
        assert services.shop.get_product(product.id).reserved == count
    return product.id


def small_batches(shop: Shop, batch: int) -> Shop:
    """The same shop sweeping `batch` rows at a time, so two sweeps interleave over many batches."""
    deps = shop.deps
    return Shop(attrs.evolve(deps, policy=attrs.evolve(deps.policy, sweep_batch=batch)))


def assert_all_released_once(url: str, product_id: int) -> None:
    with open_services(url) as services:
        engine = services.engine
        assert count_events(engine, "hold_released") == HOLDS
        assert scalar(engine, "SELECT COUNT(*) FROM holds WHERE status = 'active'") == 0
        assert scalar(engine, "SELECT reserved FROM products WHERE id = :id", id=product_id) == 0
        assert scalar(engine, "SELECT stock FROM products WHERE id = :id", id=product_id) == HOLDS
        batch_total = scalar(engine, "SELECT COUNT(*) FROM event_log WHERE event = 'holds_batch_released'")
        assert batch_total >= 1
        assert services.shop.check().ok


def test_two_services_sweeping_at_once_release_each_expired_hold_once(database):
    """Two Services instances (two 'processes') sweep together: 200 releases, reserved back to 0."""
    product_id = place_expired_holds(database, HOLDS)
    with open_services(database) as one, open_services(database) as two:
        shops = [small_batches(one.shop, 7), small_batches(two.shop, 7)]
        barrier = threading.Barrier(len(shops))
        results: list[tuple[int, int] | BaseException] = [None, None]  # type: ignore[list-item]

        def sweep(i: int) -> None:
            try:
                barrier.wait(DEADLINE_SECONDS)
                results[i] = shops[i].release_expired()
            except BaseException as exc:  # noqa: BLE001 - judged below
                results[i] = exc

        threads = [threading.Thread(target=sweep, args=(i,), daemon=True) for i in range(len(shops))]
        for t in threads:
            t.start()
        for t in threads:
            t.join(DEADLINE_SECONDS * 2)
        assert not any(t.is_alive() for t in threads), "a sweep hung"

    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    assert sum(holds for holds, _orders in results) == HOLDS  # type: ignore[misc]
    assert_all_released_once(database, product_id)


def test_two_release_expired_commands_at_once_release_each_expired_hold_once(database):
    """`stockade holds release-expired` twice in parallel: between them, each hold released once."""
    product_id = place_expired_holds(database, HOLDS)
    env = stockade_env(STOCKADE_DATABASE_URL=database)
    procs = [
        subprocess.Popen(
            [STOCKADE_BIN, "holds", "release-expired"],
            env=env,
            cwd=REPO_ROOT,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            start_new_session=True,
        )
        for _ in range(2)
    ]
    outputs = []
    try:
        for proc in procs:
            out, _ = proc.communicate(timeout=DEADLINE_SECONDS * 2)
            outputs.append(out)
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.wait()
    assert [p.returncode for p in procs] == [0, 0], outputs

    released = []
    for out in outputs:
        found = re.search(r"released (\d+) expired hold", out)
        assert found, out
        released.append(int(found.group(1)))
    assert sum(released) == HOLDS, outputs
    assert_all_released_once(database, product_id)
