"""SQL repositories: row <-> entity functions and one conditional statement per change."""

from __future__ import annotations

import builtins
import functools
import hashlib
import json
from collections.abc import Sequence
from datetime import datetime, timezone
from decimal import Decimal
from typing import Any, overload

import sqlalchemy as sa
from sqlalchemy.dialects import mysql, sqlite

from stockade.adapters.sql.engine import is_duplicate_key
from stockade.adapters.sql.session import Combine, Json, Session, reported
from stockade.adapters.sql.tables import (
    customer_claims,
    event_log,
    holds,
    idempotency_keys,
    orders,
    outbox,
    payment_events,
    products,
    stock_adjustments,
)
from stockade.application.commands import HoldSearch, OrderSearch
from stockade.application.ports import (
    ClaimDrift,
    DueMessage,
    DuplicateHoldOrder,
    IdempotencyKeyTaken,
    KeyRecord,
    LatestStart,
    OutboxBacklog,
    Ref,
    RequestKey,
    TaskMessage,
)
from stockade.application.tracing import traced
from stockade.domain.model import (
    CLAIMING,
    MAX_STOCK,
    ClaimStanding,
    Hold,
    HoldStatus,
    LoggedEvent,
    Order,
    OrderStatus,
    PaymentEvent,
    PaymentResult,
    Product,
    ProductSnapshot,
    RefundStatus,
    StockAdjustment,
    WebhookOutcome,
)

#: Moments converted to or from the database, remembered: a write stores the same few moments
#: (its `now`, a due time) in several rows, and every read converts the same created_at and
#: updated_at again. A conversion (astimezone, replace) costs thousands of instructions; a
#: hit, a hash. Datetimes are immutable, and equal ones convert alike as long as every aware
#: one is in UTC, as every moment here is (the clocks and from_db make them so): an aware
#: moment in another zone, or a naive pair told apart only by `fold`, would share an entry.
_MOMENTS_KEPT = 1024


@functools.lru_cache(maxsize=_MOMENTS_KEPT)
def to_db(moment: datetime) -> datetime:
    """Stored as naive UTC: DATETIME has no zone on either engine."""
    return moment.astimezone(timezone.utc).replace(tzinfo=None)


@overload
def from_db(value: datetime) -> datetime: ...
@overload
def from_db(value: None) -> None: ...
@functools.lru_cache(maxsize=_MOMENTS_KEPT)
def from_db(value: datetime | None) -> datetime | None:
    return None if value is None else value.replace(tzinfo=timezone.utc)


def key_hash(key: str) -> str:
    return hashlib.sha256(key.encode("utf-8", "surrogatepass")).hexdigest()


def _product(row) -> Product:
    return Product(
        id=row.id,
        name=row.name,
        price=Decimal(row.price),
        stock=row.stock,
        reserved=row.reserved,
        version=row.version,
        created_at=from_db(row.created_at),
        updated_at=from_db(row.updated_at),
        deleted_at=from_db(row.deleted_at),
        max_per_customer=row.max_per_customer,
    )


def _hold(row) -> Hold:
    return Hold(
        id=row.id,
        product_id=row.product_id,
        quantity=row.quantity,
        status=HoldStatus(row.status),
        expires_at=from_db(row.expires_at),
        order_id=row.order_id,
        created_at=from_db(row.created_at),
        updated_at=from_db(row.updated_at),
        customer_id=row.customer_id,
    )


def _order(row) -> Order:
    return Order(
        id=row.id,
        product_id=row.product_id,
        hold_id=row.hold_id,
        quantity=row.quantity,
        total_price=Decimal(row.total_price),
        status=OrderStatus(row.status),
        payment_due_at=from_db(row.payment_due_at),
        created_at=from_db(row.created_at),
        updated_at=from_db(row.updated_at),
        customer_id=row.customer_id,
        refund_status=RefundStatus(row.refund_status) if row.refund_status else None,
    )


def _adjustment(row) -> StockAdjustment:
    return StockAdjustment(
        id=row.id,
        product_id=row.product_id,
        delta=row.delta,
        reason=row.reason,
        stock_after=row.stock_after,
        created_at=from_db(row.created_at),
    )


def _payment(row) -> PaymentEvent:
    return PaymentEvent(
        id=row.id,
        idempotency_key=row.idempotency_key,
        order_id=row.order_id,
        result=PaymentResult(row.result),
        fingerprint=row.fingerprint,
        outcome=WebhookOutcome(row.outcome),
        first_outcome=WebhookOutcome(row.first_outcome),
        response_status=row.response_status,
        created_at=from_db(row.created_at),
        applied_at=from_db(row.applied_at),
    )


