"""Giving back units of expired holds and unpaid orders: shared by sweeps and the buy path."""

from __future__ import annotations

from collections import defaultdict
from datetime import datetime

from stockade.application.ports import UnitOfWork
from stockade.application.services import Policy
from stockade.domain.model import HoldStatus, OrderStatus


def _unreserve_sorted(uow: UnitOfWork, freed: dict[int, int], now: datetime) -> None:
    # One UPDATE per product, in id order, so concurrent sweepers lock products alike.
    for product_id in sorted(freed):
        uow.products.unreserve(product_id, freed[product_id], now)


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
    freed: dict[int, int] = defaultdict(int)
    count = 0
    for order in uow.orders.overdue(now, policy.sweep_batch, product_id):
        if uow.orders.transition(order.id, OrderStatus.PENDING, OrderStatus.CANCELLED, now):
            freed[order.product_id] += order.quantity
            count += 1
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
    _unreserve_sorted(uow, freed, now)
    return count


def reclaim_expired(uow: UnitOfWork, policy: Policy, product_id: int, now: datetime) -> int:
    """Release one product's expired holds and overdue orders now, before the sweep does."""
    return release_expired_holds(uow, policy, now, product_id) + cancel_overdue_orders(uow, policy, now, product_id)
