"""In-memory adapters for unit tests: every repository port over one shared store.

Each conditional method states the same guard as the WHERE clause of its SQL twin in
stockade.adapters.sql.repositories; a transaction is a deep-copied snapshot of the store
taken under one re-entrant lock, so transactions are serial and a rollback is exact.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Callable, Sequence
from datetime import datetime
from decimal import Decimal
from typing import Any

import attrs

from stockade.adapters.clock import FixedClock
from stockade.adapters.memory_cache import LocalVersions, VersionedProductCache
from stockade.application.commands import HoldSearch, OrderSearch
from stockade.application.facade import Shop
from stockade.application.ports import (
    ClaimDrift,
    ConditionFailed,
    DueMessage,
    DuplicateHoldOrder,
    IdempotencyKeyTaken,
    KeyRecord,
    LatestStart,
    OutboxBacklog,
    ProductCache,
    Ref,
    RequestKey,
    TaskMessage,
    TaskPublisher,
    resolved,
)
from stockade.application.services import Deps, Policy
from stockade.application.tracing import traced
from stockade.application.unit_of_work import AbstractUnitOfWork
from stockade.domain.errors import StockAdjustmentRefused
from stockade.domain.model import (
    CLAIMING,
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


class ConstraintViolation(Exception):
    """A write the database's CHECK or UNIQUE constraints would have refused."""


@attrs.define
class IdempotencyRow:
    fingerprint: str
    claimed_at: datetime
    answer: dict[str, Any] | None = None


@attrs.define
class OutboxRow:
    message: TaskMessage
    created_at: datetime
    retry_at: datetime
    attempts: int = 0
    completed_at: datetime | None = None
    started_at: datetime | None = None
    deliveries: int = 0
    resent_at: datetime | None = None


@attrs.define
class Tables:
    """The rows; deep-copied as a whole to snapshot a transaction."""

    products: dict[int, Product] = attrs.Factory(dict)
    holds: dict[int, Hold] = attrs.Factory(dict)
    orders: dict[int, Order] = attrs.Factory(dict)
    payments: dict[int, PaymentEvent] = attrs.Factory(dict)
    idempotency: dict[tuple[str, str], IdempotencyRow] = attrs.Factory(dict)
    events: list[LoggedEvent] = attrs.Factory(list)
    adjustments: dict[int, StockAdjustment] = attrs.Factory(dict)
    outbox: dict[int, OutboxRow] = attrs.Factory(dict)
    #: (product_id, customer_id) -> units claimed
    claims: dict[tuple[int, str], int] = attrs.Factory(dict)
    last_ids: dict[str, int] = attrs.Factory(dict)

    def next_id(self, table: str) -> int:
        self.last_ids[table] = self.last_ids.get(table, 0) + 1
        return self.last_ids[table]


class InMemoryStore:
    """The database: tables plus the lock every transaction holds from begin to end."""

    def __init__(self) -> None:
        self.tables = Tables()
        self.lock = threading.RLock()

    # Read helpers for assertions (they bypass transactions, like a DBA's SELECT).
    def product(self, product_id: int) -> Product:
        return self.tables.products[product_id]

    def hold(self, hold_id: int) -> Hold:
        return self.tables.holds[hold_id]

    def order(self, order_id: int) -> Order:
        return self.tables.orders[order_id]

    def events(self, name: str | None = None) -> list[LoggedEvent]:
        """Events oldest first, optionally only those called `name`."""
        return [e for e in self.tables.events if name is None or e.event == name]

    def messages(self, task: str | None = None) -> list[OutboxRow]:
        return [r for r in self.tables.outbox.values() if task is None or r.message.task == task]

    def corrupt_product(self, product_id: int, **values: Any) -> None:
        """Overwrite columns by hand, skipping every guard (to simulate drift)."""
        self.tables.products[product_id] = attrs.evolve(self.tables.products[product_id], **values)


class _Repository:
    def __init__(self, uow: InMemoryUnitOfWork) -> None:
        self._uow = uow

    @property
    def t(self) -> Tables:
        return self._uow.tables()


def _check_product(product: Product) -> Product:
    """The CHECK constraints of the products table."""
    if product.stock < 0 or product.reserved < 0 or product.stock < product.reserved:
        raise ConstraintViolation(f"product {product.id}: stock {product.stock}, reserved {product.reserved}")
    return product