# Hot-path statements are built once: SQLAlchemy memoizes a statement object's cache key,
# so executing a prebuilt statement with parameters skips rebuilding the clause tree and
# its cache key on every request (about a third of a purchase's CPU time before).
_P = sa.bindparam
_LIVE_PRODUCT = sa.and_(products.c.id == _P("b_id"), products.c.deleted_at.is_(None))
_BUMP = {"version": products.c.version + 1, "updated_at": _P("at")}
_AVAILABLE = products.c.stock - products.c.reserved >= _P("q")
_GET_LIVE_PRODUCT = products.select().where(_LIVE_PRODUCT)
_GET_ANY_PRODUCT = products.select().where(products.c.id == _P("b_id"))
#: The limit per customer the buyer's read showed is still the product's: the customer's claim
#: was checked against it (and a buyer named no customer only where there is no limit).
_SAME_LIMIT = products.c.max_per_customer.is_not_distinct_from(_P("b_limit", type_=sa.Integer))
#: The name byte for byte: MySQL's collations would take "Lamp" for "lamp " or "Cafe" for "CAFÉ".
_SAME_NAME = sa.cast(products.c.name, sa.LargeBinary) == sa.cast(_P("b_name"), sa.LargeBinary)
#: The price and name are part of the guard: the order was charged the price the buyer's read
#: showed, and the answer names the product as that read did.
_TAKE = (
    products.update()
    .where(_LIVE_PRODUCT, _AVAILABLE, _SAME_LIMIT, products.c.price == _P("b_price"), _SAME_NAME)
    .values(stock=reported(products.c.stock - _P("q")), **_BUMP)
)
#: Writers of one group commit that take or reserve units of one product, as the same read of
#: it showed it, may do so with one statement for their total quantity (session.Combine).
_SUMMED_QUANTITY = Combine(summed="q", latest="at")
_RESERVE = (
    products.update()
    .where(_LIVE_PRODUCT, _AVAILABLE, _SAME_LIMIT)
    .values(reserved=products.c.reserved + _P("q"), **_BUMP)
)
_UNRESERVE = (
    products.update()
    .where(products.c.id == _P("b_id"), products.c.reserved >= _P("q"))
    .values(reserved=products.c.reserved - _P("q"), **_BUMP)
)
_RESTOCK = products.update().where(products.c.id == _P("b_id")).values(stock=products.c.stock + _P("q"), **_BUMP)
#: StockLevels.adjust as a guard: available stays >= 0 and stock <= MAX_STOCK after the change.
_ADJUST = (
    products.update()
    .where(
        _LIVE_PRODUCT,
        products.c.stock + _P("b_delta") >= products.c.reserved,
        products.c.stock + _P("b_delta") <= MAX_STOCK,
    )
    .values(stock=reported(products.c.stock + _P("b_delta")), **_BUMP)
)
_SETTLE = (
    products.update()
    .where(products.c.id == _P("b_id"), products.c.reserved >= _P("q"), products.c.stock >= _P("q"))
    .values(stock=products.c.stock - _P("q"), reserved=products.c.reserved - _P("q"), **_BUMP)
)
# The earliest lapse of a product's claims: one index probe each (ix_*_product_status_*).
_NEXT_HOLD_LAPSE = (
    sa.select(sa.func.min(holds.c.expires_at))
    .where(holds.c.product_id == _P("b_id"), holds.c.status == HoldStatus.ACTIVE.value)
    .scalar_subquery()
)
_NEXT_ORDER_LAPSE = (
    sa.select(sa.func.min(orders.c.payment_due_at))
    .where(orders.c.product_id == _P("b_id"), orders.c.status == OrderStatus.PENDING.value)
    .scalar_subquery()
)
_SNAPSHOT = sa.select(
    products, _NEXT_HOLD_LAPSE.label("next_hold_lapse"), _NEXT_ORDER_LAPSE.label("next_order_lapse")
).where(_LIVE_PRODUCT)
_INSERT_HOLD = holds.insert()
_GET_HOLD = holds.select().where(holds.c.id == _P("b_id"))
_USE_HOLD = (
    holds.update()
    .where(holds.c.id == _P("b_id"), holds.c.status == HoldStatus.ACTIVE.value, holds.c.expires_at > _P("at"))
    .values(status=HoldStatus.USED.value, order_id=_P("b_order_id"), updated_at=_P("at"))
)
_INSERT_ORDER = orders.insert()
_GET_ORDER = orders.select().where(orders.c.id == _P("b_id"))
_INSERT_EVENT = event_log.insert()
_INSERT_ADJUSTMENT = stock_adjustments.insert()
_INSERT_OUTBOX = outbox.insert()
_HAS_DEFERRED_PAYMENT = sa.select(
    sa.exists().where(
        payment_events.c.order_id == _P("b_order_id"), payment_events.c.outcome == WebhookOutcome.DEFERRED.value
    )
)


def _snapshot(row) -> ProductSnapshot:
    lapses = [from_db(at) for at in (row.next_hold_lapse, row.next_order_lapse) if at is not None]
    return ProductSnapshot(_product(row), min(lapses) if lapses else None)


