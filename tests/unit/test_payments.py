"""The payment webhook: applied once per key, deferred until the order exists, late events."""

from __future__ import annotations

import attrs
import pytest

from stockade.application.commands import PaymentNotification
from stockade.application.payments import handle_payment
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER
from stockade.domain.errors import IdempotencyKeyReused
from stockade.domain.model import OrderStatus, PaymentResult, WebhookOutcome


def deliver(shop, key, order_id, status="success"):
    """One webhook delivery; returns (result, replayed)."""
    result = handle_payment(shop.deps, PaymentNotification(key, order_id, PaymentResult(status)))
    return result, result.replayed


@pytest.fixture
def pending(shop, phone):
    """A pending order for 3 units of the phone."""
    return shop.order_from_hold(shop.hold(phone.id, 3).id).order


def test_successful_payment_pays_the_order_and_takes_its_units_from_stock(shop, store, publisher, phone, pending):
    result, replayed = deliver(shop, "k1", pending.id, "success")
    assert (result.outcome, result.status, replayed) == (WebhookOutcome.APPLIED, "paid", False)
    assert store.order(pending.id).status is OrderStatus.PAID
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (7, 0)
    assert [m.payload for m in publisher.tasks(PROCESS_ORDER)] == [{"order_id": pending.id}]
    assert store.events("order_paid")[0].data["order_id"] == pending.id


def test_failed_payment_cancels_the_order_and_gives_its_units_back(shop, store, publisher, phone, pending):
    result, _ = deliver(shop, "k1", pending.id, "failure")
    assert (result.outcome, result.status) == (WebhookOutcome.APPLIED, "cancelled")
    assert store.order(pending.id).status is OrderStatus.CANCELLED
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (10, 0)
    assert publisher.tasks(PROCESS_ORDER) == []
    assert store.events("order_cancelled")[0].data["reason"] == "payment_failed"


def test_same_key_and_body_again_replays_the_first_result_without_a_second_effect(shop, store, phone, pending):
    first, _ = deliver(shop, "k1", pending.id, "success")
    again, replayed = deliver(shop, "k1", pending.id, "success")
    assert replayed and attrs.evolve(again, replayed=False) == first
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (7, 0)
    assert len(store.events("order_paid")) == 1
    assert store.events("payment_ignored") == []


def test_same_key_with_a_different_body_is_refused_without_effect(shop, store, pending):
    deliver(shop, "k1", pending.id, "failure")
    with pytest.raises(IdempotencyKeyReused):
        deliver(shop, "k1", pending.id, "success")
    assert store.order(pending.id).status is OrderStatus.CANCELLED
    assert store.events("payment_refund_required") == []


def test_payment_for_an_order_not_yet_created_is_deferred(shop, store):
    result, _ = deliver(shop, "early", 1, "success")
    assert (result.outcome, result.status) == (WebhookOutcome.DEFERRED, "deferred")
    assert store.events("payment_deferred")[0].data["order_id"] == 1


def test_deferred_payment_is_applied_exactly_once_when_its_order_is_created(shop, store, publisher, phone):
    deliver(shop, "early", 2, "success")
    shop.purchase(phone.id, 1)  # order 1
    order = shop.order_from_hold(shop.hold(phone.id, 3).id).order
    assert order.id == 2
    [message] = publisher.tasks(APPLY_DEFERRED_PAYMENTS)
    assert message.payload == {"order_id": 2}

    assert shop.apply_deferred_payments(2, message.id) == 1
    assert shop.apply_deferred_payments(2) == 0
    assert shop.sweep().payments_applied == 0
    assert store.order(2).status is OrderStatus.PAID
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (6, 0)
    assert len(store.events("order_paid")) == 1
    assert store.messages(APPLY_DEFERRED_PAYMENTS)[0].completed_at is not None


def test_deferred_payment_replays_its_first_response_after_it_was_applied(shop, phone):
    deliver(shop, "early", 1, "success")
    shop.order_from_hold(shop.hold(phone.id, 3).id)
    shop.apply_deferred_payments(1)
    again, replayed = deliver(shop, "early", 1, "success")
    assert replayed and (again.outcome, again.status) == (WebhookOutcome.DEFERRED, "deferred")


def test_deferred_payment_is_applied_by_the_sweep_too(shop, store, phone):
    deliver(shop, "early", 1, "failure")
    shop.order_from_hold(shop.hold(phone.id, 3).id)
    assert shop.sweep().payments_applied == 1
    assert store.order(1).status is OrderStatus.CANCELLED
    assert store.product(phone.id).reserved == 0


@pytest.mark.parametrize("status", ["success", "failure"])
def test_payment_for_a_paid_order_is_ignored(shop, store, phone, pending, status):
    deliver(shop, "k1", pending.id, "success")
    result, replayed = deliver(shop, "k2", pending.id, status)
    assert (result.outcome, result.status, replayed) == (WebhookOutcome.IGNORED, "paid", False)
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (7, 0)
    assert store.events("payment_ignored")[0].data["order_id"] == pending.id
    assert store.events("payment_refund_required") == []


def test_payment_for_a_processed_order_is_ignored(shop, store, pending):
    deliver(shop, "k1", pending.id, "success")
    shop.process_order(pending.id)
    result, _ = deliver(shop, "k2", pending.id, "failure")
    assert (result.outcome, result.status) == (WebhookOutcome.IGNORED, "processed")
    assert store.order(pending.id).status is OrderStatus.PROCESSED
    assert len(store.events("payment_ignored")) == 1


def test_success_for_a_cancelled_order_is_ignored_and_asks_for_a_refund(shop, store, phone, pending):
    deliver(shop, "k1", pending.id, "failure")
    result, _ = deliver(shop, "k2", pending.id, "success")
    assert (result.outcome, result.status) == (WebhookOutcome.IGNORED, "cancelled")
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (10, 0)
    assert len(store.events("payment_ignored")) == 1
    [refund] = store.events("payment_refund_required")
    assert refund.data["order_id"] == pending.id and refund.data["idempotency_key"] == "k2"


def test_failure_for_a_cancelled_order_is_ignored_without_a_refund(shop, store, pending):
    deliver(shop, "k1", pending.id, "failure")
    deliver(shop, "k2", pending.id, "failure")
    assert len(store.events("payment_ignored")) == 1
    assert store.events("payment_refund_required") == []


def test_success_after_the_payment_timeout_asks_for_a_refund(shop, store, clock, phone, pending):
    clock.advance(901)
    shop.sweep()
    result, _ = deliver(shop, "late", pending.id, "success")
    assert result.status == "cancelled"
    assert store.product(phone.id).stock == 10
    assert len(store.events("payment_refund_required")) == 1


def test_payment_for_a_direct_purchase_is_ignored(shop, store, phone):
    order = shop.purchase(phone.id, 1).order
    result, _ = deliver(shop, "k1", order.id, "success")
    assert (result.outcome, result.status) == (WebhookOutcome.IGNORED, "created")
    assert store.product(phone.id).stock == 9


def test_shop_payment_returns_the_webhook_result(shop, pending):
    assert shop.payment("k1", pending.id, "success").status == "paid"


def test_the_facade_says_when_a_payment_result_is_a_replay(shop, store, phone, pending):
    first = shop.payment("pay-1", pending.id, "success")
    again = shop.payment("pay-1", pending.id, "success")
    assert (first.outcome, first.replayed) == (WebhookOutcome.APPLIED, False)
    assert again.replayed and again.outcome is WebhookOutcome.APPLIED and again.status == first.status
    assert store.product(phone.id).stock == 7  # one effect: 10 - 3