class InMemoryProductRepository(_Repository):
    def add(self, name: str, price: Decimal, stock: int, max_per_customer: int | None, now: datetime) -> Product:
        product = _check_product(
            Product(self.t.next_id("products"), name, price, stock, 0, 1, now, now, max_per_customer=max_per_customer)
        )
        self.t.products[product.id] = product
        return product

    def get(self, product_id: int, *, include_deleted: bool = False) -> Product | None:
        product = self.t.products.get(product_id)
        if product is None or (product.deleted_at is not None and not include_deleted):
            return None
        return product

    def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        return {i: self.t.products[i] for i in product_ids if i in self.t.products}

    def list(self, limit: int, after_id: int) -> list[Product]:
        live = [p for p in self.t.products.values() if p.deleted_at is None and p.id > after_id]
        return sorted(live, key=lambda p: p.id)[:limit]

    def _write(self, product: Product, now: datetime, **values: Any) -> None:
        self.t.products[product.id] = _check_product(
            attrs.evolve(product, version=product.version + 1, updated_at=now, **values)
        )
        self._uow.product_changed(product.id)

    def _live(self, product_id: int) -> Product | None:
        return self.get(product_id)

    def lock(self, product_id: int) -> Product | None:
        return self._live(product_id)  # transactions are serial: every row is locked

    def snapshot(self, product_id: int) -> ProductSnapshot | None:
        product = self.get(product_id)
        if product is None:
            return None
        lapses = [
            h.expires_at for h in self.t.holds.values() if h.product_id == product_id and h.status is HoldStatus.ACTIVE
        ]
        lapses += [
            o.payment_due_at
            for o in self.t.orders.values()
            if o.product_id == product_id and o.status is OrderStatus.PENDING and o.payment_due_at
        ]
        return ProductSnapshot(product, min(lapses) if lapses else None)

    def update(self, product_id: int, changes: dict[str, Any], now: datetime) -> bool:
        product = self._live(product_id)
        if product is None:
            return False
        if "stock" in changes and product.reserved > changes["stock"]:
            return False
        self._write(product, now, **changes)
        return True

    def soft_delete(self, product_id: int, now: datetime) -> bool:
        product = self._live(product_id)
        if product is None or product.reserved != 0:
            return False
        self._write(product, now, deleted_at=now)
        return True

    def take(self, product: Product, quantity: int, now: datetime) -> int:
        live = self._live(product.id)
        if (
            live is None
            or live.stock - live.reserved < quantity
            or (live.price, live.name, live.max_per_customer) != (product.price, product.name, product.max_per_customer)
        ):
            raise ConditionFailed()
        self._write(live, now, stock=live.stock - quantity)
        return live.stock - quantity

    def reserve(self, product_id: int, quantity: int, max_per_customer: int | None, now: datetime) -> None:
        product = self._live(product_id)
        if (
            product is None
            or product.stock - product.reserved < quantity
            or product.max_per_customer != max_per_customer
        ):
            raise ConditionFailed()
        self._write(product, now, reserved=product.reserved + quantity)

    def unreserve(self, product_id: int, quantity: int, now: datetime) -> None:
        product = self.t.products.get(product_id)
        if product is None or product.reserved < quantity:
            raise RuntimeError(f"product {product_id}: cannot give back {quantity} reserved units")
        self._write(product, now, reserved=product.reserved - quantity)

    def restock(self, product_id: int, quantity: int, now: datetime) -> None:
        product = self.t.products[product_id]
        self._write(product, now, stock=product.stock + quantity)

    def adjust(self, product_id: int, delta: int, now: datetime) -> int:
        product = self._live(product_id)
        if product is None:
            raise ConditionFailed()
        try:
            stock = product.levels.adjust(delta).stock
        except StockAdjustmentRefused:
            raise ConditionFailed() from None
        self._write(product, now, stock=stock)
        return stock

    def settle(self, product_id: int, quantity: int, now: datetime) -> None:
        product = self.t.products.get(product_id)
        if product is None or product.reserved < quantity or product.stock < quantity:
            raise RuntimeError(f"product {product_id}: cannot settle {quantity} reserved units")
        self._write(product, now, stock=product.stock - quantity, reserved=product.reserved - quantity)

    def audit(self) -> list[tuple[Product, int]]:
        rows = []
        for product in sorted(self.t.products.values(), key=lambda p: p.id):
            held = sum(
                h.quantity
                for h in self.t.holds.values()
                if h.product_id == product.id and h.status is HoldStatus.ACTIVE
            )
            pending = sum(
                o.quantity
                for o in self.t.orders.values()
                if o.product_id == product.id and o.status is OrderStatus.PENDING
            )
            rows.append((product, held + pending))
        return rows


