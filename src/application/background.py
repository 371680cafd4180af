"""Periodic work: expiry sweeps, deferred payments, the outbox relay, key purging."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta

from stockade.application.commands import Backlog, SweepReport
from stockade.application.expiry import cancel_overdue_orders, release_expired_holds
from stockade.application.payments import apply_deferred_payments
from stockade.application.ports import DueMessage, LatestStart, TaskMessage, UnitOfWork
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
        h, o = transaction(
            deps,
            lambda uow, now: (
                release_expired_holds(uow, deps.policy, now),
                cancel_overdue_orders(uow, deps.policy, now),
            ),
        )
        holds, orders = holds + h, orders + o
        if h < batch and o < batch:
            return holds, orders


def in_doubt(due: DueMessage, latest: LatestStart | None, now: datetime, retry: timedelta) -> bool:
    """Whether a due outbox message may be lost, rather than waiting its turn in the queue.

    A started message is due only once its lease ran out: its worker died or hangs. A
    message never started is lost if the queue, first in first out, has moved past it (a
    message sent after it has started), or if no task started anything for a retry period
    (no worker drains the queue it is in, or the broker lost the queue).
    """
    if due.started_at is not None:
        return True
    if latest is None or latest.started_at <= now - retry:
        return True
    return latest.sent_at > due.sent_at


def relay_outbox(deps: Deps) -> int:
    """Send again the outbox messages in doubt (at-least-once); those merely waiting their
    turn are looked at again one retry period later. Returns how many were sent."""
    retry = deps.policy.outbox_retry

    def one_batch(uow: UnitOfWork, now: datetime) -> tuple[int, int]:
        due = uow.outbox.due(now, deps.policy.sweep_batch)
        latest = uow.outbox.latest_start() if due else None
        lost: list[TaskMessage] = []
        waiting: list[TaskMessage] = []
        for d in due:
            (lost if in_doubt(d, latest, now, retry) else waiting).append(d.message)
        uow.outbox.postpone([m.id for m in lost], now + retry, resent_at=now)  # type: ignore[misc]
        uow.outbox.postpone([m.id for m in waiting], now + retry, resent_at=None)  # type: ignore[misc]
        for message in lost:
            uow.message_added(message)  # published after commit
        return len(due), len(lost)

    relayed = 0
    while True:
        looked_at, sent = transaction(deps, one_batch)
        relayed += sent
        if looked_at < deps.policy.sweep_batch:
            return relayed


def purge_idempotency_keys(deps: Deps) -> int:
    """Forget Idempotency-Key records older than the retention (at least 24 hours)."""
    return transaction(deps, lambda uow, now: uow.idempotency.purge(now - deps.policy.idempotency_ttl))


def backlog(deps: Deps) -> Backlog:
    """The backlog of background work: outbox, holds, pending orders, deferred webhooks."""
    with deps.read() as uow:
        outbox = uow.outbox.backlog()
        active_holds, pending_orders = uow.holds.count_active(), uow.orders.count_pending()
        deferred = uow.payments.count_deferred()
    now = deps.clock.now()

    def age(since: datetime | None) -> float:
        return max(0.0, (now - since).total_seconds()) if since else 0.0

    return Backlog(
        outbox.pending,
        age(outbox.oldest_pending_at),
        active_holds,
        pending_orders,
        deferred,
        age(outbox.oldest_unstarted_at),
    )


def sweep(deps: Deps) -> SweepReport:
    """Everything periodic, once, one after the other (beat and the embedded server run each
    job on a thread of its own instead, see entrypoints.bootstrap.periodic_jobs)."""
    holds, orders = release_expired(deps)
    payments = apply_deferred_payments(deps)
    relayed = relay_outbox(deps)
    purged = purge_idempotency_keys(deps)
    report = SweepReport(
        holds_expired=holds,
        orders_cancelled=orders,
        payments_applied=payments,
        messages_relayed=relayed,
        keys_purged=purged,
    )
    if holds or orders or payments or relayed:
        log.info("sweep: %s", report)
    return report
