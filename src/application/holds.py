"""Holds: reserve units for a short time, read them, extend them, release them."""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from stockade.application.claim import claim_units
from stockade.application.commands import ExtendHold, HoldSearch, HoldView, PlaceHold
from stockade.application.expiry import give_back
from stockade.application.ports import RequestKey, UnitOfWork
from stockade.application.records import encode_result
from stockade.application.services import Deps, keyset_page, transaction
from stockade.domain.errors import HoldAlreadyUsed, HoldNotFound
from stockade.domain.model import Hold, HoldStatus, Product, utc_timestamp


def place_hold(deps: Deps, cmd: PlaceHold, key: RequestKey | None = None) -> Hold:
    """Reserve units until now + hold TTL. Raises ProductNotFound, OutOfStock, CustomerRequired,
    LimitPerCustomerReached."""

    def write(uow: UnitOfWork, now: datetime, product: Product) -> Hold:
        hold = uow.holds.add(cmd.product_id, cmd.quantity, cmd.customer_id, now + deps.policy.hold_ttl, now)
        uow.events.record(
            "hold_created",
            {
                "hold_id": hold.id,
                "product_id": cmd.product_id,
                "quantity": cmd.quantity,
                "expires_at": utc_timestamp(hold.expires_at),
            },
            now,
        )
        # last: the shortest row lock
        uow.products.reserve(cmd.product_id, cmd.quantity, product.max_per_customer, now)
        return hold

    return claim_units(deps, cmd.product_id, cmd.quantity, write, key, encode_result, cmd.customer_id)


def get_hold(deps: Deps, hold_id: int) -> HoldView:
    """A hold with the status a client sees now (expired even before the sweep)."""
    with deps.read() as uow:
        hold = uow.holds.get(hold_id)
    if hold is None:
        raise HoldNotFound()
    return HoldView(hold, hold.status_at(deps.clock.now()).value)


def extend_hold(deps: Deps, cmd: ExtendHold) -> HoldView:
    """Move an active, unexpired hold's expiry later by `extend_seconds`, never past its
    creation + the longest hold life. Raises HoldNotFound, HoldAlreadyUsed, HoldReleased,
    HoldExpired (swept or not), HoldTooOld.

    One conditional update on the expiry just read: a racing extension makes it read again
    and extend from the new expiry; a sweeper expiring the hold makes it refuse.
    """
    extend = timedelta(seconds=cmd.extend_seconds)

    def work(uow: UnitOfWork, now: datetime) -> HoldView:
        # Each lost race means another extension moved the expiry toward its bound, or the
        # hold ended: the loop ends in a change or a refusal.
        while True:
            hold = uow.holds.get(cmd.hold_id)
            if hold is None:
                raise HoldNotFound()
            expires_at = hold.extended_expiry(extend, deps.policy.hold_max_lifetime, now)
            if uow.holds.extend(hold, expires_at, now):
                break
        uow.events.record(
            "hold_extended",
            {
                "hold_id": hold.id,
                "product_id": hold.product_id,
                "extend_seconds": cmd.extend_seconds,
                "expires_at": utc_timestamp(expires_at),
            },
            now,
        )
        return HoldView(attrs.evolve(hold, expires_at=expires_at, updated_at=now), HoldStatus.ACTIVE.value)

    return transaction(deps, work)


def list_holds(deps: Deps, search: HoldSearch) -> tuple[list[HoldView], int | None]:
    """One page of holds by id, each with the status a client sees now, and the `after_id` of
    the next page (None at the end)."""
    now = deps.clock.now()
    with deps.read() as uow:
        page, next_after_id = keyset_page(
            uow.holds.search(attrs.evolve(search, limit=search.limit + 1), now), search.limit
        )
    return [HoldView(h, h.status_at(now).value) for h in page], next_after_id


def release_hold(deps: Deps, hold_id: int) -> None:
    """Give an active hold's units back now. Idempotent for released/expired holds.
    Raises HoldNotFound, HoldAlreadyUsed."""

    def work(uow: UnitOfWork, now: datetime) -> None:
        hold = uow.holds.get(hold_id)
        if hold is None:
            raise HoldNotFound()
        if hold.status is HoldStatus.USED:
            raise HoldAlreadyUsed()
        if hold.status is not HoldStatus.ACTIVE:
            return
        ending = HoldStatus.EXPIRED if hold.is_expired(now) else HoldStatus.RELEASED
        if not uow.holds.end(hold.id, ending, now):
            # Someone else ended it first: became an order, or swept.
            again = uow.holds.get(hold_id)
            if again is not None and again.status is HoldStatus.USED:
                raise HoldAlreadyUsed()
            return
        give_back(uow, [(hold.product_id, hold.customer_id, hold.quantity)], now)
        uow.events.record(
            "hold_released",
            {"hold_id": hold.id, "product_id": hold.product_id, "quantity": hold.quantity, "reason": ending.value},
            now,
        )

    transaction(deps, work)
