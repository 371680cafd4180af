"""Distributed mode: a real Celery worker (solo pool) on the real Redis broker and MariaDB."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stockade.adapters.sql import migrate
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER
from stockade.domain.model import WebhookOutcome
from stockade.entrypoints.bootstrap import Services
from tests.integration.distributed_helpers import (  # noqa: F401 - broker_url is a fixture
    DEAD_REDIS_URL,
    broker_url,
    celery_worker,
    count_events,
    flushdb,
    forget_shared_worker_tasks,
    open_services,
    order_status,
    outbox_rows,
    process_order_rows,
    queue_length,
    settings_for,
    wait_for,
)

#: Short, so a message left uncompleted is due for the relay again after about a second.
OUTBOX_RETRY = 1


@pytest.fixture
def database(mysql_url: str) -> str:
    migrate(mysql_url)
    return mysql_url


@pytest.fixture
def services(database: str, broker_url: str) -> Iterator[Services]:
    """The API side: publishes to the real broker, runs no task itself."""
    with open_services(database, broker_url=broker_url, outbox_retry_seconds=OUTBOX_RETRY) as services:
        yield services


@pytest.fixture
def worker(database: str, broker_url: str):
    with celery_worker(settings_for(database, broker_url=broker_url, outbox_retry_seconds=OUTBOX_RETRY)) as app:
        yield app


def assert_processed_once(services: Services, order_id: int) -> None:
    engine = services.engine
    wait_for(lambda: order_status(engine, order_id) == "processed", f"order #{order_id} processed")
    wait_for(
        lambda: all(r.completed_at is not None for r in process_order_rows(engine, order_id)),
        f"process_order outbox rows of order #{order_id} completed",
    )
    assert count_events(engine, "order_processed", order_id) == 1
    rows = process_order_rows(engine, order_id)
    assert len(rows) == 1, rows


def test_a_purchase_is_processed_by_the_celery_worker(services, worker):
    """The worker, not the API process, moves a purchased order to processed, once."""
    product = services.shop.create_product("Widget", "10.00", 5)

    view = services.shop.purchase(product.id, 2)

    assert view.order.status.value == "created"
    assert_processed_once(services, view.order.id)
    assert services.shop.get_product(product.id).stock == 3
    assert services.shop.check().ok


def test_a_deferred_webhook_is_applied_by_the_worker_once_its_order_exists(services, worker):
    """A success for an order not yet created is kept, then applied by the worker: paid, then processed."""
    shop, engine = services.shop, services.engine
    product = shop.create_product("Gadget", "7.50", 10)
    target = (shop.purchase(product.id, 1).order.id) + 2  # an id the next orders will reach

    result = shop.payment("pay-deferred-1", target, "success")
    assert result.outcome is WebhookOutcome.DEFERRED
    assert order_status(engine, target) is None

    order_id = 0
    while order_id < target:
        order_id = shop.order_from_hold(shop.hold(product.id, 1).id).order.id
    assert order_id == target

    wait_for(lambda: order_status(engine, target) == "processed", f"order #{target} paid then processed")
    assert count_events(engine, "order_paid", target) == 1
    assert count_events(engine, "order_processed", target) == 1
    wait_for(
        lambda: all(r.completed_at is not None for r in outbox_rows(engine, APPLY_DEFERRED_PAYMENTS, target)),
        "apply_deferred_payments outbox row completed",
    )
    # The other order made from a hold got no payment and stays pending.
    assert order_status(engine, target - 1) == "pending"
    assert shop.check().ok


def test_a_purchase_while_the_broker_is_down_is_processed_once_the_relay_reaches_a_worker(
    database, broker_url, services, worker
):
    """Broker down: the purchase still succeeds; the outbox relay later delivers it to a worker."""
    with open_services(database, broker_url=DEAD_REDIS_URL, outbox_retry_seconds=OUTBOX_RETRY) as down:
        product = down.shop.create_product("Gizmo", "3.00", 4)
        view = down.shop.purchase(product.id, 1)
        order_id = view.order.id
        assert view.order.status.value == "created"
        rows = process_order_rows(down.engine, order_id)
        assert len(rows) == 1 and rows[0].completed_at is None
        assert order_status(down.engine, order_id) == "created"

    # The relay of a process that reaches the broker sends it once its retry time has come.
    wait_for(lambda: services.shop.relay_outbox() > 0, "the relay republishing the message")
    assert_processed_once(services, order_id)


def test_a_broker_that_lost_its_messages_is_refilled_from_the_database(broker_url, services, database):
    """FLUSHDB on the broker before any worker ran: the relay republishes and the order is processed."""
    engine = services.engine
    product = services.shop.create_product("Doohickey", "1.25", 3)
    order_id = services.shop.purchase(product.id, 1).order.id
    wait_for(lambda: queue_length(broker_url) > 0, "the task message reaching the broker")

    flushdb(broker_url)
    assert queue_length(broker_url) == 0

    with celery_worker(settings_for(database, broker_url=broker_url, outbox_retry_seconds=OUTBOX_RETRY)):
        assert order_status(engine, order_id) == "created"
        wait_for(lambda: services.shop.relay_outbox() > 0, "the relay republishing the lost message")
        assert_processed_once(services, order_id)


def test_each_worker_app_runs_its_own_tasks_and_settings(database, broker_url, services, tmp_path):
    """create_worker_app(settings) runs its tasks on `settings`, even when another worker app came first."""
    from stockade.entrypoints import worker as worker_module

    other_db = f"sqlite:///{tmp_path / 'other.db'}"
    migrate(other_db)
    forget_shared_worker_tasks()
    worker_module._services = None
    try:
        first = worker_module.create_worker_app(settings_for(other_db, broker_url=broker_url))
        first.tasks[PROCESS_ORDER].apply(kwargs={"order_id": 1})  # runs in this process, on the first settings

        second = worker_module.create_worker_app(settings_for(database, broker_url=broker_url))
        product = services.shop.create_product("Thing", "2.00", 2)
        order_id = services.shop.purchase(product.id, 1).order.id
        second.tasks[PROCESS_ORDER].apply(kwargs={"order_id": order_id})

        assert order_status(services.engine, order_id) == "processed"
    finally:
        if worker_module._services is not None:
            worker_module._services.close()
            worker_module._services = None
        forget_shared_worker_tasks()
