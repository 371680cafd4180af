"""Periodic work: expiry sweeps, deferred payments, the outbox relay, key purging."""

from __future__ import annotations

import logging
from datetime import datetime

from stockade.application.commands import SweepReport
from stockade.application.expiry import cancel_overdue_orders, release_expired_holds
from stockade.application.payments import apply_deferred_payments
from stockade.application.ports import UnitOfWork
from stockade.application.services import Deps, transaction

log = logging.getLogger("stockade.sweep")


def release_expired(deps: Deps) -> tuple[int, int]:
    """Expire holds and cancel unpaid orders, batch by batch, until none is due.

    Safe with any number of concurrent sweepers: rows locked by another are skipped and
    each release is a conditional update.
    """
    holds = orders = 0
    batch = deps.policy.sweep_batch
    while True:
        h, o = transaction(deps, lambda uow, now: (release_expired_holds(uow, deps.policy, now),
                                                    cancel_overdue_orders(uow, deps.policy, now)))
        holds, orders = holds + h, orders + o
        if h < batch and o < batch:
            return holds, orders


def relay_outbox(deps: Deps) -> int:
    """Publish again every outbox message not completed by its retry time (at-least-once)."""

    def one_batch(uow: UnitOfWork, now: datetime) -> int:
        due = uow.outbox.due(now, deps.policy.sweep_batch)
        if due:
            uow.outbox.postpone([m.id for m in due], now + deps.policy.outbox_retry)  # type: ignore[misc]
            for message in due:
                uow.message_added(message)  # published after commit
        return len(due)

    relayed = 0
    while True:
        n = transaction(deps, one_batch)
        relayed += n
        if n < deps.policy.sweep_batch:
            return relayed


def purge_idempotency_keys(deps: Deps) -> int:
    """Forget Idempotency-Key records older than the retention (at least 24 hours)."""
    return transaction(deps, lambda uow, now: uow.idempotency.purge(now - deps.policy.idempotency_ttl))


def sweep(deps: Deps) -> SweepReport:
    """Everything periodic, once; what the embedded sweeper and `holds release-expired` run."""
    holds, orders = release_expired(deps)
    payments = apply_deferred_payments(deps)
    relayed = relay_outbox(deps)
    purged = purge_idempotency_keys(deps)
    report = SweepReport(holds_expired=holds, orders_cancelled=orders, payments_applied=payments,
                         messages_relayed=relayed, keys_purged=purged)
    if holds or orders or payments or relayed:
        log.info("sweep: %s", report)
    return report
