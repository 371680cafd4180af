"""Ports: what the use cases need from the outside world, each with its contract."""

from __future__ import annotations

import builtins
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any, Protocol

import attrs

from stockade.application.commands import HoldSearch, OrderSearch
from stockade.domain.model import (
    ClaimStanding,
    Hold,
    HoldStatus,
    LoggedEvent,
    Order,
    OrderStatus,
    PaymentEvent,
    Product,
    ProductSnapshot,
    RefundStatus,
    StockAdjustment,
    WebhookOutcome,
)


class TransientStorageError(Exception):
    """The storage refused a transaction for a reason a retry can cure (deadlock, lock wait)."""


class ConditionFailed(Exception):
    """A conditional write matched no row (stock ran out, the state moved on): the whole
    transaction is void. Raised by the statement itself or, where the storage sends the
    transaction in one batch, by `commit`; either way nothing was written."""


class IdempotencyKeyTaken(Exception):
    """Another request already recorded this Idempotency-Key (raised now or by `commit`)."""


class Ref:
    """A value the storage assigns to a write (a new row's id, a counter after an update).

    It is known once the statement ran: at once on storages that run each statement when
    it is called, at commit on those that send the transaction as one batch. Use cases
    may put it anywhere a value goes (ids in payloads, fields of results); the transaction
    runner swaps it for its value after commit.
    """

    __slots__ = ("value",)

    def __init__(self, value: Any = None) -> None:
        self.value = value

    def __repr__(self) -> str:
        return f"Ref({self.value!r})"


#: Types that never hold a Ref: resolved() hands them back as they are, at once.
_PLAIN = frozenset({int, str, bool, float, Decimal, datetime, type(None)})
#: The field names of each class field_names() was asked about (None: not an attrs class).
_FIELDS: dict[type, tuple[str, ...] | None] = {}


def field_names(kind: type) -> tuple[str, ...] | None:
    """The field names of an attrs class, in order; None for any other class. Looked up once
    per class: the hot path walks its results field by field."""
    try:
        return _FIELDS[kind]
    except KeyError:
        names = _FIELDS[kind] = tuple(f.name for f in attrs.fields(kind)) if attrs.has(kind) else None
        return names


def resolved(value: Any) -> Any:
    """`value` with every Ref in it (attrs fields, dict and tuple items) replaced by what it holds."""
    kind = type(value)
    if kind in _PLAIN:
        return value
    if kind is Ref:
        return value.value
    if kind is dict:
        return {k: resolved(v) for k, v in value.items()}
    if kind is tuple:
        return tuple(resolved(v) for v in value)
    names = field_names(kind)
    if names is None:
        return value
    changes = {}
    for name in names:
        current = getattr(value, name)
        if type(current) in _PLAIN:  # most fields: no call
            continue
        new = resolved(current)
        if new is not current:
            changes[name] = new
    return attrs.evolve(value, **changes) if changes else value


class Clock(Protocol):
    """Where time comes from; tests step a fixed clock."""

    def now(self) -> datetime:
        """The current time, timezone-aware UTC, microsecond precision."""


@attrs.frozen
class TaskMessage:
    """A unit of background work, durable in the outbox before it is published."""

    id: int | Ref
    task: str
    payload: dict[str, Any]


class TaskPublisher(Protocol):
    """Hands committed outbox messages to whatever runs tasks."""

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        """Best effort and bounded in time: never raises, never blocks a response for long.

        A message it fails to send stays in the outbox and the relay sends it later.
        """


class ProductCache(Protocol):
    """Product snapshots kept in the serving process's memory; it never decides stock.

    A hit is provably current: every write to a product from any process (API workers, the
    CLI, task workers, the sweeper) invalidates it before that write's response is sent.
    """

    def get(self, product_id: int) -> tuple[ProductSnapshot | None, object]:
        """The current snapshot or None, and a ticket to pass to `fill` after a miss."""

    def fill(self, snapshot: ProductSnapshot, ticket: object) -> None:
        """Keep `snapshot` unless the product was invalidated after `ticket` was taken.

        This closes the race where a slow reader would keep a row older than a write
        whose invalidation it missed.
        """

    def invalidate(self, product_ids: Sequence[int]) -> None:
        """Forget these products everywhere; called after the writing transaction committed."""

    def recent(self, product_id: int) -> ProductSnapshot | None:
        """The last snapshot this process kept of the product, current or not. Never an
        answer by itself: only the basis of a write whose own statement re-checks what it
        relies on (a purchase's UPDATE checks the price, liveness and availability)."""