def _locked(stmt: sa.Select, dialect: sa.Dialect, *, wait: bool = False) -> sa.Select:
    """FOR UPDATE SKIP LOCKED where the engine has it (MySQL 8, MariaDB 10.6), or a plain
    FOR UPDATE with `wait`; SQLite serialises writers with BEGIN IMMEDIATE instead."""
    if dialect.name == "sqlite":
        return stmt
    return stmt.with_for_update(skip_locked=not wait)


def _count(session: Session, table: sa.Table, where: sa.ColumnElement[bool]) -> int:
    return session.run(sa.select(sa.func.count()).select_from(table).where(where)).scalar_one()


class _Repository:
    def __init__(self, session: Session) -> None:
        self.s = session

    def _due_page(
        self, table: sa.Table, due: sa.Column, where: list[sa.ColumnElement[bool]], limit: int, *, wait: bool
    ) -> list[sa.Row]:
        """A sweep's page: the first `limit` rows, in due order (the due time, then the id),
        that `where` holds for, locked (_locked: a sweep skips rows another holds, a buyer's
        reclaim waits for them).

        The rows are picked by a plain read in the order of the due-time index, and only
        the rows picked are then locked, by primary key, with `where` checked again under
        the lock. A sweep goes on picking past the rows another holds until its page is full
        or nothing more is due. A locking read that picked the page itself could lock far
        more than the page: ordered by id, the server walked the due-time index, sorted every
        due row and locked all of them, and a relay page of 500 over 1.1 million due outbox
        messages locked 1,135,022 rows, filled MariaDB's buffer pool with locks and stopped
        the server. Locking by primary key also takes no lock in a secondary index, which a
        sweep's UPDATE of the same row would wait for (a deadlock with a buyer waiting for
        that sweep)."""
        page: list[sa.Row] = []
        after: sa.Row | None = None  # the last row picked: the next pick starts past it
        while len(page) < limit:
            wanted = limit - len(page)
            pick = sa.select(table.c.id, due).where(*where)
            if after is not None:
                pick = pick.where(sa.or_(due > after[1], sa.and_(due == after[1], table.c.id > after[0])))
            picked = self.s.run(pick.order_by(due, table.c.id).limit(wanted)).all()
            if not picked:
                break
            place = {row.id: at for at, row in enumerate(picked)}
            by_key = table.select().where(table.c.id.in_(list(place)), *where)
            for dialect in ("mysql", "mariadb"):  # both take the hint; the server would also walk (status, id)
                by_key = by_key.with_hint(table, "FORCE INDEX (PRIMARY)", dialect)
            page += sorted(self.s.run(_locked(by_key, self.s.dialect, wait=wait)), key=lambda row: place[row.id])
            if wait or len(picked) < wanted:  # a reclaim waited for its rows; or nothing more is due
                break
            after = picked[-1]
        return page


