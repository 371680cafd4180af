"""Taking units (purchase) or holding them: the hot path shared by both."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, TypeVar

from stockade.application.expiry import reclaim_expired
from stockade.application.ports import ConditionFailed, RequestKey, TransientStorageError, UnitOfWork
from stockade.application.services import Deps, transaction
from stockade.domain.errors import LimitPerCustomerReached, OutOfStock, ProductNotFound
from stockade.domain.model import Product, ProductSnapshot, ensure_customer_named

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
    customer_id: str | None = None,
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
    given when a read proves it.

    With `customer_id`, the customer's claim on the product grows first in the same
    transaction, by one conditional statement that keeps it within the limit the product
    showed (the product's own statement checks that limit is still its limit). A lost
    attempt that the stock does not explain reads the claim: a limit it proves reached is
    the refusal. Raises ProductNotFound, OutOfStock, CustomerRequired,
    LimitPerCustomerReached, and TransientStorageError when every attempt lost its race
    without such a proof.
    """
    snapshot = _write_basis(deps, product_id, quantity, customer_id)
    for _ in range(ATTEMPTS):
        if snapshot.product.available < quantity:
            if snapshot.proves_sold_out(quantity, deps.clock.now()):
                raise OutOfStock()
            # Lapsed claims stand in the way: give them back now, before the sweep does.
            transaction(deps, lambda uow, now: reclaim_expired(uow, deps.policy, product_id, now))
            snapshot = product_snapshot(deps, product_id, from_memory=False)
            continue
        product = snapshot.product
        ensure_customer_named(product, customer_id)

        def attempt(uow: UnitOfWork, now: datetime, product: Product = product) -> T:
            if customer_id is not None:
                uow.claims.add(product_id, customer_id, quantity, product.max_per_customer)
            return write(uow, now, product)

        try:
            return transaction(deps, attempt, key=key, encode=encode)
        except ConditionFailed:
            snapshot = product_snapshot(deps, product_id, from_memory=False)
            if customer_id is not None and snapshot.product.available >= quantity:
                snapshot = _within_limit(deps, snapshot, customer_id, quantity)
    # Never a refusal without proof: an Idempotency-Key would record it. The client retries.
    raise TransientStorageError(f"lost the race for product {product_id} {ATTEMPTS} times; retry")


def _write_basis(deps: Deps, product_id: int, quantity: int, customer_id: str | None) -> ProductSnapshot:
    """The snapshot to try the sale on: a recent one that shows enough units and needs no
    customer it was not given (no round trip even to the version store), else a current one
    (which may prove a refusal), else a read."""
    recent = deps.cache.recent(product_id)
    if (
        recent is not None
        and recent.product.available >= quantity
        and (customer_id is not None or recent.product.max_per_customer is None)
    ):
        return recent
    return product_snapshot(deps, product_id)


def _within_limit(deps: Deps, snapshot: ProductSnapshot, customer_id: str, quantity: int) -> ProductSnapshot:
    """After a lost attempt: the snapshot to try again on, unless the customer's claim and the
    product's limit, read together, prove the limit reached. Lapsed claims are given back
    before such a refusal (they may be the customer's own expired holds)."""
    product_id = snapshot.product.id
    with deps.read() as uow:
        standing = uow.claims.standing(product_id, customer_id)
    if not standing.exceeded_by(quantity):
        return snapshot
    if not snapshot.lapse_due(deps.clock.now()):
        raise LimitPerCustomerReached()
    transaction(deps, lambda uow, now: reclaim_expired(uow, deps.policy, product_id, now))
    return product_snapshot(deps, product_id, from_memory=False)
