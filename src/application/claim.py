"""Taking units (purchase) or holding them: the hot path shared by both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from stockade.application.expiry import reclaim_expired
from stockade.application.ports import ConditionFailed, RequestKey, TransientStorageError, UnitOfWork
from stockade.application.services import Deps, transaction
from stockade.domain.errors import OutOfStock, ProductNotFound
from stockade.domain.model import Product, ProductSnapshot

T = TypeVar("T")

#: Tries of the deciding statement before giving up; each lost one re-reads the product, and
#: a refusal needs a read that proves it.
ATTEMPTS = 5


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

    The product comes from memory: a sold-out request a current snapshot proves ends
    there, with no database round trip at all. A snapshot memory can no longer vouch for
    (every sale outdates it) is still a basis to try the sale on, because the deciding
    statement re-checks the price, liveness and availability; otherwise the product is
    read first (one plain read, no lock). Then `write` adds the rows that follow from
    success and ends with the one conditional statement that decides. When that statement does not match (the race was lost, or the price changed
    since the read), the product is read again and the attempt made again. Expired,
    unswept holds and overdue orders are released before a refusal, and a refusal is only
    given when a read proves it. Raises ProductNotFound or OutOfStock, and
    TransientStorageError when every attempt lost its race without such a proof.
    """
    snapshot = _write_basis(deps, product_id, quantity)
    for _ in range(ATTEMPTS):
        if snapshot.product.available < quantity:
            if snapshot.proves_sold_out(quantity, deps.clock.now()):
                raise OutOfStock()
            # Lapsed claims stand in the way: give them back now, before the sweep does.
            transaction(deps, lambda uow, now: reclaim_expired(uow, deps.policy, product_id, now))
            snapshot = product_snapshot(deps, product_id, from_memory=False)
            continue
        product = snapshot.product
        try:
            return transaction(deps, lambda uow, now: write(uow, now, product), key=key, encode=encode)
        except ConditionFailed:
            snapshot = product_snapshot(deps, product_id, from_memory=False)
    # Never a refusal without proof: an Idempotency-Key would record it. The client retries.
    raise TransientStorageError(f"lost the race for product {product_id} {ATTEMPTS} times; retry")


def _write_basis(deps: Deps, product_id: int, quantity: int) -> ProductSnapshot:
    """The snapshot to try the sale on: a recent one that shows enough units (no round trip
    even to the version store), else a current one (which may prove a refusal), else a read."""
    recent = deps.cache.recent(product_id)
    if recent is not None and recent.product.available >= quantity:
        return recent
    return product_snapshot(deps, product_id)