class SqlProductRepository(_Repository):
    """Products; the stock statements are the contract's single conditional UPDATEs."""

    def add(self, name: str, price: Decimal, stock: int, max_per_customer: int | None, now: datetime) -> Product:
        at = to_db(now)
        result = self.s.run(
            products.insert().values(
                name=name,
                price=price,
                stock=stock,
                reserved=0,
                version=1,
                created_at=at,
                updated_at=at,
                max_per_customer=max_per_customer,
            )
        )
        product_id = result.inserted_primary_key[0]  # type: ignore[index]  # an insert has a key
        return Product(product_id, name, price, stock, 0, 1, now, now, max_per_customer=max_per_customer)

    def get(self, product_id: int, *, include_deleted: bool = False) -> Product | None:
        stmt = _GET_ANY_PRODUCT if include_deleted else _GET_LIVE_PRODUCT
        row = self.s.run(stmt, {"b_id": product_id}).first()
        return _product(row) if row else None

    def lock(self, product_id: int) -> Product | None:
        row = self.s.run(_locked(_GET_LIVE_PRODUCT, self.s.dialect, wait=True), {"b_id": product_id}).first()
        return _product(row) if row else None

    def get_many(self, product_ids: Sequence[int]) -> dict[int, Product]:
        if not product_ids:
            return {}
        return {r.id: _product(r) for r in self.s.run(products.select().where(products.c.id.in_(list(product_ids))))}

    def snapshot(self, product_id: int) -> ProductSnapshot | None:
        row = self.s.run(_SNAPSHOT, {"b_id": product_id}).first()
        return _snapshot(row) if row else None

    def list(self, limit: int, after_id: int) -> list[Product]:
        stmt = (
            products.select()
            .where(products.c.deleted_at.is_(None), products.c.id > after_id)
            .order_by(products.c.id)
            .limit(limit)
        )
        return [_product(r) for r in self.s.run(stmt)]

    def _changed(self, product_id: int, changed: bool = True) -> bool:
        if changed:
            self.s.product_changed(product_id)
        return changed

    def update(self, product_id: int, changes: dict[str, Any], now: datetime) -> bool:
        where = [_LIVE_PRODUCT]
        if "stock" in changes:
            where.append(products.c.reserved <= changes["stock"])
        stmt = products.update().where(*where).values(**changes, **_BUMP)
        return self._changed(product_id, self.s.run(stmt, {"b_id": product_id, "at": to_db(now)}).rowcount == 1)

    def soft_delete(self, product_id: int, now: datetime) -> bool:
        stmt = products.update().where(_LIVE_PRODUCT, products.c.reserved == 0).values(deleted_at=_P("at"), **_BUMP)
        return self._changed(product_id, self.s.run(stmt, {"b_id": product_id, "at": to_db(now)}).rowcount == 1)

    def take(self, product: Product, quantity: int, now: datetime) -> Ref:
        self._changed(product.id)
        params = {
            "b_id": product.id,
            "q": quantity,
            "at": to_db(now),
            "b_price": product.price,
            "b_name": product.name,
            "b_limit": product.max_per_customer,
        }
        return self.s.must_change_one(_TAKE, params, reporting=products.c.stock, combine=_SUMMED_QUANTITY)

    def reserve(self, product_id: int, quantity: int, max_per_customer: int | None, now: datetime) -> None:
        self._changed(product_id)
        self.s.must_change_one(
            _RESERVE,
            {"b_id": product_id, "q": quantity, "at": to_db(now), "b_limit": max_per_customer},
            combine=_SUMMED_QUANTITY,
        )

    def unreserve(self, product_id: int, quantity: int, now: datetime) -> None:
        if self.s.run(_UNRESERVE, {"b_id": product_id, "q": quantity, "at": to_db(now)}).rowcount != 1:
            raise RuntimeError(f"product {product_id}: cannot give back {quantity} reserved units")
        self._changed(product_id)

    def restock(self, product_id: int, quantity: int, now: datetime) -> None:
        if self.s.run(_RESTOCK, {"b_id": product_id, "q": quantity, "at": to_db(now)}).rowcount != 1:
            raise RuntimeError(f"product {product_id}: cannot put back {quantity} units")
        self._changed(product_id)

    def adjust(self, product_id: int, delta: int, now: datetime) -> Ref:
        self._changed(product_id)
        return self.s.must_change_one(
            _ADJUST, {"b_id": product_id, "b_delta": delta, "at": to_db(now)}, reporting=products.c.stock
        )

    def settle(self, product_id: int, quantity: int, now: datetime) -> None:
        if self.s.run(_SETTLE, {"b_id": product_id, "q": quantity, "at": to_db(now)}).rowcount != 1:
            raise RuntimeError(f"product {product_id}: cannot settle {quantity} reserved units")
        self._changed(product_id)

    def audit(self) -> builtins.list[tuple[Product, int]]:  # `list` here is the method above
        held = (
            sa.select(sa.func.coalesce(sa.func.sum(holds.c.quantity), 0))
            .where(holds.c.product_id == products.c.id, holds.c.status == HoldStatus.ACTIVE.value)
            .scalar_subquery()
        )
        pending = (
            sa.select(sa.func.coalesce(sa.func.sum(orders.c.quantity), 0))
            .where(orders.c.product_id == products.c.id, orders.c.status == OrderStatus.PENDING.value)
            .scalar_subquery()
        )
        # One statement: one consistent snapshot of the counters and the rows behind them.
        stmt = sa.select(products, (held + pending).label("expected")).order_by(products.c.id)
        return [(_product(r), int(r.expected)) for r in self.s.run(stmt)]