class InMemoryHoldRepository(_Repository):
    def add(self, product_id: int, quantity: int, customer_id: str | None, expires_at: datetime, now: datetime) -> Hold:
        if quantity <= 0:
            raise ConstraintViolation("hold quantity must be positive")
        if product_id not in self.t.products:
            raise ConstraintViolation(f"no product {product_id}")
        hold = Hold(
            self.t.next_id("holds"), product_id, quantity, HoldStatus.ACTIVE, expires_at, None, now, now, customer_id
        )
        self.t.holds[hold.id] = hold
        return hold

    def get(self, hold_id: int) -> Hold | None:
        return self.t.holds.get(hold_id)

    def search(self, search: HoldSearch, now: datetime) -> list[Hold]:
        found = [
            h
            for h in self.t.holds.values()
            if h.id > search.after_id
            and (search.status is None or h.status_at(now) is search.status)
            and (search.product_id is None or h.product_id == search.product_id)
            and (search.customer_id is None or h.customer_id == search.customer_id)
        ]
        return sorted(found, key=lambda h: h.id)[: search.limit]

    def use(self, hold: Hold, order_id: int | Ref, now: datetime) -> None:
        current = self.t.holds.get(hold.id)
        if current is None or current.status is not HoldStatus.ACTIVE or not current.expires_at > now:
            raise ConditionFailed()
        self.t.holds[hold.id] = attrs.evolve(current, status=HoldStatus.USED, order_id=order_id, updated_at=now)
        self._uow.product_changed(hold.product_id)

    def end(self, hold_id: int, status: HoldStatus, now: datetime) -> bool:
        hold = self.t.holds.get(hold_id)
        if hold is None or hold.status is not HoldStatus.ACTIVE:
            return False
        self.t.holds[hold_id] = attrs.evolve(hold, status=status, updated_at=now)
        return True

    def extend(self, hold: Hold, expires_at: datetime, now: datetime) -> bool:
        current = self.t.holds.get(hold.id)
        if (
            current is None
            or current.status is not HoldStatus.ACTIVE
            or current.expires_at != hold.expires_at
            or not current.expires_at > now
        ):
            return False
        self.t.holds[hold.id] = attrs.evolve(current, expires_at=expires_at, updated_at=now)
        return True

    def expired(self, now: datetime, limit: int, product_id: int | None = None) -> list[Hold]:
        due = [
            h
            for h in self.t.holds.values()
            if h.status is HoldStatus.ACTIVE
            and h.expires_at <= now
            and (product_id is None or h.product_id == product_id)
        ]
        return sorted(due, key=lambda h: h.id)[:limit]

    def count_active(self) -> int:
        return sum(1 for h in self.t.holds.values() if h.status is HoldStatus.ACTIVE)


