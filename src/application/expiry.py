"""Giving back units of expired holds and unpaid orders: shared by sweeps and the buy path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from stockade.application.ports import UnitOfWork
from stockade.application.services import Policy
from stockade.domain.model import HoldStatus, OrderStatus


def give_back(uow: UnitOfWork, units: Iterable[tuple[int, str | None, int]], now: datetime) -> None:
    """Give back reserved units, given as (product_id, customer_id, quantity): each customer's
    claim, then each product's `reserved`. One UPDATE per claim and per product, in key
    order, claims first as a buyer takes them: concurrent givers and buyers lock rows alike."""
    claims: dict[tuple[int, str], int] = defaultdict(int)
    freed: dict[int, int] = defaultdict(int)
    for product_id, customer_id, quantity in units:
        freed[product_id] += quantity
        if customer_id is not None:
            claims[product_id, customer_id] += quantity
    for product_id, customer_id in sorted(claims):
        uow.claims.give_back(product_id, customer_id, claims[product_id, customer_id])
    for product_id in sorted(freed):
        uow.products.unreserve(product_id, freed[product_id], now)


def release_expired_holds(uow: UnitOfWork, policy: Policy, now: datetime, product_id: int | None = None) -> int:
    """Expire active holds past their TTL; each is released exactly once (conditional update)."""
    released = []
    for hold in uow.holds.expired(now, policy.sweep_batch, product_id):
        if uow.holds.end(hold.id, HoldStatus.EXPIRED, now):
            released.append(hold)
            uow.events.record(
                "hold_released",
                {"hold_id": hold.id, "product_id": hold.product_id, "quantity": hold.quantity, "reason": "expired"},
                now,
            )
    give_back(uow, [(h.product_id, h.customer_id, h.quantity) for h in released], now)
    if released:
        uow.events.record("holds_batch_released", {"count": len(released)}, now)
    return len(released)


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
    give_back(uow, [(o.product_id, o.customer_id, o.quantity) for o in cancelled], now)
    return len(cancelled)


def reclaim_expired(uow: UnitOfWork, policy: Policy, product_id: int, now: datetime) -> int:
    """Release one product's expired holds and overdue orders now, before the sweep does."""
    return release_expired_holds(uow, policy, now, product_id) + cancel_overdue_orders(uow, policy, now, product_id)