class SqlHoldRepository(_Repository):
    """Holds; transitions are `UPDATE ... WHERE id = :id AND status = 'active'`."""

    def add(self, product_id: int, quantity: int, customer_id: str | None, expires_at: datetime, now: datetime) -> Hold:
        at = to_db(now)
        hold_id = self.s.insert_with_id(
            _INSERT_HOLD,
            {
                "product_id": product_id,
                "quantity": quantity,
                "status": HoldStatus.ACTIVE.value,
                "expires_at": to_db(expires_at),
                "created_at": at,
                "updated_at": at,
                "customer_id": customer_id,
            },
        )
        return Hold(
            hold_id,  # type: ignore[arg-type]  # a Ref until commit
            product_id,
            quantity,
            HoldStatus.ACTIVE,
            expires_at,
            None,
            now,
            now,
            customer_id,
        )

    def get(self, hold_id: int) -> Hold | None:
        row = self.s.run(_GET_HOLD, {"b_id": hold_id}).first()
        return _hold(row) if row else None

    def search(self, search: HoldSearch, now: datetime) -> list[Hold]:
        stmt = holds.select().where(holds.c.id > search.after_id)
        if search.status is not None:
            stmt = stmt.where(_hold_status_at(search.status, to_db(now)))
        if search.product_id is not None:
            stmt = stmt.where(holds.c.product_id == search.product_id)
        if search.customer_id is not None:
            stmt = stmt.where(holds.c.customer_id == search.customer_id)
        return [_hold(r) for r in self.s.run(stmt.order_by(holds.c.id).limit(search.limit))]

    def use(self, hold: Hold, order_id: int | Ref, now: datetime) -> None:
        # The product's claims change (a hold's expiry becomes an order's payment deadline).
        self.s.product_changed(hold.product_id)
        self.s.must_change_one(_USE_HOLD, {"b_id": hold.id, "b_order_id": order_id, "at": to_db(now)})

    def end(self, hold_id: int, status: HoldStatus, now: datetime) -> bool:
        stmt = (
            holds.update()
            .where(holds.c.id == hold_id, holds.c.status == HoldStatus.ACTIVE.value)
            .values(status=status.value, updated_at=to_db(now))
        )
        return self.s.run(stmt).rowcount == 1

    def extend(self, hold: Hold, expires_at: datetime, now: datetime) -> bool:
        stmt = (
            holds.update()
            .where(
                holds.c.id == hold.id,
                holds.c.status == HoldStatus.ACTIVE.value,
                holds.c.expires_at == to_db(hold.expires_at),
                holds.c.expires_at > to_db(now),
            )
            .values(expires_at=to_db(expires_at), updated_at=to_db(now))
        )
        return self.s.run(stmt).rowcount == 1

    def expired(self, now: datetime, limit: int, product_id: int | None = None) -> list[Hold]:
        where = [holds.c.status == HoldStatus.ACTIVE.value, holds.c.expires_at <= to_db(now)]
        if product_id is not None:
            where.append(holds.c.product_id == product_id)
        # A sweep skips rows another sweeper holds; a buyer's reclaim (one product) waits for
        # them instead: skipping would refuse a sale only unswept claims stood in the way of.
        page = self._due_page(holds, holds.c.expires_at, where, limit, wait=product_id is not None)
        return [_hold(r) for r in page]

    def count_active(self) -> int:
        return _count(self.s, holds, holds.c.status == HoldStatus.ACTIVE.value)


class SqlOrderRepository(_Repository):
    """Orders; transitions are `UPDATE ... WHERE id = :id AND status = :current`."""

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
    ) -> Ref:
        at = to_db(now)
        return self.s.insert_with_id(
            _INSERT_ORDER,
            {
                "product_id": product_id,
                "hold_id": hold_id,
                "quantity": quantity,
                "total_price": total_price,
                "status": status.value,
                "payment_due_at": to_db(payment_due_at) if payment_due_at else None,
                "created_at": at,
                "updated_at": at,
                "customer_id": customer_id,
            },
            on_duplicate=DuplicateHoldOrder if hold_id is not None else None,
        )

    def get(self, order_id: int) -> Order | None:
        row = self.s.run(_GET_ORDER, {"b_id": order_id}).first()
        return _order(row) if row else None

    def search(self, search: OrderSearch) -> list[Order]:
        stmt = orders.select().where(orders.c.id > search.after_id)
        if search.status is not None:
            stmt = stmt.where(orders.c.status == search.status.value)
        if search.product_id is not None:
            stmt = stmt.where(orders.c.product_id == search.product_id)
        if search.customer_id is not None:
            stmt = stmt.where(orders.c.customer_id == search.customer_id)
        if search.refund_status is not None:
            stmt = stmt.where(orders.c.refund_status == search.refund_status)
        return [_order(r) for r in self.s.run(stmt.order_by(orders.c.id).limit(search.limit))]

    def transition(
        self,
        order_id: int,
        current: OrderStatus,
        new: OrderStatus,
        now: datetime,
        *,
        refund_status: RefundStatus | None = None,
    ) -> bool:
        values = {"status": new.value, "updated_at": to_db(now)}
        if refund_status is not None:
            values["refund_status"] = refund_status.value
        stmt = orders.update().where(orders.c.id == order_id, orders.c.status == current.value).values(**values)
        return self.s.run(stmt).rowcount == 1

    def require_refund(self, order_id: int, now: datetime) -> bool:
        return self._set_refund_status(
            order_id,
            sa.or_(orders.c.refund_status.is_(None), orders.c.refund_status == RefundStatus.REFUNDED.value),
            RefundStatus.REQUIRED,
            now,
        )

    def mark_refunded(self, order_id: int, now: datetime) -> bool:
        return self._set_refund_status(
            order_id, orders.c.refund_status == RefundStatus.REQUIRED.value, RefundStatus.REFUNDED, now
        )

    def _set_refund_status(
        self, order_id: int, current: sa.ColumnElement[bool], new: RefundStatus, now: datetime
    ) -> bool:
        stmt = (
            orders.update()
            .where(orders.c.id == order_id, orders.c.status == OrderStatus.CANCELLED.value, current)
            .values(refund_status=new.value, updated_at=to_db(now))
        )
        return self.s.run(stmt).rowcount == 1

    def overdue(self, now: datetime, limit: int, product_id: int | None = None) -> list[Order]:
        where = [orders.c.status == OrderStatus.PENDING.value, orders.c.payment_due_at <= to_db(now)]
        if product_id is not None:
            where.append(orders.c.product_id == product_id)
        # As Holds.expired: a sweep skips what another holds, a buyer's reclaim waits.
        page = self._due_page(orders, orders.c.payment_due_at, where, limit, wait=product_id is not None)
        return [_order(r) for r in page]

    def count_pending(self) -> int:
        return _count(self.s, orders, orders.c.status == OrderStatus.PENDING.value)


