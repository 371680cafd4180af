"""Orders: made from a hold, read, processed by the background task, cancelled and refunded."""

from __future__ import annotations

import logging
from datetime import datetime

import attrs

from stockade.application.claim import product_snapshot
from stockade.application.commands import OrderFromHold, OrderSearch, OrderView, PendingOrder, ProcessResult
from stockade.application.expiry import give_back_order_units
from stockade.application.payments import apply_deferred_payments
from stockade.application.ports import ConditionFailed, DuplicateHoldOrder, RequestKey, UnitOfWork
from stockade.application.records import encode_result
from stockade.application.services import (
    APPLY_DEFERRED_PAYMENTS,
    PROCESS_ORDER,
    Deps,
    complete_message,
    keyset_page,
    start_message,
    transaction,
)
from stockade.domain.errors import HoldAlreadyUsed, HoldNotFound, NoRefundRequired, OrderNotFound
from stockade.domain.model import (
    PROCESSABLE,
    Hold,
    Order,
    OrderStatus,
    RefundStatus,
    ensure_hold_usable,
    money,
)

log = logging.getLogger("stockade.orders")


def order_from_hold(deps: Deps, cmd: OrderFromHold, key: RequestKey | None = None) -> PendingOrder:
    """Turn an active, unexpired hold into a pending order; its units stay reserved.
    Raises HoldNotFound, HoldAlreadyUsed, HoldReleased, HoldExpired.

    The hold and its product (from memory when current) are read first, without locks; the
    transaction then inserts the order and ends with the conditional `active -> used` of
    the hold, which decides.
    A webhook that arrived before the order existed is queued right after the commit (and
    applied by the periodic sweep, should this process stop first).
    """
    with deps.read() as uow:
        hold = uow.holds.get(cmd.hold_id)
    if hold is None:
        raise HoldNotFound()
    ensure_hold_usable(hold, deps.clock.now())
    # Live: a product with reserved units cannot be deleted.
    total = money(product_snapshot(deps, hold.product_id).product.price * hold.quantity)

    def write(uow: UnitOfWork, now: datetime) -> tuple[PendingOrder, object]:
        due = now + deps.policy.payment_ttl
        order_id = uow.orders.add(
            hold.product_id,
            hold.quantity,
            total,
            OrderStatus.PENDING,
            now,
            hold_id=hold.id,
            payment_due_at=due,
            # The hold's claim becomes the order's: the customer's claim is unchanged.
            customer_id=hold.customer_id,
        )
        uow.events.record(
            "order_created",
            {
                "order_id": order_id,
                "hold_id": hold.id,
                "product_id": hold.product_id,
                "quantity": hold.quantity,
                "total_price": str(total),
            },
            now,
        )
        early_webhook = uow.payments.has_deferred(order_id)
        uow.holds.use(hold, order_id, now)
        order = Order(
            order_id,  # type: ignore[arg-type]  # a Ref until commit
            hold.product_id,
            hold.id,
            hold.quantity,
            total,
            OrderStatus.PENDING,
            due,
            now,
            now,
            hold.customer_id,
        )
        return PendingOrder(order), early_webhook

    try:
        result, early_webhook = transaction(deps, write, key=key, encode=lambda made: encode_result(made[0]))
    except (ConditionFailed, DuplicateHoldOrder):
        _refuse_unusable(deps, hold)
    if early_webhook:
        _queue_early_webhooks(deps, result.order.id)
    return result


def _queue_early_webhooks(deps: Deps, order_id: int) -> None:
    """Queue the deliveries that waited for this order. Best effort: the order is committed
    and its answer must not fail now; the periodic sweep applies them if this does not."""
    try:
        transaction(
            deps,
            lambda uow, now: uow.outbox.add(
                APPLY_DEFERRED_PAYMENTS, {"order_id": order_id}, now, now + deps.policy.outbox_retry
            ),
        )
    except Exception:  # noqa: BLE001 - logged; the sweep is the safety net
        log.warning(
            "could not queue the early webhooks of order #%s; the sweep will apply them", order_id, exc_info=True
        )


def _refuse_unusable(deps: Deps, hold: Hold) -> None:
    """A racing order, a release or the sweep got the hold first: say which."""
    with deps.read() as uow:
        again = uow.holds.get(hold.id)
    assert again is not None
    ensure_hold_usable(again, deps.clock.now())
    raise HoldAlreadyUsed()


def get_order(deps: Deps, order_id: int) -> OrderView:
    """An order with its product (deleted products keep serving their orders)."""
    with deps.read() as uow:
        order = uow.orders.get(order_id)
        product = uow.products.get(order.product_id, include_deleted=True) if order else None
    if order is None or product is None:
        raise OrderNotFound()
    return OrderView(order, product)