class InMemoryOrderRepository(_Repository):
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
    ) -> int:
        if quantity <= 0:
            raise ConstraintViolation("order quantity must be positive")
        if product_id not in self.t.products:
            raise ConstraintViolation(f"no product {product_id}")
        if hold_id is not None and any(o.hold_id == hold_id for o in self.t.orders.values()):
            raise DuplicateHoldOrder(hold_id)
        order_id = self.t.next_id("orders")
        self.t.orders[order_id] = Order(
            order_id, product_id, hold_id, quantity, total_price, status, payment_due_at, now, now, customer_id
        )
        return order_id

    def get(self, order_id: int) -> Order | None:
        return self.t.orders.get(order_id)

    def search(self, search: OrderSearch) -> list[Order]:
        found = [
            o
            for o in self.t.orders.values()
            if o.id > search.after_id
            and (search.status is None or o.status is search.status)
            and (search.product_id is None or o.product_id == search.product_id)
            and (search.customer_id is None or o.customer_id == search.customer_id)
            and (
                search.refund_status is None
                or (o.refund_status is not None and o.refund_status.value == search.refund_status)
            )
        ]
        return sorted(found, key=lambda o: o.id)[: search.limit]

    def transition(
        self,
        order_id: int,
        current: OrderStatus,
        new: OrderStatus,
        now: datetime,
        *,
        refund_status: RefundStatus | None = None,
    ) -> bool:
        order = self.t.orders.get(order_id)
        if order is None or order.status is not current:
            return False
        refund = refund_status or order.refund_status
        self.t.orders[order_id] = attrs.evolve(order, status=new, refund_status=refund, updated_at=now)
        return True

    def require_refund(self, order_id: int, now: datetime) -> bool:
        return self._set_refund_status(order_id, (None, RefundStatus.REFUNDED), RefundStatus.REQUIRED, now)

    def mark_refunded(self, order_id: int, now: datetime) -> bool:
        return self._set_refund_status(order_id, (RefundStatus.REQUIRED,), RefundStatus.REFUNDED, now)

    def _set_refund_status(
        self, order_id: int, current: tuple[RefundStatus | None, ...], new: RefundStatus, now: datetime
    ) -> bool:
        order = self.t.orders.get(order_id)
        if order is None or order.status is not OrderStatus.CANCELLED or order.refund_status not in current:
            return False
        self.t.orders[order_id] = attrs.evolve(order, refund_status=new, updated_at=now)
        return True

    def overdue(self, now: datetime, limit: int, product_id: int | None = None) -> list[Order]:
        due = [
            o
            for o in self.t.orders.values()
            if o.status is OrderStatus.PENDING
            and o.payment_due_at is not None
            and o.payment_due_at <= now
            and (product_id is None or o.product_id == product_id)
        ]
        return sorted(due, key=lambda o: o.id)[:limit]

    def count_pending(self) -> int:
        return sum(1 for o in self.t.orders.values() if o.status is OrderStatus.PENDING)


class InMemoryClaimRepository(_Repository):
    def add(self, product_id: int, customer_id: str, quantity: int, max_per_customer: int | None) -> None:
        claimed = self.t.claims.get((product_id, customer_id), 0)
        if ClaimStanding(claimed, max_per_customer).exceeded_by(quantity):
            raise ConditionFailed()
        self.t.claims[product_id, customer_id] = claimed + quantity

    def give_back(self, product_id: int, customer_id: str, quantity: int) -> None:
        claimed = self.t.claims.get((product_id, customer_id), 0)
        if claimed < quantity:
            raise RuntimeError(f"customer {customer_id!r} of product {product_id}: cannot give back {quantity} units")
        self.t.claims[product_id, customer_id] = claimed - quantity

    def standing(self, product_id: int, customer_id: str) -> ClaimStanding:
        return ClaimStanding(
            self.t.claims.get((product_id, customer_id), 0), self.t.products[product_id].max_per_customer
        )

    def audit(self) -> list[ClaimDrift]:
        expected: dict[tuple[int, str], int] = {}
        for h in self.t.holds.values():
            if h.customer_id is not None and h.status is HoldStatus.ACTIVE:
                expected[h.product_id, h.customer_id] = expected.get((h.product_id, h.customer_id), 0) + h.quantity
        for o in self.t.orders.values():
            if o.customer_id is not None and o.status in CLAIMING:
                expected[o.product_id, o.customer_id] = expected.get((o.product_id, o.customer_id), 0) + o.quantity
        keys = sorted(set(expected) | set(self.t.claims))
        return [
            ClaimDrift(p, c, self.t.claims.get((p, c), 0), expected.get((p, c), 0))
            for p, c in keys
            if self.t.claims.get((p, c), 0) != expected.get((p, c), 0)
        ]


