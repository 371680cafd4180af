"""Product use cases: create, read (cache-aside), list, update (If-Match), soft delete."""

from __future__ import annotations

from datetime import datetime

from stockade.application.claim import product_snapshot
from stockade.application.commands import CreateProduct, UpdateProduct
from stockade.application.expiry import reclaim_expired
from stockade.application.ports import UnitOfWork
from stockade.application.services import Deps, keyset_page, transaction
from stockade.domain.errors import (
    PreconditionFailed,
    ProductHasReservations,
    ProductNotFound,
    StockBelowReserved,
)
from stockade.domain.model import Product, money


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
        expected = None
        if cmd.if_match is not None:
            current = uow.products.get(cmd.product_id)
            if current is None:
                raise ProductNotFound()
            if current.version not in cmd.if_match:
                raise PreconditionFailed()
            expected = current.version
        if not uow.products.update(cmd.product_id, changes, now, expected):
            current = uow.products.get(cmd.product_id)
            if current is None:
                raise ProductNotFound()
            if expected is not None and current.version != expected:
                raise PreconditionFailed()
            # The only other guard is stock >= reserved: lapsed claims may be inflating it.
            if not reclaim_expired(uow, deps.policy, cmd.product_id, now):
                raise StockBelowReserved()
            if expected is not None:
                # Reclaiming bumped the version under the row lock this transaction now holds.
                expected = uow.products.get(cmd.product_id).version  # type: ignore[union-attr]
            if not uow.products.update(cmd.product_id, changes, now, expected):
                raise StockBelowReserved()
        product = uow.products.get(cmd.product_id)
        assert product is not None
        uow.events.record(
            "product_updated",
            {"product_id": product.id, **{k: str(v) if k == "price" else v for k, v in changes.items()}},
            now,
        )
        return product

    return transaction(deps, work)


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
