"""The payment webhook: exactly-once effect per idempotency key, deferral, late events."""

from __future__ import annotations

from datetime import datetime

import attrs

from stockade.application.commands import PaymentNotification, WebhookResult
from stockade.application.expiry import give_back
from stockade.application.ports import UnitOfWork
from stockade.application.services import PROCESS_ORDER, Deps, Policy, complete_message, start_message, transaction
from stockade.domain.errors import IdempotencyKeyReused
from stockade.domain.model import (
    OrderStatus,
    PaymentEvent,
    PaymentResult,
    WebhookOutcome,
    decide_payment,
)


def settle_payment(
    uow: UnitOfWork, policy: Policy, order_id: int, result: PaymentResult, key: str, now: datetime
) -> tuple[WebhookOutcome, str]:
    """Apply one payment result to one order inside `uow`; returns (outcome, status shown)."""
    order = uow.orders.get(order_id)
    decision = decide_payment(order.status if order else None, result)
    if decision.outcome is WebhookOutcome.APPLIED:
        assert order is not None and decision.new_status is not None
        if uow.orders.transition(order.id, OrderStatus.PENDING, decision.new_status, now):
            data = {
                "order_id": order.id,
                "product_id": order.product_id,
                "quantity": order.quantity,
                "idempotency_key": key,
            }
            if decision.new_status is OrderStatus.PAID:
                uow.products.settle(order.product_id, order.quantity, now)
                uow.outbox.add(PROCESS_ORDER, {"order_id": order.id}, now, now + policy.outbox_retry)
                uow.events.record("order_paid", data, now)
            else:
                give_back(uow, [(order.product_id, order.customer_id, order.quantity)], now)
                uow.events.record("order_cancelled", {**data, "reason": "payment_failed"}, now)
            return WebhookOutcome.APPLIED, decision.new_status.value
        # Another delivery or the timeout sweep moved it first: this one is late.
        order = uow.orders.get(order_id)
        assert order is not None
        decision = decide_payment(order.status, result)
    if decision.outcome is WebhookOutcome.DEFERRED:
        uow.events.record(
            "payment_deferred", {"order_id": order_id, "idempotency_key": key, "status": result.value}, now
        )
        return WebhookOutcome.DEFERRED, "deferred"
    assert order is not None
    data = {"order_id": order_id, "idempotency_key": key, "status": result.value, "order_status": order.status.value}
    uow.events.record("payment_ignored", data, now)
    if decision.refund_required:
        uow.events.record("payment_refund_required", data, now)
    return WebhookOutcome.IGNORED, order.status.value


def handle_payment(deps: Deps, note: PaymentNotification) -> WebhookResult:
    """Apply a webhook delivery once per key; a repeated key gets the first result again
    (`replayed`). The key's row is inserted first: a concurrent delivery of the same key
    waits on the unique index until this transaction ends, then replays what it stored.
    Raises IdempotencyKeyReused when the key came before with another body.
    """

    def work(uow: UnitOfWork, now: datetime) -> WebhookResult | None:
        provisional = PaymentEvent(
            0,
            note.idempotency_key,
            note.order_id,
            note.result,
            note.fingerprint,
            WebhookOutcome.DEFERRED,
            WebhookOutcome.DEFERRED,
            "",
            now,
            None,
        )
        if not uow.payments.add(provisional):
            return None
        outcome, status = settle_payment(uow, deps.policy, note.order_id, note.result, note.idempotency_key, now)
        uow.payments.finish(note.idempotency_key, outcome, status, now)
        return WebhookResult(note.order_id, note.idempotency_key, outcome, status)

    result = transaction(deps, work)
    if result is not None:
        return result
    with deps.read() as uow:
        first = uow.payments.get_by_key(note.idempotency_key)
    assert first is not None, "a key that collided on insert exists once committed"
    if first.fingerprint != note.fingerprint:
        raise IdempotencyKeyReused()
    # The first answer, as it was given (a deferred one stays deferred even once applied).
    return attrs.evolve(
        WebhookResult(first.order_id, first.idempotency_key, first.first_outcome, first.response_status),
        replayed=True,
    )


def apply_deferred_payments(deps: Deps, order_id: int | None = None, message_id: int | None = None) -> int:
    """Apply deferred deliveries whose order now exists, oldest first; each exactly once."""
    start_message(deps, message_id)
    applied = 0
    while True:
        with deps.read() as uow:
            batch = uow.payments.deferred(deps.policy.sweep_batch, order_id)
        for event in batch:
            applied += _apply_one(deps, event)
        if len(batch) < deps.policy.sweep_batch:
            break
    complete_message(deps, message_id)
    return applied


class _LostToAnother(Exception):
    """Another worker resolved this deferred delivery first: this transaction must roll back."""


def _apply_one(deps: Deps, event: PaymentEvent) -> int:
    def work(uow: UnitOfWork, now: datetime) -> int:
        outcome, _ = settle_payment(uow, deps.policy, event.order_id, event.result, event.idempotency_key, now)
        if outcome is WebhookOutcome.DEFERRED:
            raise _LostToAnother()  # its order is gone again: nothing to apply
        if not uow.payments.resolve_deferred(event.id, outcome, now):
            raise _LostToAnother()
        return 1

    try:
        return transaction(deps, work)
    except _LostToAnother:
        return 0