class InMemoryPaymentEventRepository(_Repository):
    def _by_key(self, key: str) -> PaymentEvent | None:
        return next((e for e in self.t.payments.values() if e.idempotency_key == key), None)

    def add(self, event: PaymentEvent) -> bool:
        if self._by_key(event.idempotency_key) is not None:
            return False
        event_id = self.t.next_id("payments")
        self.t.payments[event_id] = attrs.evolve(event, id=event_id, applied_at=None)
        return True

    def get_by_key(self, key: str) -> PaymentEvent | None:
        return self._by_key(key)

    def finish(self, key: str, outcome: WebhookOutcome, response_status: str, now: datetime) -> None:
        event = self._by_key(key)
        if event is None:
            return
        applied_at = event.applied_at if outcome is WebhookOutcome.DEFERRED else now
        self.t.payments[event.id] = attrs.evolve(
            event, outcome=outcome, first_outcome=outcome, response_status=response_status, applied_at=applied_at
        )

    def has_deferred(self, order_id: int | Ref) -> Ref:
        wanted = order_id.value if isinstance(order_id, Ref) else order_id
        return Ref(any(e.order_id == wanted and e.outcome is WebhookOutcome.DEFERRED for e in self.t.payments.values()))

    def deferred(self, limit: int, order_id: int | None = None) -> list[PaymentEvent]:
        found = [
            e
            for e in self.t.payments.values()
            if e.outcome is WebhookOutcome.DEFERRED
            and e.order_id in self.t.orders
            and (order_id is None or e.order_id == order_id)
        ]
        return sorted(found, key=lambda e: e.id)[:limit]

    def resolve_deferred(self, event_id: int, outcome: WebhookOutcome, now: datetime) -> bool:
        event = self.t.payments.get(event_id)
        if event is None or event.outcome is not WebhookOutcome.DEFERRED:
            return False
        self.t.payments[event_id] = attrs.evolve(event, outcome=outcome, applied_at=now)
        return True

    def count_deferred(self) -> int:
        return sum(1 for e in self.t.payments.values() if e.outcome is WebhookOutcome.DEFERRED)


class InMemoryIdempotencyRepository(_Repository):
    def claim(self, key: RequestKey, now: datetime, answer: dict[str, Any] | None = None) -> None:
        if (key.scope, key.key) in self.t.idempotency:
            raise IdempotencyKeyTaken()
        self.t.idempotency[(key.scope, key.key)] = IdempotencyRow(key.fingerprint, now, _as_stored_json(answer))

    def find(self, key: RequestKey) -> KeyRecord | None:
        row = self.t.idempotency.get((key.scope, key.key))
        return None if row is None or row.answer is None else KeyRecord(row.fingerprint, row.answer)

    def purge(self, older_than: datetime) -> int:
        old = [k for k, row in self.t.idempotency.items() if row.claimed_at < older_than]
        for k in old:
            del self.t.idempotency[k]
        return len(old)


def _as_stored_json(data: Any) -> Any:
    """What a JSON column gives back (the SQL adapter round-trips through json)."""
    return json.loads(json.dumps(resolved(data), default=str))


class InMemoryAdjustmentRepository(_Repository):
    def add(self, product_id: int, delta: int, reason: str, stock_after: int | Ref, now: datetime) -> StockAdjustment:
        if delta == 0 or resolved(stock_after) < 0:
            raise ConstraintViolation(f"adjustment of {delta} to {stock_after}")
        adjustment = StockAdjustment(
            self.t.next_id("adjustments"), product_id, delta, reason, resolved(stock_after), now
        )
        self.t.adjustments[adjustment.id] = adjustment
        return adjustment

    def list(self, product_id: int, limit: int, before_id: int | None = None) -> list[StockAdjustment]:
        found = [
            a
            for a in self.t.adjustments.values()
            if a.product_id == product_id and (before_id is None or a.id < before_id)
        ]
        return sorted(found, key=lambda a: a.id, reverse=True)[:limit]


class InMemoryEventLog(_Repository):
    def record(self, event: str, data: dict[str, Any], now: datetime) -> None:
        self.t.events.append(LoggedEvent(self.t.next_id("events"), event, _as_stored_json(data), now))

    def list(self, limit: int, event: str | None = None, before_id: int | None = None) -> list[LoggedEvent]:
        found = [
            e for e in self.t.events if (event is None or e.event == event) and (before_id is None or e.id < before_id)
        ]
        return sorted(found, key=lambda e: e.id, reverse=True)[:limit]


