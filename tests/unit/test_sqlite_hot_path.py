"""The embedded SQLite adapter's hot path: a sold-out rejection never queues behind writers."""

from __future__ import annotations

import sqlite3
import threading

import pytest

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
