"""Giving back units of expired holds and unpaid orders: shared by sweeps and the buy path."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable
from datetime import datetime

from stockade.application.ports import UnitOfWork
from stockade.application.services import Policy
from stockade.domain.model import HoldStatus, Order, OrderStatus


def give_back(uow: UnitOfWork, units: Iterable[tuple[int, str | None, int]], now: datetime) -> None:
    """Give back reserved units, given as (product_id, customer_id, quantity): each customer's
    claim, then each product's `reserved`. One UPDATE per claim and per product, in key
    order, claims first as a buyer takes them: concurrent givers and buyers lock rows alike."""
    units = list(units)
    _give_back_claims(uow, units)
    freed: dict[int, int] = defaultdict(int)
    for product_id, _, quantity in units:
        freed[product_id] += quantity
    for product_id in sorted(freed):
        uow.products.unreserve(product_id, freed[product_id], now)


def give_back_order_units(uow: UnitOfWork, cancelled: Iterable[Order], now: datetime) -> None:
    """The one step through which a cancelled order's units come back, whatever cancelled it
    (a failed payment, the payment timeout, an admin): its customer's claim, then a pending
    order's reserved units or a created or paid order's stock, in the order `give_back`
    locks rows. Each order is as it was read before this transaction cancelled it."""
    cancelled = list(cancelled)
    _give_back_claims(uow, [(o.product_id, o.customer_id, o.quantity) for o in cancelled])
    reserved: dict[int, int] = defaultdict(int)
    sold: dict[int, int] = defaultdict(int)
    for order in cancelled:
        (reserved if order.holds_reserved_units else sold)[order.product_id] += order.quantity
    for product_id in sorted(reserved.keys() | sold.keys()):
        if reserved[product_id]:
            uow.products.unreserve(product_id, reserved[product_id], now)
        if sold[product_id]:
            uow.products.restock(product_id, sold[product_id], now)


def _give_back_claims(uow: UnitOfWork, units: list[tuple[int, str | None, int]]) -> None:
    """Each named customer's claim shrinks by their units, one UPDATE per claim in key order."""
    claims: dict[tuple[int, str], int] = defaultdict(int)
    for product_id, customer_id, quantity in units:
        if customer_id is not None:
            claims[product_id, customer_id] += quantity
    for product_id, customer_id in sorted(claims):
        uow.claims.give_back(product_id, customer_id, claims[product_id, customer_id])


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
    give_back_order_units(uow, cancelled, now)
    return len(cancelled)


def reclaim_expired(uow: UnitOfWork, policy: Policy, product_id: int, now: datetime) -> int:
    """Release one product's expired holds and overdue orders now, before the sweep does."""
    return release_expired_holds(uow, policy, now, product_id) + cancel_overdue_orders(uow, policy, now, product_id)