def _hold_status_at(status: HoldStatus, at: datetime) -> sa.ColumnElement[bool]:
    """Holds whose status a client sees at `at` is `status` (Hold.status_at): an active hold
    past its TTL is expired, swept or not."""
    active = holds.c.status == HoldStatus.ACTIVE.value
    if status is HoldStatus.ACTIVE:
        return sa.and_(active, holds.c.expires_at > at)
    if status is HoldStatus.EXPIRED:
        return sa.or_(holds.c.status == HoldStatus.EXPIRED.value, sa.and_(active, holds.c.expires_at <= at))
    return holds.c.status == status.value


_CLAIM_ROW = sa.and_(
    customer_claims.c.product_id == _P("b_product_id"), customer_claims.c.customer_id == _P("b_customer_id")
)
#: Insert-if-absent of a claim's row, so that the conditional UPDATE after it always finds one.
_ENSURE_CLAIM = {
    "mysql": mysql.insert(customer_claims).on_duplicate_key_update(claimed=customer_claims.c.claimed),
    "sqlite": sqlite.insert(customer_claims).on_conflict_do_nothing(),
}
#: ClaimStanding.exceeded_by as a WHERE clause: the claim stays within the limit (null: none).
_CLAIM = (
    customer_claims.update()
    .where(
        _CLAIM_ROW,
        sa.or_(
            _P("b_limit", type_=sa.Integer).is_(None),
            customer_claims.c.claimed + _P("q") <= _P("b_limit", type_=sa.Integer),
        ),
    )
    .values(claimed=customer_claims.c.claimed + _P("q"))
)
_GIVE_BACK_CLAIM = (
    customer_claims.update()
    .where(_CLAIM_ROW, customer_claims.c.claimed >= _P("q"))
    .values(claimed=customer_claims.c.claimed - _P("q"))
)
_STANDING = sa.select(
    sa.func.coalesce(sa.select(customer_claims.c.claimed).where(_CLAIM_ROW).scalar_subquery(), 0),
    products.c.max_per_customer,
).where(products.c.id == _P("b_product_id"))


class SqlClaimRepository(_Repository):
    """Customers' claims; a claim grows by one conditional UPDATE of its row."""

    def add(self, product_id: int, customer_id: str, quantity: int, max_per_customer: int | None) -> None:
        key = {"b_product_id": product_id, "b_customer_id": customer_id}
        ensure = _ENSURE_CLAIM["mysql" if self.s.batching else "sqlite"]
        self.s.insert(ensure, {"product_id": product_id, "customer_id": customer_id, "claimed": 0})
        self.s.must_change_one(_CLAIM, {**key, "q": quantity, "b_limit": max_per_customer})

    def give_back(self, product_id: int, customer_id: str, quantity: int) -> None:
        params = {"b_product_id": product_id, "b_customer_id": customer_id, "q": quantity}
        if self.s.run(_GIVE_BACK_CLAIM, params).rowcount != 1:
            raise RuntimeError(f"customer {customer_id!r} of product {product_id}: cannot give back {quantity} units")

    def standing(self, product_id: int, customer_id: str) -> ClaimStanding:
        claimed, limit = self.s.run(_STANDING, {"b_product_id": product_id, "b_customer_id": customer_id}).one()
        return ClaimStanding(int(claimed), limit)

    def audit(self) -> list[ClaimDrift]:
        zero = sa.literal(0, sa.BigInteger)
        parts = sa.union_all(
            sa.select(
                customer_claims.c.product_id,
                customer_claims.c.customer_id,
                customer_claims.c.claimed,
                zero.label("expected"),
            ),
            sa.select(holds.c.product_id, holds.c.customer_id, zero, holds.c.quantity).where(
                holds.c.customer_id.is_not(None), holds.c.status == HoldStatus.ACTIVE.value
            ),
            sa.select(orders.c.product_id, orders.c.customer_id, zero, orders.c.quantity).where(
                orders.c.customer_id.is_not(None), orders.c.status.in_([s.value for s in CLAIMING])
            ),
        ).subquery()
        claimed, expected = sa.func.sum(parts.c.claimed), sa.func.sum(parts.c.expected)
        # One statement: one consistent snapshot of the claims and the rows behind them.
        stmt = (
            sa.select(parts.c.product_id, parts.c.customer_id, claimed, expected)
            .group_by(parts.c.product_id, parts.c.customer_id)
            .having(claimed != expected)
            .order_by(parts.c.product_id, parts.c.customer_id)
        )
        return [ClaimDrift(r[0], r[1], int(r[2]), int(r[3])) for r in self.s.run(stmt)]


