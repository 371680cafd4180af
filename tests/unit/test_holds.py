"""Holds: reserve units for a while, read them, release them."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stockade.domain.errors import HoldAlreadyUsed, HoldNotFound, OutOfStock, ProductNotFound
from stockade.domain.model import HoldStatus


def test_hold_reserves_units_until_its_ttl(shop, store, clock, phone):
    hold = shop.hold(phone.id, 4)
    assert (hold.status, hold.quantity, hold.expires_at) == (HoldStatus.ACTIVE, 4, clock.now() + timedelta(seconds=120))
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (10, 4)
    assert store.events("hold_created")[0].data["hold_id"] == hold.id


def test_hold_of_more_than_available_is_out_of_stock_and_reserves_nothing(shop, store, phone):
    shop.purchase(phone.id, 7)
    with pytest.raises(OutOfStock):
        shop.hold(phone.id, 4)
    assert store.product(phone.id).reserved == 0
    assert store.tables.holds == {}


def test_hold_of_unknown_product_is_not_found(shop):
    with pytest.raises(ProductNotFound):
        shop.hold(7, 1)


def test_hold_blocked_only_by_expired_unswept_holds_succeeds(shop, store, clock, phone):
    old = shop.hold(phone.id, 10)
    clock.advance(120)
    new = shop.hold(phone.id, 10)
    assert store.hold(old.id).status is HoldStatus.EXPIRED
    assert store.hold(new.id).status is HoldStatus.ACTIVE
    assert store.product(phone.id).reserved == 10


def test_hold_past_its_ttl_reads_as_expired_before_any_sweep(shop, store, clock, phone):
    hold = shop.hold(phone.id, 1)
    assert shop.get_hold(hold.id).status_now == "active"
    clock.advance(120)
    assert shop.get_hold(hold.id).status_now == "expired"
    assert store.hold(hold.id).status is HoldStatus.ACTIVE


def test_unknown_hold_is_not_found(shop):
    with pytest.raises(HoldNotFound):
        shop.get_hold(1)
    with pytest.raises(HoldNotFound):
        shop.release_hold(1)


def test_released_hold_gives_its_units_back_at_once(shop, store, phone):
    hold = shop.hold(phone.id, 4)
    shop.release_hold(hold.id)
    assert store.product(phone.id).reserved == 0
    assert store.hold(hold.id).status is HoldStatus.RELEASED
    [event] = store.events("hold_released")
    assert event.data == {"hold_id": hold.id, "product_id": phone.id, "quantity": 4, "reason": "released"}


def test_releasing_a_released_hold_again_changes_nothing(shop, store, phone):
    hold = shop.hold(phone.id, 4)
    shop.hold(phone.id, 2)
    shop.release_hold(hold.id)
    shop.release_hold(hold.id)
    assert store.product(phone.id).reserved == 2
    assert len(store.events("hold_released")) == 1


def test_releasing_an_expired_hold_gives_units_back_once(shop, store, clock, phone):
    hold = shop.hold(phone.id, 4)
    clock.advance(121)
    shop.release_hold(hold.id)
    shop.release_hold(hold.id)
    shop.sweep()
    assert store.product(phone.id).reserved == 0
    assert store.hold(hold.id).status is HoldStatus.EXPIRED
    assert len(store.events("hold_released")) == 1


def test_releasing_a_used_hold_is_refused_and_keeps_the_order_reserved(shop, store, phone):
    hold = shop.hold(phone.id, 4)
    shop.order_from_hold(hold.id)
    with pytest.raises(HoldAlreadyUsed):
        shop.release_hold(hold.id)
    assert store.product(phone.id).reserved == 4