class InMemoryOutbox(_Repository):
    def __init__(self, uow: InMemoryUnitOfWork, on_add: Callable[[TaskMessage], None]) -> None:
        super().__init__(uow)
        self._on_add = on_add

    def add(self, task: str, payload: dict[str, Any], now: datetime, retry_at: datetime) -> TaskMessage:
        message = TaskMessage(self.t.next_id("outbox"), task, _as_stored_json(traced(payload)))
        self.t.outbox[message.id] = OutboxRow(message, now, retry_at)
        self._on_add(message)
        return message

    def start(self, message_id: int, now: datetime, lease_until: datetime) -> None:
        row = self.t.outbox[message_id]
        row.started_at, row.retry_at, row.deliveries = now, lease_until, row.deliveries + 1

    def complete(self, message_id: int, now: datetime) -> None:
        row = self.t.outbox.get(message_id)
        if row is not None and row.completed_at is None:
            row.completed_at = now

    def due(self, now: datetime, limit: int) -> list[DueMessage]:
        rows = sorted(
            (r for r in self.t.outbox.values() if r.completed_at is None and r.retry_at <= now),
            key=lambda r: r.message.id,
        )
        return [DueMessage(r.message, r.started_at, r.resent_at or r.created_at) for r in rows[:limit]]

    def latest_start(self) -> LatestStart | None:
        started = [r for r in self.t.outbox.values() if r.started_at is not None]
        if not started:
            return None
        latest = max(started, key=lambda r: r.started_at)
        return LatestStart(latest.started_at, latest.resent_at or latest.created_at)

    def postpone(self, message_ids: Sequence[int], retry_at: datetime, *, resent_at: datetime | None) -> None:
        for message_id in message_ids:
            row = self.t.outbox[message_id]
            row.retry_at = retry_at
            if resent_at is not None:
                row.resent_at, row.attempts = resent_at, row.attempts + 1

    def backlog(self) -> OutboxBacklog:
        pending = [r for r in self.t.outbox.values() if r.completed_at is None]
        unstarted = [r.created_at for r in pending if r.started_at is None]
        return OutboxBacklog(
            len(pending), min((r.created_at for r in pending), default=None), min(unstarted, default=None)
        )


class InMemoryUnitOfWork(AbstractUnitOfWork):
    """One serial transaction over the store: snapshot on begin, restore on rollback."""

    def __init__(
        self, store: InMemoryStore, publisher: TaskPublisher, cache: ProductCache, *, read_only: bool = False
    ) -> None:
        super().__init__(publisher, cache)
        self.store = store
        self.read_only = read_only
        self._snapshot: Tables | None = None
        self.products = InMemoryProductRepository(self)
        self.holds = InMemoryHoldRepository(self)
        self.orders = InMemoryOrderRepository(self)
        self.claims = InMemoryClaimRepository(self)
        self.payments = InMemoryPaymentEventRepository(self)
        self.idempotency = InMemoryIdempotencyRepository(self)
        self.adjustments = InMemoryAdjustmentRepository(self)
        self.events = InMemoryEventLog(self)
        self.outbox = InMemoryOutbox(self, self.message_added)

    def tables(self) -> Tables:
        if self._snapshot is None:
            raise RuntimeError("repository used outside its transaction")
        return self.store.tables

    def _begin(self) -> None:
        self.store.lock.acquire()
        self._snapshot = copy.deepcopy(self.store.tables)

    def _commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        self._end()

    def _rollback(self) -> None:
        self.store.tables = self._snapshot
        self._end()

    def _end(self) -> None:
        self._snapshot = None
        self.store.lock.release()


class RecordingPublisher:
    """A TaskPublisher that keeps what it was given, in order."""

    def __init__(self) -> None:
        self.published: list[TaskMessage] = []

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        self.published.extend(messages)

    def tasks(self, task: str) -> list[TaskMessage]:
        return [m for m in self.published if m.task == task]


def make_shop(
    clock: FixedClock | None = None, **policy: Any
) -> tuple[Shop, InMemoryStore, RecordingPublisher, FixedClock]:
    """A Shop on fresh fakes; `policy` overrides Policy fields (processing takes no time)."""
    store, publisher, cache = InMemoryStore(), RecordingPublisher(), VersionedProductCache(LocalVersions())
    clock = clock or FixedClock()
    deps = Deps(
        uow=lambda: InMemoryUnitOfWork(store, publisher, cache),
        read=lambda: InMemoryUnitOfWork(store, publisher, cache, read_only=True),
        clock=clock,
        cache=cache,
        policy=Policy(**{"processing_seconds": 0, **policy}),
        sleep=lambda seconds: None,
    )
    return Shop(deps), store, publisher, clock
