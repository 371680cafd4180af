"""The shared shape of taking units (purchase) and holding them: the hot path."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import TypeVar

from stockade.application.expiry import reclaim_expired
from stockade.application.ports import UnitOfWork
from stockade.application.services import Deps, retrying
from stockade.domain.errors import OutOfStock, ProductNotFound
from stockade.domain.model import Product

T = TypeVar("T")
BeforeCommit = Callable[[UnitOfWork, object], None]

_LOST_RACE = object()


def claim_units(
    deps: Deps,
    product_id: int,
    quantity: int,
    take: Callable[[UnitOfWork, datetime], bool],
    write: Callable[[UnitOfWork, Product, datetime], Callable[[UnitOfWork], T]],
    before_commit: BeforeCommit | None = None,
) -> T:
    """Run one stock-taking transaction: read, conditional UPDATE, write the rows, commit.

    `take` is the one conditional statement that decides; it runs before `write`, which
    inserts the rows (order or hold, outbox, events) and returns a function that builds
    the result. The cheap reads first make a sold-out rejection cost two reads and a
    rollback; expired, unswept holds and overdue orders are released before refusing.
    Raises ProductNotFound or OutOfStock.
    """

    def attempt(reclaim_first: bool) -> T | object:
        now = deps.clock.now()
        with deps.uow() as uow:
            product = uow.products.get(product_id)
            if product is None:
                raise ProductNotFound()
            freed = 0
            # The probe is a plain read; only when something has lapsed do we take the locks
            # that releasing it needs, so a sold-out rejection stays a pair of reads.
            if (reclaim_first or product.available < quantity) and uow.products.has_lapsed_claims(product_id, now):
                freed = reclaim_expired(uow, deps.policy, product_id, now)
                if freed:
                    product = uow.products.get(product_id)
                    assert product is not None
            if product.available < quantity:
                if freed:
                    uow.commit()
                raise OutOfStock()
            # The conditional UPDATE goes first: the inserts' foreign-key checks take a shared
            # lock on the product row, and two buyers upgrading shared to exclusive deadlock.
            if not take(uow, now):
                return _LOST_RACE  # a concurrent buyer got there first: roll back
            finish = write(uow, product, now)
            uow.product_changed(product_id)
            result = finish(uow)
            if before_commit is not None:
                before_commit(uow, result)
            uow.commit()
            return result

    for reclaim_first in (False, True):
        result = retrying(lambda: attempt(reclaim_first))
        if result is not _LOST_RACE:
            return result  # type: ignore[return-value]
    raise OutOfStock()
