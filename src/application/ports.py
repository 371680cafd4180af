"""Ports: what the use cases need from the outside world, each with its contract."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import attrs

from stockade.domain.model import (
    Hold,
    HoldStatus,
    LoggedEvent,
    Order,
    OrderStatus,
    PaymentEvent,
    Product,
    WebhookOutcome,
)


class TransientStorageError(Exception):
    """The storage refused a transaction for a reason a retry can cure (deadlock, lock wait)."""


class Clock(Protocol):
    """Where time comes from; tests step a fixed clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC, microsecond precision."""


@attrs.frozen
class TaskMessage:
    """A unit of background work, durable in the outbox before it is published."""

    id: int
    task: str
    payload: dict[str, Any]


class TaskPublisher(Protocol):
    """Hands committed outbox messages to whatever runs tasks."""

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        """Best effort and bounded in time: never raises, never blocks a response for long.

        A message it fails to send stays in the outbox and the relay sends it later.
        """


class ProductCache(Protocol):
    """A read-through cache of single products; it never decides stock."""

    def get(self, product_id: int) -> tuple[Product | None, object]:
        """The cached product or None, and a ticket to pass to `fill` after a miss."""

    def fill(self, product: Product, ticket: object) -> None:
        """Store `product` unless the key was invalidated after `ticket` was taken.

        This closes the race where a slow reader would cache a row older than a write
        whose invalidation it missed.
        """

    def invalidate(self, product_ids: Sequence[int]) -> None:
        """Forget these products; called after the writing transaction committed."""


class ProductRepository(Protocol):
    """Products and their stock levels; every stock change is one conditional statement."""

    def add(self, name: str, price: Decimal, stock: int, now: datetime) -> Product: ...

    def get(self, product_id: int, *, include_deleted: bool = False) -> Product | None: ...

    def list(self, limit: int, after_id: int) -> list[Product]:
        """Live products with id > after_id, ordered by id, at most `limit`."""

    def update(
        self,
        product_id: int,
        changes: dict[str, Any],
        now: datetime,
        expected_version: int | None = None,
    ) -> bool:
        """Apply name/price/stock changes if the product is live, `stock` (when given) is
        not below `reserved`, and the version matches (when given). True if applied."""

    def soft_delete(self, product_id: int, now: datetime) -> bool:
        """Mark the product deleted if it is live and nothing is reserved. True if done."""

    def take(self, product_id: int, quantity: int, now: datetime) -> bool:
        """Sell `quantity` units: stock -= q where available >= q. True if sold."""

    def reserve(self, product_id: int, quantity: int, now: datetime) -> bool:
        """Hold `quantity` units: reserved += q where available >= q. True if held."""

    def for_sale(self, product_id: int, now: datetime) -> tuple[Product | None, bool]:
        """One plain read, no locks: the live product (None if there is none) and whether
        it has lapsed claims (see has_lapsed_claims)."""

    def has_lapsed_claims(self, product_id: int, now: datetime) -> bool:
        """Without taking locks: has the product active holds past expiry, or pending orders
        past their payment time? A cheap probe before the locking reclaim."""

    def unreserve(self, product_id: int, quantity: int, now: datetime) -> None:
        """Give back reserved units (hold released/expired, order cancelled)."""

    def settle(self, product_id: int, quantity: int, now: datetime) -> None:
        """A pending order was paid: stock -= q and reserved -= q."""

    def audit(self) -> list[tuple[Product, int]]:
        """Every product, deleted ones too, with the reserved quantity that its active
        holds and pending orders account for, read in one consistent snapshot."""


class HoldRepository(Protocol):
    """Holds; every state change is conditional on the current state."""

    def add(self, product_id: int, quantity: int, expires_at: datetime, now: datetime) -> Hold: ...

    def get(self, hold_id: int) -> Hold | None: ...

    def use(self, hold_id: int, order_id: int, now: datetime) -> bool:
        """active -> used (with its order id), only while not expired at `now`. True if done."""

    def end(self, hold_id: int, status: HoldStatus, now: datetime) -> bool:
        """active -> released or expired. True if this call made the change."""

    def expired(self, now: datetime, limit: int, product_id: int | None = None) -> list[Hold]:
        """Active holds past their TTL, locked. Rows another transaction holds locked are
        skipped in a sweep (no product_id) and waited for in a buyer's reclaim (product_id)."""


