"""An admin cancels orders (their units come back) and records refunds (contract section 10)."""

from __future__ import annotations

import attrs
import pytest

from stockade.application.facade import Shop
from stockade.domain.errors import NoRefundRequired, OrderAlreadyProcessed, OrderNotFound
from stockade.domain.model import OrderStatus, RefundStatus


def levels(store, product_id: int) -> tuple[int, int]:
    product = store.product(product_id)
    return product.stock, product.reserved


def paid_order(shop: Shop, product_id: int, quantity: int) -> int:
    order_id = shop.order_from_hold(shop.hold(product_id, quantity).id).order.id
    shop.payment("pay", order_id, "success")
    return order_id


def test_cancelling_a_direct_purchase_puts_its_units_back_in_stock(shop, store, phone):
    order_id = shop.purchase(phone.id, 3).order.id

    view = shop.cancel_order(order_id)

    assert (view.order.status, view.order.refund_status) == (OrderStatus.CANCELLED, None)
    assert levels(store, phone.id) == (10, 0)
    [event] = store.events("order_cancelled")
    assert event.data == {
        "order_id": order_id,
        "product_id": phone.id,
        "quantity": 3,
        "reason": "admin",
        "previous_status": "created",
    }
    assert not store.events("payment_refund_required")
    assert shop.check().ok


def test_cancelling_a_pending_order_releases_its_reserved_units(shop, store, phone):
    order_id = shop.order_from_hold(shop.hold(phone.id, 4).id).order.id
    assert levels(store, phone.id) == (10, 4)

    view = shop.cancel_order(order_id)

    assert (view.order.status, view.order.refund_status) == (OrderStatus.CANCELLED, None)
    assert levels(store, phone.id) == (10, 0)
    assert store.events("order_cancelled")[0].data["previous_status"] == "pending"
    assert shop.check().ok


def test_cancelling_a_paid_order_restocks_it_and_requires_a_refund(shop, store, phone):
    order_id = paid_order(shop, phone.id, 2)
    assert levels(store, phone.id) == (8, 0)

    view = shop.cancel_order(order_id)

    assert (view.order.status, view.order.refund_status) == (OrderStatus.CANCELLED, RefundStatus.REQUIRED)
    assert levels(store, phone.id) == (10, 0)
    [refund] = store.events("payment_refund_required")
    assert refund.data["order_id"] == order_id
    assert shop.check().ok


def test_cancelling_a_cancelled_order_changes_nothing(shop, store, phone):
    order_id = shop.purchase(phone.id, 3).order.id
    first = shop.cancel_order(order_id)

    again = shop.cancel_order(order_id)

    assert again.order == first.order
    assert levels(store, phone.id) == (10, 0)
    assert len(store.events("order_cancelled")) == 1


def test_an_order_cancelled_by_its_payment_timeout_can_be_cancelled_again_without_effect(shop, store, clock, phone):
    order_id = shop.order_from_hold(shop.hold(phone.id, 4).id).order.id
    clock.advance(901)
    shop.sweep()

    assert shop.cancel_order(order_id).order.status is OrderStatus.CANCELLED
    assert levels(store, phone.id) == (10, 0)
    assert [e.data["reason"] for e in store.events("order_cancelled")] == ["payment_timeout"]


def test_a_processed_order_cannot_be_cancelled(shop, store, phone):
    order_id = shop.purchase(phone.id, 3).order.id
    shop.process_order(order_id)

    with pytest.raises(OrderAlreadyProcessed):
        shop.cancel_order(order_id)

    assert store.order(order_id).status is OrderStatus.PROCESSED
    assert levels(store, phone.id) == (7, 0)
    assert not store.events("order_cancelled")


def test_cancelling_an_unknown_order_is_not_found(shop):
    with pytest.raises(OrderNotFound):
        shop.cancel_order(99)


def test_a_cancelled_order_is_never_processed(shop, store, phone):
    order_id = shop.purchase(phone.id, 3).order.id
    shop.cancel_order(order_id)

    result = shop.process_order(order_id)

    assert (result.processed, result.status) == (False, OrderStatus.CANCELLED)
    assert store.order(order_id).status is OrderStatus.CANCELLED
    assert not store.events("order_processed")