def list_orders(deps: Deps, search: OrderSearch) -> tuple[list[OrderView], int | None]:
    """One page of orders by id, each with its product, and the `after_id` of the next page
    (None at the end)."""
    with deps.read() as uow:
        page, next_after_id = keyset_page(uow.orders.search(attrs.evolve(search, limit=search.limit + 1)), search.limit)
        products = uow.products.get_many(sorted({o.product_id for o in page}))
    return [OrderView(o, products[o.product_id]) for o in page], next_after_id


def process_order(deps: Deps, order_id: int, message_id: int | None = None) -> ProcessResult:
    """The background step after `created` or `paid`: wait, then mark `processed`, once.

    Safe to run any number of times: the conditional transition lets one run win, and an
    order cancelled during the wait stays cancelled. A missing order is logged and the task
    ends (no retry loop).
    """
    start_message(deps, message_id)
    # A webhook can arrive before its order exists (a client may guess the next id). An
    # order from a hold applies it on creation; a direct purchase's order is never pending,
    # so its early delivery is resolved (ignored) here rather than by the next sweep.
    apply_deferred_payments(deps, order_id)
    with deps.read() as uow:
        order = uow.orders.get(order_id)
    if order is None or order.status not in PROCESSABLE:
        if order is None:
            log.warning("Order #%s does not exist; nothing to process.", order_id)
        complete_message(deps, message_id)
        return ProcessResult(order_id, False, order.status if order else None)
    deps.sleep(deps.policy.processing_seconds)

    def work(uow: UnitOfWork, now: datetime) -> tuple[bool, OrderStatus]:
        # Conditional on the status read before the wait: an order cancelled meanwhile stays so.
        done = uow.orders.transition(order_id, order.status, OrderStatus.PROCESSED, now)
        if done:
            uow.events.record("order_processed", {"order_id": order_id}, now)
        if message_id is not None:
            uow.outbox.complete(message_id, now)
        return done, OrderStatus.PROCESSED if done else _current(uow, order_id).status

    processed, status = transaction(deps, work)
    if processed:
        log.warning("Order #%s Processed.", order_id)
    else:
        log.info("Order #%s became %s while it waited; not processed by this run.", order_id, status.value)
    return ProcessResult(order_id, processed, status)


def _current(uow: UnitOfWork, order_id: int) -> Order:
    order = uow.orders.get(order_id)
    if order is None:
        raise OrderNotFound()
    return order


def cancel_order(deps: Deps, order_id: int) -> OrderView:
    """An admin's cancel: `created` and `paid` orders' units go back to stock, a `pending`
    order's reserved units are released; a paid order then owes a refund. Cancelling a
    cancelled order changes nothing. Raises OrderNotFound, OrderAlreadyProcessed.

    The cancel is one conditional update on the status just read; when another actor
    (payment, processing, the timeout sweep) moved the order first, the order is read again
    and the decision made again. The statuses only move forward, so this ends.
    """

    def work(uow: UnitOfWork, now: datetime) -> None:
        for _ in range(len(OrderStatus)):  # each lost race moved the order one status on
            order = _current(uow, order_id)
            if not order.needs_cancelling():
                return
            refund = RefundStatus.REQUIRED if order.status is OrderStatus.PAID else None
            if uow.orders.transition(order.id, order.status, OrderStatus.CANCELLED, now, refund_status=refund):
                break
        else:
            raise AssertionError(f"order #{order_id} kept changing status")
        give_back_order_units(uow, [order], now)
        data = {"order_id": order.id, "product_id": order.product_id, "quantity": order.quantity}
        uow.events.record("order_cancelled", {**data, "reason": "admin", "previous_status": order.status.value}, now)
        if refund is not None:
            uow.events.record("payment_refund_required", {**data, "order_status": OrderStatus.CANCELLED.value}, now)

    transaction(deps, work)
    return get_order(deps, order_id)


def refund_order(deps: Deps, order_id: int) -> OrderView:
    """Record that the money of a cancelled, paid order was given back: refund_status
    required -> refunded. Already refunded: no change. Raises OrderNotFound, NoRefundRequired."""

    def work(uow: UnitOfWork, now: datetime) -> None:
        order = _current(uow, order_id)
        if order.refund_status is RefundStatus.REQUIRED and uow.orders.mark_refunded(order_id, now):
            uow.events.record(
                "order_refunded",
                {"order_id": order.id, "product_id": order.product_id, "total_price": str(order.total_price)},
                now,
            )
        elif _current(uow, order_id).refund_status is not RefundStatus.REFUNDED:  # a racing refund may have won
            raise NoRefundRequired()

    transaction(deps, work)
    return get_order(deps, order_id)


def request_processing(deps: Deps, order_id: int) -> None:
    """Queue `process_order` durably (outbox) for any producer, e.g. the internal task API."""
    transaction(
        deps,
        lambda uow, now: uow.outbox.add(PROCESS_ORDER, {"order_id": order_id}, now, now + deps.policy.outbox_retry),
    )