class OrderRepository(Protocol):
    """Orders; every status change is conditional on the current status."""

    def add(
        self,
        product_id: int,
        quantity: int,
        total_price: Decimal,
        status: OrderStatus,
        now: datetime,
        *,
        hold_id: int | None = None,
        payment_due_at: datetime | None = None,
    ) -> int:
        """Insert an order and return its id. Raises DuplicateHoldOrder when the hold
        already has an order (orders.hold_id is unique: a racing request won)."""

    def get(self, order_id: int) -> Order | None: ...

    def transition(self, order_id: int, current: OrderStatus, new: OrderStatus, now: datetime) -> bool:
        """current -> new if the order is still in `current`. True if this call made it."""

    def overdue(self, now: datetime, limit: int, product_id: int | None = None) -> list[Order]:
        """Pending orders whose payment is due, locked; skipped or waited for as in
        HoldRepository.expired."""



class DuplicateHoldOrder(Exception):
    """An order for this hold already exists (a racing request won)."""


class PaymentEventRepository(Protocol):
    """Webhook deliveries, unique by idempotency key."""

    def add(self, event: PaymentEvent) -> bool:
        """Insert; False (nothing written) when the key exists. A concurrent insert of the
        same key waits for the other transaction and then returns False or True."""

    def get_by_key(self, key: str) -> PaymentEvent | None: ...

    def deferred(self, limit: int, order_id: int | None = None) -> list[PaymentEvent]:
        """Deferred events whose order now exists, oldest first."""

    def finish(self, key: str, outcome: WebhookOutcome, response_status: str, http_status: int, now: datetime) -> None:
        """Record the first response of a delivery inserted in this transaction."""

    def resolve_deferred(self, event_id: int, outcome: WebhookOutcome, now: datetime) -> bool:
        """deferred -> outcome. True if this call made the change (exactly-once guard)."""


@attrs.frozen
class StoredResponse:
    """A response recorded under an idempotency key."""

    status: int
    body: str


@attrs.frozen
class IdempotencyClaim:
    """What claiming a key found: a fresh claim, or the earlier request's state."""

    fresh: bool
    fingerprint: str | None = None
    response: StoredResponse | None = None  # None while the first request is in flight
    #: For a fresh claim, the claim's own timestamp: proof of ownership for complete/abandon.
    #: A request that lost its claim to a takeover can then neither store nor drop it.
    token: datetime | None = None


class IdempotencyRepository(Protocol):
    """Idempotency-Key records for the POST endpoints, kept at least 24 hours."""

    def claim(self, scope: str, key: str, fingerprint: str, now: datetime, stale_before: datetime) -> IdempotencyClaim:
        """Record the key as in flight (committed at once, outside any use case), or
        report what is there. An in-flight claim older than `stale_before` is taken over:
        its request died before committing, so nothing of it took effect (and if it is
        still alive, `complete` now refuses it, so its effect rolls back)."""

    def complete(self, scope: str, key: str, token: datetime, response: StoredResponse, now: datetime) -> bool:
        """Store the response if the claim `token` still owns the key; call inside the use
        case's transaction. False (nothing stored) when the claim was taken over."""

    def abandon(self, scope: str, key: str, token: datetime) -> None:
        """Free an in-flight claim still owned by `token`, whose request failed without effect."""

    def purge(self, older_than: datetime) -> int: ...


class EventLog(Protocol):
    """Business events for /api/logs, written in the transaction that caused them."""

    def record(self, event: str, data: dict[str, Any], now: datetime) -> None: ...

    def list(self, limit: int, event: str | None = None, before_id: int | None = None) -> list[LoggedEvent]:
        """Newest first."""


class Outbox(Protocol):
    """Durable task messages written in the same transaction as the change they follow."""

    def add(self, task: str, payload: dict[str, Any], now: datetime, retry_at: datetime) -> TaskMessage:
        """The relay republishes the message from `retry_at` on until it is completed."""

    def complete(self, message_id: int, now: datetime) -> None: ...

    def due(self, now: datetime, limit: int) -> list[TaskMessage]:
        """Uncompleted messages whose retry time passed; rows other relays hold locked are
        skipped (SKIP LOCKED)."""

    def postpone(self, message_ids: Sequence[int], retry_at: datetime) -> None: ...


class UnitOfWork(Protocol):
    """One transaction over every repository.

    `with uow:` begins; `uow.commit()` makes the writes durable atomically, then hands
    new outbox messages to the publisher and invalidates changed products in the cache.
    Leaving the block without commit rolls back. Raises TransientStorageError when the
    storage asks for a retry (deadlock): nothing was written.
    """

    products: ProductRepository
    holds: HoldRepository
    orders: OrderRepository
    payments: PaymentEventRepository
    idempotency: IdempotencyRepository
    events: EventLog
    outbox: Outbox

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...

    def product_changed(self, product_id: int) -> None:
        """Note that a product row changed, so its cache entry goes after commit."""

    def message_added(self, message: TaskMessage) -> None:
        """Publish this message after commit (the outbox adapter calls it on add)."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class StorageProbe(Protocol):
    """Readiness checks of the backing services."""

    def check(self) -> dict[str, str | None]:
        """Component name -> None when it answers, else a short reason."""
