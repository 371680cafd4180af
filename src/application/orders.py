"""Orders: made from a hold, read, and processed by the background task."""

from __future__ import annotations

import logging

from stockade.application.claim import BeforeCommit
from stockade.application.commands import OrderFromHold, OrderView, PendingOrder, ProcessResult
from stockade.application.payments import apply_deferred_payments
from stockade.application.ports import DuplicateHoldOrder
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER, Deps, retrying
from stockade.domain.errors import HoldAlreadyUsed, HoldNotFound, OrderNotFound
from stockade.domain.model import PROCESSABLE, Order, OrderStatus, ensure_hold_usable, money

log = logging.getLogger("stockade.orders")


def order_from_hold(deps: Deps, cmd: OrderFromHold, before_commit: BeforeCommit | None = None) -> PendingOrder:
    """Turn an active, unexpired hold into a pending order; its units stay reserved.
    Raises HoldNotFound, HoldAlreadyUsed, HoldReleased, HoldExpired."""

    def attempt() -> PendingOrder:
        now = deps.clock.now()
        with deps.uow() as uow:
            hold = uow.holds.get(cmd.hold_id)
            if hold is None:
                raise HoldNotFound()
            ensure_hold_usable(hold, now)
            product = uow.products.get(hold.product_id, include_deleted=True)
            assert product is not None, "a product with reserved units cannot be deleted"
            total = money(product.price * hold.quantity)
            due = now + deps.policy.payment_ttl
            try:
                order_id = uow.orders.add(
                    hold.product_id, hold.quantity, total, OrderStatus.PENDING, now,
                    hold_id=hold.id, payment_due_at=due,
                )
            except DuplicateHoldOrder:
                raise HoldAlreadyUsed() from None
            if not uow.holds.use(hold.id, order_id, now):
                # Lost to a racing order, a release or the sweep: say which, change nothing.
                again = uow.holds.get(hold.id)
                assert again is not None
                ensure_hold_usable(again, now)
                raise HoldAlreadyUsed()
            if uow.payments.deferred(1, order_id):
                # A webhook for this order arrived before it existed: apply it right after commit.
                uow.outbox.add(APPLY_DEFERRED_PAYMENTS, {"order_id": order_id}, now, now + deps.policy.outbox_retry)
            uow.events.record(
                "order_created",
                {"order_id": order_id, "hold_id": hold.id, "product_id": hold.product_id,
                 "quantity": hold.quantity, "total_price": str(total)},
                now,
            )
            order = Order(order_id, hold.product_id, hold.id, hold.quantity, total, OrderStatus.PENDING, due, now, now)
            result = PendingOrder(order)
            if before_commit is not None:
                before_commit(uow, result)
            uow.commit()
            return result

    return retrying(attempt)


def get_order(deps: Deps, order_id: int) -> OrderView:
    """An order with its product (deleted products keep serving their orders)."""
    with deps.read() as uow:
        order = uow.orders.get(order_id)
        product = uow.products.get(order.product_id, include_deleted=True) if order else None
    if order is None or product is None:
        raise OrderNotFound()
    return OrderView(order, product)


def process_order(deps: Deps, order_id: int, message_id: int | None = None) -> ProcessResult:
    """The background step after `created` or `paid`: wait, then mark `processed`, once.

    Safe to run any number of times: the conditional transition lets one run win. A
    missing order is logged and the task ends (no retry loop).
    """
    # A webhook can arrive before its order exists (a client may guess the next id). An
    # order from a hold applies it on creation; a direct purchase's order is never pending,
    # so its early delivery is resolved (ignored) here rather than by the next sweep.
    apply_deferred_payments(deps, order_id)
    with deps.read() as uow:
        order = uow.orders.get(order_id)
    if order is None or order.status not in PROCESSABLE:
        if order is None:
            log.warning("Order #%s does not exist; nothing to process.", order_id)
        _complete(deps, message_id)
        return ProcessResult(order_id, False, order.status if order else None)
    deps.sleep(deps.policy.processing_seconds)

    def attempt() -> bool:
        now = deps.clock.now()
        with deps.uow() as uow:
            done = uow.orders.transition(order_id, order.status, OrderStatus.PROCESSED, now)
            if done:
                uow.events.record("order_processed", {"order_id": order_id}, now)
            if message_id is not None:
                uow.outbox.complete(message_id, now)
            uow.commit()
            return done

    processed = retrying(attempt)
    if processed:
        log.warning("Order #%s Processed.", order_id)
    return ProcessResult(order_id, processed, OrderStatus.PROCESSED if processed else order.status)


def request_processing(deps: Deps, order_id: int) -> None:
    """Queue `process_order` durably (outbox) for any producer, e.g. the internal task API."""

    def attempt() -> None:
        now = deps.clock.now()
        with deps.uow() as uow:
            uow.outbox.add(PROCESS_ORDER, {"order_id": order_id}, now, now + deps.policy.outbox_retry)
            uow.commit()

    retrying(attempt)


def _complete(deps: Deps, message_id: int | None) -> None:
    if message_id is None:
        return

    def attempt() -> None:
        with deps.uow() as uow:
            uow.outbox.complete(message_id, deps.clock.now())
            uow.commit()

    retrying(attempt)
