"""Orders from holds, order reads, and the process_order background step."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import attrs
import pytest

from stockade.application.facade import Shop
from stockade.application.services import PROCESS_ORDER
from stockade.domain.errors import HoldAlreadyUsed, HoldExpired, HoldNotFound, HoldReleased, OrderNotFound
from stockade.domain.model import HoldStatus, OrderStatus


def test_order_from_hold_is_pending_with_payment_due_and_keeps_units_reserved(shop, store, clock, phone):
    hold = shop.hold(phone.id, 3)
    order = shop.order_from_hold(hold.id).order
    assert store.order(order.id) == order
    assert (order.status, order.hold_id, order.quantity) == (OrderStatus.PENDING, hold.id, 3)
    assert order.payment_due_at == clock.now() + timedelta(seconds=900)
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (10, 3)
    assert (store.hold(hold.id).status, store.hold(hold.id).order_id) == (HoldStatus.USED, order.id)
    assert store.events("order_created")[0].data["order_id"] == order.id


def test_order_total_is_price_times_quantity(shop):
    product = shop.create_product("Pen", "0.335", 10)
    order = shop.order_from_hold(shop.hold(product.id, 3).id).order
    assert order.total_price == Decimal("1.02")


def test_expired_hold_cannot_become_an_order_even_before_the_sweep(shop, store, clock, phone):
    hold = shop.hold(phone.id, 3)
    clock.advance(120)
    with pytest.raises(HoldExpired):
        shop.order_from_hold(hold.id)
    assert store.tables.orders == {}


def test_used_hold_cannot_become_a_second_order(shop, store, phone):
    hold = shop.hold(phone.id, 3)
    shop.order_from_hold(hold.id)
    with pytest.raises(HoldAlreadyUsed):
        shop.order_from_hold(hold.id)
    assert len(store.tables.orders) == 1
    assert store.product(phone.id).reserved == 3


def test_released_hold_cannot_become_an_order(shop, store, phone):
    hold = shop.hold(phone.id, 3)
    shop.release_hold(hold.id)
    with pytest.raises(HoldReleased):
        shop.order_from_hold(hold.id)
    assert store.tables.orders == {}


def test_swept_hold_cannot_become_an_order(shop, clock, phone):
    hold = shop.hold(phone.id, 3)
    clock.advance(121)
    shop.sweep()
    with pytest.raises(HoldExpired):
        shop.order_from_hold(hold.id)


def test_order_from_unknown_hold_is_not_found(shop):
    with pytest.raises(HoldNotFound):
        shop.order_from_hold(5)


def test_order_read_shows_the_order_with_its_product(shop, phone):
    order = shop.purchase(phone.id, 2).order
    view = shop.get_order(order.id)
    assert view.order == order and view.product.stock == 8


def test_unknown_order_is_not_found(shop):
    with pytest.raises(OrderNotFound):
        shop.get_order(3)


def test_processing_a_created_order_marks_it_processed_once(shop, store, phone):
    order = shop.purchase(phone.id, 1).order
    result = shop.process_order(order.id)
    assert result.processed and result.status is OrderStatus.PROCESSED
    assert store.order(order.id).status is OrderStatus.PROCESSED
    assert [e.data for e in store.events("order_processed")] == [{"order_id": order.id}]


def test_processing_an_order_twice_has_one_effect(shop, store, phone):
    order = shop.purchase(phone.id, 1).order
    shop.process_order(order.id)
    second = shop.process_order(order.id)
    assert not second.processed and second.status is OrderStatus.PROCESSED
    assert len(store.events("order_processed")) == 1


def test_processing_logs_order_processed_at_warning(shop, phone, caplog):
    order = shop.purchase(phone.id, 1).order
    shop.process_order(order.id)
    assert any(r.levelname == "WARNING" and r.getMessage() == f"Order #{order.id} Processed." for r in caplog.records)


def test_processing_a_pending_order_does_nothing(shop, store, phone):
    order = shop.order_from_hold(shop.hold(phone.id, 1).id).order
    assert not shop.process_order(order.id).processed
    assert store.order(order.id).status is OrderStatus.PENDING


def test_processing_a_missing_order_ends_without_error_and_completes_its_message(shop, store, phone):
    shop.purchase(phone.id, 1)
    [row] = store.messages(PROCESS_ORDER)
    result = shop.process_order(999, row.message.id)
    assert (result.processed, result.status) == (False, None)
    assert store.messages(PROCESS_ORDER)[0].completed_at is not None


def test_processing_completes_its_outbox_message(shop, store, publisher, phone):
    shop.purchase(phone.id, 1)
    [message] = publisher.tasks(PROCESS_ORDER)
    shop.process_order(message.payload["order_id"], message.id)
    assert store.messages(PROCESS_ORDER)[0].completed_at is not None


def test_two_workers_processing_one_order_at_once_record_one_effect(shop, store, phone):
    order = shop.purchase(phone.id, 1).order
    # The first worker's processing pause is where a second worker runs the same task.
    racing = Shop(attrs.evolve(shop.deps, sleep=lambda seconds: shop.process_order(order.id)))
    assert not racing.process_order(order.id).processed
    assert store.order(order.id).status is OrderStatus.PROCESSED
    assert len(store.events("order_processed")) == 1
