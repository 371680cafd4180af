"""Many actors at once on one product: nothing is oversold, nothing is applied twice."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

from stockade.domain.errors import OutOfStock
from stockade.domain.model import OrderStatus, WebhookOutcome


def _attempt(action):
    try:
        action()
        return True
    except OutOfStock:
        return False


def test_concurrent_purchases_and_holds_never_oversell(shop, store, phone):
    actions = [lambda: shop.purchase(phone.id, 1), lambda: shop.hold(phone.id, 1)] * 15
    with ThreadPoolExecutor(max_workers=8) as pool:
        succeeded = sum(pool.map(_attempt, actions))
    product = store.product(phone.id)
    assert succeeded == len(store.tables.orders) + len(store.tables.holds) == 10
    assert (product.stock, product.reserved) == (10 - len(store.tables.orders), len(store.tables.holds))
    assert shop.check().ok


def test_concurrent_deliveries_of_one_webhook_apply_once(shop, store, phone):
    order = shop.order_from_hold(shop.hold(phone.id, 3).id).order
    with ThreadPoolExecutor(max_workers=8) as pool:
        results = list(pool.map(lambda _: shop.payment("k1", order.id, "success"), range(12)))
    assert {(r.status, r.outcome) for r in results} == {("paid", WebhookOutcome.APPLIED)}
    assert sorted(r.replayed for r in results) == [False] + [True] * 11
    assert store.order(order.id).status is OrderStatus.PAID
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (7, 0)
    assert len(store.events("order_paid")) == 1
