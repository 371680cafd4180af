"""What every use case receives: ports, policy values and the retry of transient failures."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta
from typing import TypeVar

import attrs

from stockade.application.ports import Clock, ProductCache, TransientStorageError, UnitOfWork

T = TypeVar("T")

PROCESS_ORDER = "stockade.process_order"
APPLY_DEFERRED_PAYMENTS = "stockade.apply_deferred_payments"


@attrs.frozen
class Policy:
    """Business tunables, read from settings by the composition root."""

    hold_ttl: timedelta = timedelta(seconds=120)
    payment_ttl: timedelta = timedelta(seconds=900)
    max_quantity: int = 100
    processing_seconds: float = 5.0
    sweep_batch: int = 500
    #: a published task not completed by then is published again (tasks are idempotent)
    outbox_retry: timedelta = timedelta(seconds=60)
    idempotency_ttl: timedelta = timedelta(hours=48)
    #: an Idempotency-Key claim in flight this long belongs to a request that died
    idempotency_stale: timedelta = timedelta(seconds=60)


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


def retrying(action: Callable[[], T], attempts: int = 10) -> T:
    """Run a transaction again when the storage asked for it (deadlock, lock wait timeout).

    Safe because a TransientStorageError means the whole transaction rolled back.
    """
    for attempt in range(1, attempts + 1):
        try:
            return action()
        except TransientStorageError:
            if attempt == attempts:
                raise
            time.sleep(0.005 * attempt)
    raise AssertionError("unreachable")
