"""The shared shape of taking units (purchase) and holding them: the hot path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from stockade.application.expiry import reclaim_expired
from stockade.application.ports import UnitOfWork
from stockade.application.services import Deps, retrying
from stockade.domain.errors import OutOfStock, ProductNotFound

T = TypeVar("T")
BeforeCommit = Callable[[UnitOfWork, object], None]

_LOST_RACE = object()


def claim_units(
    deps: Deps,
    product_id: int,
    quantity: int,
    take: Callable[[UnitOfWork, datetime], bool],
    write: Callable[[UnitOfWork, datetime], Callable[[UnitOfWork], T]],
    before_commit: BeforeCommit | None = None,
) -> T:
    """Take units (purchase) or hold them: one plain read, then one short write transaction.

    The read runs outside any write transaction and takes no lock: one statement that
    returns the product and whether it has expired holds or overdue orders. A sold-out
    request ends there (on MySQL a single round trip; it never waits for the hot row's
    lock, nor takes SQLite's write lock). Otherwise the write transaction starts with
    `take`, the one conditional UPDATE that decides, then `write` inserts the rows (order
    or hold, outbox, events) and returns a function that builds the result. Expired,
    unswept holds and overdue orders are released before refusing.
    Raises ProductNotFound or OutOfStock.
    """
    with deps.read() as uow:
        product, lapsed = uow.products.for_sale(product_id, deps.clock.now())
    if product is None:
        raise ProductNotFound()
    short = product.available < quantity
    if short and not lapsed:
        raise OutOfStock()

    def attempt(reclaim_first: bool) -> T | object:
        now = deps.clock.now()
        with deps.uow() as uow:
            freed = 0
            if reclaim_first and uow.products.has_lapsed_claims(product_id, now):
                freed = reclaim_expired(uow, deps.policy, product_id, now)
            # The conditional UPDATE goes first: a statement that took a shared lock on the
            # product row before it (a foreign-key check, a locking read) would let two
            # buyers deadlock upgrading to exclusive.
            if not take(uow, now):
                if uow.products.get(product_id) is None:
                    raise ProductNotFound()  # deleted since the read
                if freed:
                    uow.commit()  # what was released stays released
                return _LOST_RACE
            finish = write(uow, now)
            uow.product_changed(product_id)
            result = finish(uow)
            if before_commit is not None:
                before_commit(uow, result)
            uow.commit()
            return result

    # A lost race is retried once, releasing lapsed claims first, before the 409.
    for reclaim_first in (short, True):
        result = retrying(lambda: attempt(reclaim_first))
        if result is not _LOST_RACE:
            return result  # type: ignore[return-value]
    raise OutOfStock()
