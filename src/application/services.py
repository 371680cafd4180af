"""What every use case receives (ports and policy) and the one transaction runner."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs

from stockade.application.ports import Clock, ProductCache, RequestKey, TransientStorageError, UnitOfWork, resolved

T = TypeVar("T")

PROCESS_ORDER = "stockade.process_order"
APPLY_DEFERRED_PAYMENTS = "stockade.apply_deferred_payments"


@attrs.frozen
class Policy:
    """Business tunables, read from settings by the composition root."""

    hold_ttl: timedelta = timedelta(seconds=120)
    #: the longest a hold may live, extensions included
    hold_max_lifetime: timedelta = timedelta(seconds=900)
    payment_ttl: timedelta = timedelta(seconds=900)
    max_quantity: int = 100
    processing_seconds: float = 5.0
    sweep_batch: int = 500
    #: a published task not started by then is in doubt, and sent again if the queue has
    #: moved past it or stood still meanwhile (tasks are idempotent)
    outbox_retry: timedelta = timedelta(seconds=60)
    idempotency_ttl: timedelta = timedelta(hours=48)

    @property
    def task_lease(self) -> timedelta:
        """How long a started task may run before the relay takes its worker for dead."""
        return timedelta(seconds=self.processing_seconds) + self.outbox_retry


@attrs.frozen
class Deps:
    """The ports a use case may touch."""

    uow: Callable[[], UnitOfWork]
    #: a unit of work for reads only: never commits, never takes a write lock
    read: Callable[[], UnitOfWork]
    clock: Clock
    cache: ProductCache
    policy: Policy = Policy()
    sleep: Callable[[float], None] = time.sleep


def transaction(
    deps: Deps,
    work: Callable[[UnitOfWork, datetime], T],
    *,
    key: RequestKey | None = None,
    encode: Callable[[T], dict[str, Any]] | None = None,
    attempts: int = 10,
) -> T:
    """Run `work(uow, now)` in one transaction and commit; again when the storage asks for a
    retry (deadlock, lock wait timeout), which is safe: the whole transaction rolled back.

    With `key`, the Idempotency-Key is claimed last, with its answer (`encode(result)`), in
    the same transaction as the effect: both commit or neither does. A key already recorded
    rolls the effect back (IdempotencyKeyTaken); one claimed by a transaction still open
    waits for it. Claimed last, the record needs no second statement to store the answer
    once the effect is known.
    Returns the result with every Ref replaced by its value.
    """
    for attempt in range(1, attempts + 1):
        now = deps.clock.now()
        try:
            with deps.uow() as uow:
                result = work(uow, now)
                if key is not None:
                    assert encode is not None, "a keyed transaction stores its encoded answer"
                    uow.idempotency.claim(key, now, encode(result))
                uow.commit()
            return resolved(result)
        except TransientStorageError:
            if attempt == attempts:
                raise
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")


def keyset_page(found: list[T], limit: int) -> tuple[list[T], int | None]:
    """The page of rows read as `limit + 1` rows with ids above an `after_id`, and the
    `after_id` of the next page (None at the end)."""
    page = found[:limit]
    return page, (page[-1].id if len(found) > limit else None)  # type: ignore[attr-defined]  # rows have ids


def start_message(deps: Deps, message_id: int | None) -> None:
    """Take the lease of an outbox message as its task starts: the relay leaves it alone
    while the task may still be running, and counts the delivery."""
    if message_id is not None:
        transaction(deps, lambda uow, now: uow.outbox.start(message_id, now, now + deps.policy.task_lease))


def complete_message(deps: Deps, message_id: int | None) -> None:
    """Mark an outbox message done, for a task that finished without a transaction of its own."""
    if message_id is not None:
        transaction(deps, lambda uow, now: uow.outbox.complete(message_id, now))