@pytest.mark.parametrize("paid", [False, True], ids=["created", "paid"])
def test_an_order_cancelled_while_processing_waits_is_not_processed(world, phone, paid):
    shop, store, _, _ = world
    order_id = paid_order(shop, phone.id, 2) if paid else shop.purchase(phone.id, 2).order.id
    # The cancel lands during the processing task's simulated wait, after it read the order.
    cancelling = Shop(attrs.evolve(shop.deps, sleep=lambda seconds: shop.cancel_order(order_id)))

    result = cancelling.process_order(order_id)

    assert (result.processed, result.status) == (False, OrderStatus.CANCELLED)
    assert store.order(order_id).status is OrderStatus.CANCELLED
    assert not store.events("order_processed")
    assert levels(store, phone.id) == (10, 0)


def test_a_success_for_an_order_the_admin_cancelled_requires_a_refund(shop, store, phone):
    order_id = shop.order_from_hold(shop.hold(phone.id, 2).id).order.id
    shop.cancel_order(order_id)

    result = shop.payment("late", order_id, "success")

    assert (result.outcome.value, result.status) == ("ignored", "cancelled")
    assert store.order(order_id).refund_status is RefundStatus.REQUIRED
    assert levels(store, phone.id) == (10, 0)


def test_a_success_for_an_order_cancelled_by_its_timeout_requires_a_refund(shop, store, clock, phone):
    order_id = shop.order_from_hold(shop.hold(phone.id, 2).id).order.id
    clock.advance(901)
    shop.sweep()

    shop.payment("late", order_id, "success")

    assert store.order(order_id).refund_status is RefundStatus.REQUIRED


def test_a_failure_for_a_cancelled_order_requires_no_refund(shop, store, phone):
    order_id = shop.order_from_hold(shop.hold(phone.id, 2).id).order.id
    shop.cancel_order(order_id)

    shop.payment("late", order_id, "failure")

    assert store.order(order_id).refund_status is None


def test_a_required_refund_is_recorded_once(shop, store, phone):
    order_id = paid_order(shop, phone.id, 2)
    shop.cancel_order(order_id)

    first = shop.refund_order(order_id)
    again = shop.refund_order(order_id)

    assert first.order.refund_status is again.order.refund_status is RefundStatus.REFUNDED
    assert again.order == first.order
    [event] = store.events("order_refunded")
    assert event.data == {"order_id": order_id, "product_id": phone.id, "total_price": "200.00"}
    assert levels(store, phone.id) == (10, 0)


@pytest.mark.parametrize("status", ["created", "pending", "paid", "cancelled without payment"])
def test_an_order_that_owes_nothing_cannot_be_refunded(shop, store, phone, status):
    if status == "created":
        order_id = shop.purchase(phone.id, 1).order.id
    elif status == "paid":
        order_id = paid_order(shop, phone.id, 1)
    else:
        order_id = shop.order_from_hold(shop.hold(phone.id, 1).id).order.id
        if status != "pending":
            shop.cancel_order(order_id)
    before = store.order(order_id)

    with pytest.raises(NoRefundRequired):
        shop.refund_order(order_id)

    assert store.order(order_id) == before
    assert not store.events("order_refunded")


def test_refunding_an_unknown_order_is_not_found(shop):
    with pytest.raises(OrderNotFound):
        shop.refund_order(99)


def test_a_second_payment_after_a_refund_requires_another(shop, store, phone):
    order_id = paid_order(shop, phone.id, 1)
    shop.cancel_order(order_id)
    shop.refund_order(order_id)

    shop.payment("captured-again", order_id, "success")

    assert store.order(order_id).refund_status is RefundStatus.REQUIRED
    assert shop.refund_order(order_id).order.refund_status is RefundStatus.REFUNDED
    assert len(store.events("order_refunded")) == 2


def test_a_cancel_is_visible_to_the_next_product_read(shop, phone):
    order_id = shop.purchase(phone.id, 3).order.id
    assert shop.get_product(phone.id).stock == 7  # now in the cache

    shop.cancel_order(order_id)

    assert shop.get_product(phone.id).stock == 10
