"""Taking units (purchase) or holding them: the hot path shared by both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from stockade.application.expiry import reclaim_expired
from stockade.application.ports import ConditionFailed, RequestKey, UnitOfWork
from stockade.application.services import Deps, transaction
from stockade.domain.errors import OutOfStock, ProductNotFound
from stockade.domain.model import Product, ProductSnapshot

T = TypeVar("T")


def product_snapshot(deps: Deps, product_id: int, *, from_memory: bool = True) -> ProductSnapshot:
    """The product as it is now: from memory when memory is provably current, else one plain
    read (no lock, no transaction), which is then remembered. Raises ProductNotFound."""
    snapshot, ticket = deps.cache.get(product_id)
    if snapshot is not None and from_memory:
        return snapshot
    with deps.read() as uow:
        snapshot = uow.products.snapshot(product_id)
    if snapshot is None:
        raise ProductNotFound()
    deps.cache.fill(snapshot, ticket)
    return snapshot


def claim_units(
    deps: Deps,
    product_id: int,
    quantity: int,
    write: Callable[[UnitOfWork, datetime, Product], T],
    key: RequestKey | None = None,
    encode: Callable[[T], dict[str, Any]] | None = None,
) -> T:
    """Take or hold `quantity` units in one short write transaction.

    The product comes from `product_snapshot`; a sold-out request it proves ends there
    (with memory current, it costs no database round trip at all). Otherwise `write` adds
    the rows that follow from success and ends with the one conditional statement that
    decides. When that statement does not match (the race was lost, or the price changed
    since the read), the product is read again and the attempt made once more. Expired,
    unswept holds and overdue orders are released before a refusal.
    Raises ProductNotFound or OutOfStock.
    """
    snapshot = product_snapshot(deps, product_id)
    for _ in range(2):
        if snapshot.product.available < quantity:
            if snapshot.proves_sold_out(quantity, deps.clock.now()):
                raise OutOfStock()
            # Lapsed claims stand in the way: give them back now, before the sweep does.
            transaction(deps, lambda uow, now: reclaim_expired(uow, deps.policy, product_id, now))
            snapshot = product_snapshot(deps, product_id, from_memory=False)
            if snapshot.product.available < quantity:
                raise OutOfStock()
        product = snapshot.product
        try:
            return transaction(deps, lambda uow, now: write(uow, now, product), key=key, encode=encode)
        except ConditionFailed:
            snapshot = product_snapshot(deps, product_id, from_memory=False)
    raise OutOfStock()