class ProductRepository(Protocol):
    """Products and their stock levels; every stock change is one conditional statement.

    Every write reports the product to the unit of work, which drops it from every
    process's cache after commit.
    """

    def add(self, name: str, price: Decimal, stock: int, max_per_customer: int | None, now: datetime) -> Product: ...

    def get(self, product_id: int, *, include_deleted: bool = False) -> Product | None: ...

    def lock(self, product_id: int) -> Product | None:
        """The live product, its row locked until the transaction ends (so a write computed
        from it, such as a PUT's stock delta, is exact). None when there is no live product."""

    def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        """These products by id, deleted ones too (their orders keep showing them)."""

    def snapshot(self, product_id: int) -> ProductSnapshot | None:
        """One plain read, no locks: the live product and the earliest lapse of its claims."""

    def list(self, limit: int, after_id: int) -> list[Product]:
        """Live products with id > after_id, ordered by id, at most `limit`."""

    def update(self, product_id: int, changes: dict[str, Any], now: datetime) -> bool:
        """Apply name/price/stock/max_per_customer changes if the product is live and `stock`
        (when given) is not below `reserved`. True if applied."""

    def soft_delete(self, product_id: int, now: datetime) -> bool:
        """Mark the product deleted if it is live and nothing is reserved. True if done."""

    def take(self, product: Product, quantity: int, now: datetime) -> int | Ref:
        """Sell `quantity` units: stock -= q where the product is live, available >= q, and its
        price, name and limit per customer are still those of `product` (the order was charged
        that price, the answer shows that name, the customer's claim was checked against that
        limit). Returns the stock after the sale. Raises ConditionFailed (now or at commit)
        when the row did not match."""

    def reserve(self, product_id: int, quantity: int, max_per_customer: int | None, now: datetime) -> None:
        """Hold `quantity` units: reserved += q where live, available >= q and the limit per
        customer is still `max_per_customer`. Raises ConditionFailed (now or at commit) when
        the row did not match."""

    def unreserve(self, product_id: int, quantity: int, now: datetime) -> None:
        """Give back reserved units (hold released/expired, order cancelled)."""

    def restock(self, product_id: int, quantity: int, now: datetime) -> None:
        """Units of a cancelled sale come back on the shelf: stock += q (deleted or not)."""

    def adjust(self, product_id: int, delta: int, now: datetime) -> int | Ref:
        """stock += delta where the product is live, `available` stays >= 0 and `stock` <= 2^31-1
        (StockLevels.adjust); returns the stock after it. Raises ConditionFailed (now or at
        commit) when the row did not match."""

    def settle(self, product_id: int, quantity: int, now: datetime) -> None:
        """A pending order was paid: stock -= q and reserved -= q."""

    def audit(self) -> builtins.list[tuple[Product, int]]:  # `list` here is the method above
        """Every product, deleted ones too, with the reserved quantity that its active
        holds and pending orders account for, read in one consistent snapshot."""


