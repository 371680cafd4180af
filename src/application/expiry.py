"""Giving back units of expired holds and unpaid orders: shared by sweeps and the buy path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from stockade.application.ports import UnitOfWork
from stockade.application.services import Policy
from stockade.domain.model import HoldStatus, Order, OrderStatus


def _unreserve_sorted(uow: UnitOfWork, freed: dict[int, int], now: datetime) -> None:
    # One UPDATE per product, in id order, so concurrent sweepers lock products alike.
    for product_id in sorted(freed):
        uow.products.unreserve(product_id, freed[product_id], now)


def give_back_order_units(uow: UnitOfWork, cancelled: Iterable[Order], now: datetime) -> None:
    """The one step through which a cancelled order's units come back, whatever cancelled it
    (a failed payment, the payment timeout, an admin): a pending order's reserved units, a
    created or paid order's stock. Each order is as it was read before this transaction
    cancelled it."""
    reserved: dict[int, int] = defaultdict(int)
    sold: dict[int, int] = defaultdict(int)
    for order in cancelled:
        (reserved if order.holds_reserved_units else sold)[order.product_id] += order.quantity
    _unreserve_sorted(uow, reserved, now)
    for product_id in sorted(sold):
        uow.products.restock(product_id, sold[product_id], now)


def release_expired_holds(uow: UnitOfWork, policy: Policy, now: datetime, product_id: int | None = None) -> int:
    """Expire active holds past their TTL; each is released exactly once (conditional update)."""
    freed: dict[int, int] = defaultdict(int)
    count = 0
    for hold in uow.holds.expired(now, policy.sweep_batch, product_id):
        if uow.holds.end(hold.id, HoldStatus.EXPIRED, now):
            freed[hold.product_id] += hold.quantity
            count += 1
            uow.events.record(
                "hold_released",
                {"hold_id": hold.id, "product_id": hold.product_id, "quantity": hold.quantity, "reason": "expired"},
                now,
            )
    _unreserve_sorted(uow, freed, now)
    if count:
        uow.events.record("holds_batch_released", {"count": count}, now)
    return count


def cancel_overdue_orders(uow: UnitOfWork, policy: Policy, now: datetime, product_id: int | None = None) -> int:
    """Cancel pending orders whose payment time ran out; each exactly once."""
    cancelled = []
    for order in uow.orders.overdue(now, policy.sweep_batch, product_id):
        if uow.orders.transition(order.id, OrderStatus.PENDING, OrderStatus.CANCELLED, now):
            cancelled.append(order)
            uow.events.record(
                "order_cancelled",
                {
                    "order_id": order.id,
                    "product_id": order.product_id,
                    "quantity": order.quantity,
                    "reason": "payment_timeout",
                },
                now,
            )
    give_back_order_units(uow, cancelled, now)
    return len(cancelled)


def reclaim_expired(uow: UnitOfWork, policy: Policy, product_id: int, now: datetime) -> int:
    """Release one product's expired holds and overdue orders now, before the sweep does."""
    return release_expired_holds(uow, policy, now, product_id) + cancel_overdue_orders(uow, policy, now, product_id)
