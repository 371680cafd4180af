"""Product use cases: create, read (cache-aside), list, update (If-Match), adjust stock, soft delete."""

from __future__ import annotations

from datetime import datetime

from stockade.application.claim import ATTEMPTS, product_snapshot
from stockade.application.commands import AdjustStock, CreateProduct, UpdateProduct
from stockade.application.expiry import reclaim_expired
from stockade.application.ports import ConditionFailed, Ref, RequestKey, TransientStorageError, UnitOfWork
from stockade.application.records import encode_result
from stockade.application.services import Deps, keyset_page, transaction
from stockade.domain.errors import (
    PreconditionFailed,
    ProductHasReservations,
    ProductNotFound,
    StockBelowReserved,
)
from stockade.domain.model import SET_STOCK_REASON, Product, StockAdjustment, money


def create_product(deps: Deps, cmd: CreateProduct) -> Product:
    """Add a product; records `product_created`."""

    def work(uow: UnitOfWork, now: datetime) -> Product:
        product = uow.products.add(cmd.name, money(cmd.price), cmd.stock, cmd.max_per_customer, now)
        uow.events.record(
            "product_created",
            {
                "product_id": product.id,
                "name": product.name,
                "price": str(product.price),
                "stock": product.stock,
                "max_per_customer": product.max_per_customer,
            },
            now,
        )
        return product

    return transaction(deps, work)


def get_product(deps: Deps, product_id: int) -> Product:
    """A live product, from memory when memory is provably current. Raises ProductNotFound."""
    return product_snapshot(deps, product_id).product


def list_products(deps: Deps, limit: int, after_id: int = 0) -> tuple[list[Product], int | None]:
    """One page of live products by id, and the `after_id` of the next page (None at the end)."""
    with deps.read() as uow:
        return keyset_page(uow.products.list(limit + 1, after_id), limit)


def update_product(deps: Deps, cmd: UpdateProduct) -> Product:
    """Change name, price, stock and/or the limit per customer. Raises ProductNotFound,
    PreconditionFailed (If-Match), StockBelowReserved. A lower limit refuses only new claims:
    what customers already claim stays theirs."""
    changes: dict[str, object] = {}
    if cmd.name is not None:
        changes["name"] = cmd.name
    if cmd.price is not None:
        changes["price"] = money(cmd.price)
    if cmd.stock is not None:
        changes["stock"] = cmd.stock
    if cmd.max_per_customer is not None:
        changes["max_per_customer"] = cmd.max_per_customer.per_customer

    def work(uow: UnitOfWork, now: datetime) -> Product:
        # Locked: the If-Match comparison and a stock delta hold until this commits.
        current = uow.products.lock(cmd.product_id)
        if current is None:
            raise ProductNotFound()
        if cmd.if_match is not None and current.version not in cmd.if_match:
            raise PreconditionFailed()
        # The only other guard is stock >= reserved: lapsed claims may be inflating it.
        if not uow.products.update(cmd.product_id, changes, now) and not (
            reclaim_expired(uow, deps.policy, cmd.product_id, now) and uow.products.update(cmd.product_id, changes, now)
        ):
            raise StockBelowReserved()
        if cmd.stock is not None and cmd.stock != current.stock:
            _record_adjustment(uow, cmd.product_id, cmd.stock - current.stock, SET_STOCK_REASON, cmd.stock, now)
        product = uow.products.get(cmd.product_id)
        assert product is not None
        uow.events.record(
            "product_updated",
            {"product_id": product.id, **{k: str(v) if k == "price" else v for k, v in changes.items()}},
            now,
        )
        return product

    return transaction(deps, work)


def _record_adjustment(
    uow: UnitOfWork, product_id: int, delta: int, reason: str, stock_after: int | Ref, now: datetime
) -> StockAdjustment:
    adjustment = uow.adjustments.add(product_id, delta, reason, stock_after, now)
    uow.events.record(
        "stock_adjusted",
        {
            "adjustment_id": adjustment.id,
            "product_id": product_id,
            "delta": delta,
            "reason": reason,
            "stock_after": stock_after,
        },
        now,
    )
    return adjustment


def adjust_stock(deps: Deps, cmd: AdjustStock, key: RequestKey | None = None) -> StockAdjustment:
    """stock += delta with a reason, kept in the product's adjustment trail; concurrent sales
    and adjustments never lose one another's effect (one conditional statement decides).
    Raises ProductNotFound, StockAdjustmentRefused (available below 0, stock above 2^31-1)."""

    def write(uow: UnitOfWork, now: datetime) -> StockAdjustment:
        stock_after = uow.products.adjust(cmd.product_id, cmd.delta, now)
        return _record_adjustment(uow, cmd.product_id, cmd.delta, cmd.reason, stock_after, now)

    def give_way(uow: UnitOfWork, now: datetime) -> None:
        """After the statement did not match: raise why, unless lapsed claims stood in the way
        (they are released now) or sales since made room; then the statement runs again."""
        product = uow.products.get(cmd.product_id)
        if product is None:
            raise ProductNotFound()
        if not reclaim_expired(uow, deps.policy, cmd.product_id, now):
            product.levels.adjust(cmd.delta)  # raises StockAdjustmentRefused

    for _ in range(ATTEMPTS):
        try:
            return transaction(deps, write, key=key, encode=encode_result)
        except ConditionFailed:
            transaction(deps, give_way)
    raise TransientStorageError(f"lost the race for product {cmd.product_id} {ATTEMPTS} times; retry")


def list_adjustments(
    deps: Deps, product_id: int, limit: int, before_id: int | None = None
) -> tuple[list[StockAdjustment], int | None]:
    """One page of a live product's adjustments, newest first, and the `before_id` of the
    next page (None at the end). Raises ProductNotFound."""
    with deps.read() as uow:
        if uow.products.get(product_id) is None:
            raise ProductNotFound()
        rows = uow.adjustments.list(product_id, limit + 1, before_id)
    page = rows[:limit]
    return page, (page[-1].id if len(rows) > limit else None)


def delete_product(deps: Deps, product_id: int) -> None:
    """Soft-delete a product with nothing reserved. Raises ProductNotFound, ProductHasReservations."""

    def work(uow: UnitOfWork, now: datetime) -> None:
        if not uow.products.soft_delete(product_id, now):
            if uow.products.get(product_id) is None:
                raise ProductNotFound()
            # Lapsed claims may be what is still reserved.
            if not (reclaim_expired(uow, deps.policy, product_id, now) and uow.products.soft_delete(product_id, now)):
                raise ProductHasReservations()
        uow.events.record("product_deleted", {"product_id": product_id}, now)

    transaction(deps, work)