class HoldRepository(Protocol):
    """Holds; every state change is conditional on the current state."""

    def add(self, product_id: int, quantity: int, customer_id: str | None, expires_at: datetime, now: datetime) -> Hold:
        """The new hold; its id may be a Ref until commit."""

    def get(self, hold_id: int) -> Hold | None: ...

    def search(self, search: HoldSearch, now: datetime) -> list[Hold]:
        """Holds matching `search` (status as it is at `now`) with id > after_id, by id, at most `limit`."""

    def use(self, hold: Hold, order_id: int | Ref, now: datetime) -> None:
        """active -> used (with its order id), only while not expired at `now`.
        Raises ConditionFailed (now or at commit) when the hold was not usable."""

    def end(self, hold_id: int, status: HoldStatus, now: datetime) -> bool:
        """active -> released or expired. True if this call made the change."""

    def extend(self, hold: Hold, expires_at: datetime, now: datetime) -> bool:
        """Move the expiry of `hold` to `expires_at`, only while it is active, unexpired at
        `now` and still expires when `hold` said (so racing extensions never lose one another,
        and none revives a hold the sweeper is expiring). True if this call made the change.

        The product's cached snapshot stays: its earliest lapse can only be earlier than the
        truth now, which makes it prove fewer refusals (a buyer then reads again), never more."""

    def expired(self, now: datetime, limit: int, product_id: int | None = None) -> list[Hold]:
        """Active holds past their TTL, locked. Rows another transaction holds locked are
        skipped in a sweep (no product_id) and waited for in a buyer's reclaim (product_id)."""

    def count_active(self) -> int:
        """Holds in status active (expired ones the sweep has not reached included)."""


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
        customer_id: str | None = None,
    ) -> int | Ref:
        """Insert an order and return its id (a Ref until commit on batching storages).
        Raises DuplicateHoldOrder (now or at commit) when the hold already has an order
        (orders.hold_id is unique: a racing request won)."""

    def get(self, order_id: int) -> Order | None: ...

    def transition(
        self,
        order_id: int,
        current: OrderStatus,
        new: OrderStatus,
        now: datetime,
        *,
        refund_status: RefundStatus | None = None,
    ) -> bool:
        """current -> new if the order is still in `current` (and, when given, its refund
        status set in the same statement). True if this call made it."""

    def require_refund(self, order_id: int, now: datetime) -> bool:
        """A cancelled order was paid after all: refund_status -> required (from none, or from
        refunded: a second payment to give back). True if this call made the change."""

    def mark_refunded(self, order_id: int, now: datetime) -> bool:
        """refund_status required -> refunded. True if this call made the change."""

    def search(self, search: OrderSearch) -> list[Order]:
        """Orders matching `search` with id > after_id, by id, at most `limit`."""

    def overdue(self, now: datetime, limit: int, product_id: int | None = None) -> list[Order]:
        """Pending orders whose payment is due, locked; skipped or waited for as in
        HoldRepository.expired."""

    def count_pending(self) -> int: ...


class ClaimRepository(Protocol):
    """Each customer's claim on each product (contract section 8): the units of their active
    holds and of their orders in created, pending, paid or processed. A claim changes in the
    transaction that takes or gives back those units."""

    def add(self, product_id: int, customer_id: str, quantity: int, max_per_customer: int | None) -> None:
        """claimed += q where it stays within `max_per_customer` (None: no limit): one
        conditional statement on the claim's row, which serialises one customer's concurrent
        claims. Raises ConditionFailed (now or at commit) when it would pass the limit."""

    def give_back(self, product_id: int, customer_id: str, quantity: int) -> None:
        """claimed -= q: a hold released or expired, an order cancelled."""

    def standing(self, product_id: int, customer_id: str) -> ClaimStanding:
        """The customer's claim now (0 when none) and the product's limit, read together."""

    def audit(self) -> list[ClaimDrift]:
        """Every claim that differs from its customer's active holds and claiming orders, read
        in one consistent snapshot."""


@attrs.frozen
class ClaimDrift:
    """A customer's claim on a product that its holds and orders do not account for."""

    product_id: int
    customer_id: str
    claimed: int
    expected: int


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

    def has_deferred(self, order_id: int | Ref) -> Ref:
        """Whether deferred events wait for this order (known at commit on batching storages)."""

    def finish(self, key: str, outcome: WebhookOutcome, response_status: str, now: datetime) -> None:
        """Record the first outcome of a delivery inserted in this transaction."""

    def resolve_deferred(self, event_id: int, outcome: WebhookOutcome, now: datetime) -> bool:
        """deferred -> outcome. True if this call made the change (exactly-once guard)."""

    def count_deferred(self) -> int:
        """Deliveries still waiting for their order."""


@attrs.frozen
class RequestKey:
    """An Idempotency-Key as a use case sees it: where it applies, and what it was sent with."""

    scope: str
    key: str
    #: a digest of the command: the same key with another command is refused
    fingerprint: str


@attrs.frozen
class KeyRecord:
    """What an Idempotency-Key recorded: the command's fingerprint and its answer."""

    fingerprint: str
    #: the encoded domain result or refusal (stockade.application.records)
    answer: dict[str, Any]


class IdempotencyRepository(Protocol):
    """Idempotency-Key records, kept at least 24 hours; (scope, key) is unique."""

    def claim(self, key: RequestKey, now: datetime, answer: dict[str, Any] | None = None) -> None:
        """Insert the key with its answer, last in the transaction of the effect it guards
        (the answer may hold Refs to that effect's new rows and reported values). Raises
        IdempotencyKeyTaken, now or at commit, when the key is recorded: the transaction,
        effect included, then rolls back. A concurrent claim of the same key waits for the
        other transaction to end first."""

    def find(self, key: RequestKey) -> KeyRecord | None: ...

    def purge(self, older_than: datetime) -> int: ...