class SqlPaymentEventRepository(_Repository):
    """Webhook deliveries, unique by the hash of their idempotency key."""

    def add(self, event: PaymentEvent) -> bool:
        try:
            self.s.run(
                payment_events.insert().values(
                    key_hash=key_hash(event.idempotency_key),
                    idempotency_key=event.idempotency_key,
                    order_id=event.order_id,
                    result=event.result.value,
                    fingerprint=event.fingerprint,
                    outcome=event.outcome.value,
                    first_outcome=event.first_outcome.value,
                    response_status=event.response_status,
                    created_at=to_db(event.created_at),
                )
            )
        except sa.exc.IntegrityError as exc:
            if is_duplicate_key(exc):
                return False
            raise
        return True

    def get_by_key(self, key: str) -> PaymentEvent | None:
        row = self.s.run(payment_events.select().where(payment_events.c.key_hash == key_hash(key))).first()
        return _payment(row) if row else None

    def finish(self, key: str, outcome: WebhookOutcome, response_status: str, now: datetime) -> None:
        values: dict[str, Any] = {
            "outcome": outcome.value,
            "first_outcome": outcome.value,
            "response_status": response_status,
        }
        if outcome is not WebhookOutcome.DEFERRED:
            values["applied_at"] = to_db(now)
        self.s.run(payment_events.update().where(payment_events.c.key_hash == key_hash(key)).values(**values))

    def has_deferred(self, order_id: int | Ref) -> Ref:
        return self.s.read_later(_HAS_DEFERRED_PAYMENT, {"b_order_id": order_id})

    def deferred(self, limit: int, order_id: int | None = None) -> list[PaymentEvent]:
        stmt = (
            sa.select(payment_events)
            .join(orders, orders.c.id == payment_events.c.order_id)
            .where(payment_events.c.outcome == WebhookOutcome.DEFERRED.value)
        )
        if order_id is not None:
            stmt = stmt.where(payment_events.c.order_id == order_id)
        stmt = stmt.order_by(payment_events.c.id).limit(limit)
        return [_payment(r) for r in self.s.run(stmt)]

    def resolve_deferred(self, event_id: int, outcome: WebhookOutcome, now: datetime) -> bool:
        stmt = (
            payment_events.update()
            .where(payment_events.c.id == event_id, payment_events.c.outcome == WebhookOutcome.DEFERRED.value)
            .values(outcome=outcome.value, applied_at=to_db(now))
        )
        return self.s.run(stmt).rowcount == 1

    def count_deferred(self) -> int:
        return _count(self.s, payment_events, payment_events.c.outcome == WebhookOutcome.DEFERRED.value)


_INSERT_KEY = idempotency_keys.insert()


class SqlIdempotencyRepository(_Repository):
    """Idempotency-Key records; the primary key (scope, key hash) decides who claims."""

    def claim(self, key: RequestKey, now: datetime, answer: dict[str, Any] | None = None) -> None:
        # On InnoDB a claim of a key another open transaction inserted waits for it to end,
        # then fails as a duplicate: the second request replays the first one's answer.
        self.s.insert(
            _INSERT_KEY,
            {
                "scope": key.scope,
                "key_hash": key_hash(key.key),
                "fingerprint": key.fingerprint,
                "answer": Json(answer) if answer is not None else None,
                "claimed_at": to_db(now),
            },
            on_duplicate=IdempotencyKeyTaken,
        )

    def find(self, key: RequestKey) -> KeyRecord | None:
        row = self.s.run(
            idempotency_keys.select().where(
                idempotency_keys.c.scope == key.scope, idempotency_keys.c.key_hash == key_hash(key.key)
            )
        ).first()
        if row is None or row.answer is None:
            return None
        return KeyRecord(row.fingerprint, json.loads(row.answer))

    def purge(self, older_than: datetime) -> int:
        stmt = idempotency_keys.delete().where(idempotency_keys.c.claimed_at < to_db(older_than))
        return self.s.run(stmt).rowcount


