"""The embedded SQLite adapter's hot path: a sold-out rejection never queues behind writers, and
writers that queue commit together."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from stockade.application.commands import OrderView
from stockade.domain.errors import OutOfStock
from stockade.entrypoints.bootstrap import build_services
from stockade.entrypoints.settings import Settings


@pytest.fixture
def sqlite_services(tmp_path):
    services = build_services(Settings(database_url=f"sqlite:///{tmp_path}/hot.db"), migrate_schema=True)
    services.publisher.close()  # type: ignore[attr-defined]  # no background work competing
    yield services, tmp_path / "hot.db"
    services.close()


def test_a_sold_out_rejection_answers_while_another_writer_holds_the_write_lock(sqlite_services):
    services, path = sqlite_services
    shop = services.shop
    sold_out = shop.create_product("Gone", "5.00", 0)
    outcome: list[BaseException | None] = []

    def attempt() -> None:
        try:
            shop.purchase(sold_out.id, 1)
            outcome.append(None)
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcome.append(exc)

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # a long write transaction (a slow purchase, a sweep)
    try:
        thread = threading.Thread(target=attempt)
        thread.start()
        thread.join(10)  # a request that queued for the lock would wait busy_timeout (30 s)
        answered = not thread.is_alive()
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    thread.join(60)
    assert answered, "the sold-out request waited for the write lock"
    assert len(outcome) == 1 and isinstance(outcome[0], OutOfStock)


def test_a_purchase_still_queues_for_the_write_lock_and_then_succeeds(sqlite_services):
    services, path = sqlite_services
    shop = services.shop
    product = shop.create_product("Plenty", "5.00", 3)
    sold: list[object] = []

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    thread = threading.Thread(target=lambda: sold.append(shop.purchase(product.id, 1)))
    try:
        thread.start()
        thread.join(0.5)
        assert thread.is_alive() and not sold  # writers are serialized: it waits its turn
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    thread.join(60)
    assert len(sold) == 1 and shop.get_product(product.id).stock == 2


def _racing(count: int, buy) -> tuple[list[threading.Thread], list[object]]:
    outcomes: list[object] = []

    def attempt() -> None:
        try:
            outcomes.append(buy())
        except BaseException as exc:  # noqa: BLE001 - the test inspects it
            outcomes.append(exc)

    threads = [threading.Thread(target=attempt) for _ in range(count)]
    for thread in threads:
        thread.start()
    return threads, outcomes


def test_purchases_that_queue_for_the_write_lock_commit_together_with_one_fsync(sqlite_services):
    """Writers queued behind a writer commit as a group: one COMMIT for all of them, not one each."""
    services, path = sqlite_services
    shop = services.shop
    product = shop.create_product("Plenty", "5.00", 100)
    commits: list[int] = []
    sa.event.listen(services.engine, "commit", lambda conn: commits.append(1))

    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")  # the writer they all queue behind
    try:
        threads, outcomes = _racing(12, lambda: shop.purchase(product.id, 1))
        time.sleep(1)  # every purchase reaches its commit and queues
        assert outcomes == [], "no purchase commits while another writer holds the lock"
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    for thread in threads:
        thread.join(60)
    assert len(outcomes) == 12 and all(isinstance(o, OrderView) for o in outcomes), outcomes
    # The first queued alone leads and waits for SQLite's lock; everyone after it goes in one group.
    assert len(commits) <= 2
    assert len({o.order.id for o in outcomes}) == 12  # type: ignore[attr-defined]
    assert shop.get_product(product.id).stock == 88
    assert shop.check().ok


def test_a_writer_that_loses_its_condition_in_a_group_is_rolled_back_alone(sqlite_services):
    """Stock 5, 9 purchases in one group: 5 orders with their events and outbox messages, 4 refusals
    that leave nothing behind."""
    services, path = sqlite_services
    shop = services.shop
    product = shop.create_product("Scarce", "5.00", 5)
    writer = sqlite3.connect(path, isolation_level=None)
    writer.execute("BEGIN IMMEDIATE")
    try:
        threads, outcomes = _racing(9, lambda: shop.purchase(product.id, 1))
        time.sleep(1)
    finally:
        writer.execute("ROLLBACK")
        writer.close()
    for thread in threads:
        thread.join(60)
    sold = [o for o in outcomes if isinstance(o, OrderView)]
    assert len(sold) == 5 and sum(isinstance(o, OutOfStock) for o in outcomes) == 4, outcomes
    with sa.create_engine(f"sqlite:///{path}").connect() as conn:
        counts = [
            conn.exec_driver_sql(sql).scalar()
            for sql in (
                "SELECT COUNT(*) FROM orders",
                "SELECT COUNT(*) FROM outbox",
                "SELECT COUNT(*) FROM event_log WHERE event = 'purchase_created'",
            )
        ]
    assert counts == [5, 5, 5]
    assert shop.get_product(product.id).stock == 0
    assert shop.check().ok