class AdjustmentRepository(Protocol):
    """The audit trail of stock: one row per adjustment, written with the change it records."""

    def add(self, product_id: int, delta: int, reason: str, stock_after: int | Ref, now: datetime) -> StockAdjustment:
        """The new row; its id (and `stock_after`) may be Refs until commit."""

    def list(self, product_id: int, limit: int, before_id: int | None = None) -> list[StockAdjustment]:
        """The product's adjustments with id < before_id, newest first, at most `limit`."""


class EventLog(Protocol):
    """Business events for /api/logs, written in the transaction that caused them."""

    def record(self, event: str, data: dict[str, Any], now: datetime) -> None: ...

    def list(self, limit: int, event: str | None = None, before_id: int | None = None) -> list[LoggedEvent]:
        """Newest first."""


@attrs.frozen
class DueMessage:
    """An uncompleted outbox message whose retry time passed, as the relay sees it."""

    message: TaskMessage
    #: when a task last started it (its lease ran out since); None: no task ever started it
    started_at: datetime | None
    #: when it was last sent: at creation, or by the relay since
    sent_at: datetime


@attrs.frozen
class LatestStart:
    """The outbox message a task started most recently: how far the queue has moved."""

    started_at: datetime
    #: when that message was last sent; a queue is first in, first out
    sent_at: datetime


@attrs.frozen
class OutboxBacklog:
    """What waits in the outbox, for the gauges."""

    pending: int
    #: created_at of the oldest uncompleted message, None when there is none
    oldest_pending_at: datetime | None
    #: created_at of the oldest message no task has started yet, None when there is none
    oldest_unstarted_at: datetime | None


class Outbox(Protocol):
    """Durable task messages written in the same transaction as the change they follow."""

    def add(self, task: str, payload: dict[str, Any], now: datetime, retry_at: datetime) -> TaskMessage:
        """The relay considers the message from `retry_at` on until it is completed.
        The message's id may be a Ref until commit. The stored payload also names the request
        being served, if any (`tracing.traced`), so the task's log lines carry its id."""

    def start(self, message_id: int, now: datetime, lease_until: datetime) -> None:
        """A task starts the message: record the start (and count the delivery), and keep
        the relay away from it until `lease_until`."""

    def complete(self, message_id: int, now: datetime) -> None: ...

    def due(self, now: datetime, limit: int) -> list[DueMessage]:
        """Uncompleted messages whose retry time passed, oldest first; rows other relays
        hold locked are skipped (SKIP LOCKED)."""

    def latest_start(self) -> LatestStart | None:
        """The message started most recently, None when no task ever started one."""

    def postpone(self, message_ids: Sequence[int], retry_at: datetime, *, resent_at: datetime | None) -> None:
        """Look at these messages again from `retry_at` on; with `resent_at`, the relay sent
        them again at that moment (counted in `attempts`)."""

    def backlog(self) -> OutboxBacklog: ...


class UnitOfWork(Protocol):
    """One transaction over every repository.

    `with uow:` begins; `uow.commit()` makes the writes durable atomically, then hands
    new outbox messages to the publisher and invalidates changed products in the cache.
    Leaving the block without commit rolls back. Raises TransientStorageError when the
    storage asks for a retry (deadlock), ConditionFailed when a conditional write did
    not match: nothing was written. Use `stockade.application.services.transaction`
    rather than driving it by hand.
    """

    products: ProductRepository
    holds: HoldRepository
    orders: OrderRepository
    claims: ClaimRepository
    payments: PaymentEventRepository
    idempotency: IdempotencyRepository
    adjustments: AdjustmentRepository
    events: EventLog
    outbox: Outbox

    def __enter__(self) -> UnitOfWork: ...

    def __exit__(self, *exc: object) -> None: ...

    def commit(self) -> None: ...

    def product_changed(self, product_id: int) -> None:
        """Note that a product's row or claims changed (repositories call it), so every
        process drops it from memory after commit."""

    def message_added(self, message: TaskMessage) -> None:
        """Publish this message after commit (the outbox adapter calls it on add)."""


class UnitOfWorkFactory(Protocol):
    def __call__(self) -> UnitOfWork: ...


class StorageProbe(Protocol):
    """Readiness checks of the backing services."""

    def check(self) -> dict[str, str | None]:
        """Component name -> None when it answers, else a short reason."""