class SqlAdjustmentRepository(_Repository):
    """The stock adjustment trail."""

    def add(self, product_id: int, delta: int, reason: str, stock_after: int | Ref, now: datetime) -> StockAdjustment:
        adjustment_id = self.s.insert_with_id(
            _INSERT_ADJUSTMENT,
            {
                "product_id": product_id,
                "delta": delta,
                "reason": reason,
                "stock_after": stock_after,
                "created_at": to_db(now),
            },
        )
        return StockAdjustment(adjustment_id, product_id, delta, reason, stock_after, now)  # type: ignore[arg-type]

    def list(self, product_id: int, limit: int, before_id: int | None = None) -> list[StockAdjustment]:
        stmt = stock_adjustments.select().where(stock_adjustments.c.product_id == product_id)
        if before_id is not None:
            stmt = stmt.where(stock_adjustments.c.id < before_id)
        stmt = stmt.order_by(stock_adjustments.c.id.desc()).limit(limit)
        return [_adjustment(r) for r in self.s.run(stmt)]


class SqlEventLog(_Repository):
    """The business event log behind /api/logs."""

    def record(self, event: str, data: dict[str, Any], now: datetime) -> None:
        self.s.insert(_INSERT_EVENT, {"event": event, "data": Json(data), "created_at": to_db(now)})

    def list(self, limit: int, event: str | None = None, before_id: int | None = None) -> list[LoggedEvent]:
        stmt = event_log.select()
        if event is not None:
            stmt = stmt.where(event_log.c.event == event)
        if before_id is not None:
            stmt = stmt.where(event_log.c.id < before_id)
        stmt = stmt.order_by(event_log.c.id.desc()).limit(limit)
        return [LoggedEvent(r.id, r.event, json.loads(r.data), from_db(r.created_at)) for r in self.s.run(stmt)]


class SqlOutbox(_Repository):
    """Task messages written with the change they follow; relayed until completed."""

    def __init__(self, session: Session, on_add) -> None:
        super().__init__(session)
        self._on_add = on_add

    def add(self, task: str, payload: dict[str, Any], now: datetime, retry_at: datetime) -> TaskMessage:
        payload = traced(payload)
        message_id = self.s.insert_with_id(
            _INSERT_OUTBOX,
            {
                "task": task,
                "payload": Json(payload),
                "created_at": to_db(now),
                "retry_at": to_db(retry_at),
                "attempts": 0,
            },
        )
        message = TaskMessage(message_id, task, payload)
        self._on_add(message)
        return message

    def start(self, message_id: int, now: datetime, lease_until: datetime) -> None:
        self.s.run(
            outbox.update()
            .where(outbox.c.id == message_id)
            .values(started_at=to_db(now), retry_at=to_db(lease_until), deliveries=outbox.c.deliveries + 1)
        )

    def complete(self, message_id: int, now: datetime) -> None:
        self.s.run(
            outbox.update()
            .where(outbox.c.id == message_id, outbox.c.completed_at.is_(None))
            .values(completed_at=to_db(now))
        )

    def due(self, now: datetime, limit: int) -> list[DueMessage]:
        where = [outbox.c.completed_at.is_(None), outbox.c.retry_at <= to_db(now)]
        rows = self._due_page(outbox, outbox.c.retry_at, where, limit, wait=False)
        return [
            DueMessage(
                TaskMessage(r.id, r.task, json.loads(r.payload)),
                from_db(r.started_at),
                from_db(r.resent_at or r.created_at),
            )
            for r in rows
        ]

    def latest_start(self) -> LatestStart | None:
        # ix_outbox_started: one index dive. NULLs sort last in DESC on both engines.
        stmt = (
            sa.select(outbox.c.started_at, sa.func.coalesce(outbox.c.resent_at, outbox.c.created_at))
            .where(outbox.c.started_at.is_not(None))
            .order_by(outbox.c.started_at.desc())
            .limit(1)
        )
        row = self.s.run(stmt).first()
        return LatestStart(from_db(row[0]), from_db(row[1])) if row else None

    def postpone(self, message_ids: Sequence[int], retry_at: datetime, *, resent_at: datetime | None) -> None:
        if not message_ids:
            return
        values: dict[str, Any] = {"retry_at": to_db(retry_at)}
        if resent_at is not None:
            values.update(resent_at=to_db(resent_at), attempts=outbox.c.attempts + 1)
        self.s.run(outbox.update().where(outbox.c.id.in_(list(message_ids))).values(**values))

    def backlog(self) -> OutboxBacklog:
        pending = outbox.c.completed_at.is_(None)
        row = self.s.run(
            sa.select(
                sa.func.count(),
                sa.func.min(outbox.c.created_at),
                sa.func.min(sa.case((outbox.c.started_at.is_(None), outbox.c.created_at))),
            ).where(pending)
        ).one()
        return OutboxBacklog(row[0], from_db(row[1]), from_db(row[2]))
