"""Extending a hold: later, never past its longest life, never reviving one (contract section 12)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from stockade.domain.errors import HoldAlreadyUsed, HoldExpired, HoldNotFound, HoldReleased, HoldTooOld
from stockade.domain.model import HoldStatus
from stockade.entrypoints.settings import Settings, SettingsError

from .fakes import make_shop


def test_an_extension_moves_the_expiry_later_and_keeps_the_units_reserved(shop, store, clock, phone):
    hold = shop.hold(phone.id, 3)
    clock.advance(100)

    view = shop.extend_hold(hold.id, 60)

    assert view.status_now == "active"
    assert view.hold.expires_at == hold.expires_at + timedelta(seconds=60)
    assert store.hold(hold.id).expires_at == view.hold.expires_at
    assert store.product(phone.id).reserved == 3
    [event] = store.events("hold_extended")
    assert event.data == {
        "hold_id": hold.id,
        "product_id": phone.id,
        "extend_seconds": 60,
        "expires_at": "2026-01-07T08:03:00.000000Z",
    }


def test_extensions_add_up(shop, store, phone):
    hold = shop.hold(phone.id, 3)

    shop.extend_hold(hold.id, 30)
    shop.extend_hold(hold.id, 30)

    assert store.hold(hold.id).expires_at == hold.expires_at + timedelta(seconds=60)


def test_an_extension_stops_at_the_longest_life_of_a_hold(shop, store, phone):
    hold = shop.hold(phone.id, 3)
    for _ in range(6):  # 120 s TTL + 6 x 120 s = 840 s
        shop.extend_hold(hold.id, 120)

    view = shop.extend_hold(hold.id, 120)

    assert view.hold.expires_at == hold.created_at + timedelta(seconds=900)
    with pytest.raises(HoldTooOld) as refused:
        shop.extend_hold(hold.id, 1)
    assert refused.value.message == "Hold cannot be extended further"
    assert store.hold(hold.id).expires_at == hold.created_at + timedelta(seconds=900)
    assert len(store.events("hold_extended")) == 7


def test_the_longest_life_follows_the_policy():
    shop, _, _, _ = make_shop(hold_max_lifetime=timedelta(seconds=150))
    product = shop.create_product("Pen", "1.00", 5)
    hold = shop.hold(product.id, 1)

    assert shop.extend_hold(hold.id, 120).hold.expires_at == hold.created_at + timedelta(seconds=150)


def test_an_extended_hold_outlives_its_first_expiry(shop, store, clock, phone):
    hold = shop.hold(phone.id, 3)
    shop.extend_hold(hold.id, 60)
    clock.advance(150)

    assert shop.sweep().holds_expired == 0
    assert shop.get_hold(hold.id).status_now == "active"
    order = shop.order_from_hold(hold.id).order
    assert order.quantity == 3


def test_an_extended_hold_expires_at_its_new_expiry(shop, store, clock, phone):
    hold = shop.hold(phone.id, 3)
    shop.extend_hold(hold.id, 60)
    clock.advance(180)

    assert shop.sweep().holds_expired == 1
    assert store.product(phone.id).reserved == 0


def test_an_expired_hold_is_not_revived_even_before_the_sweep(shop, store, clock, phone):
    hold = shop.hold(phone.id, 3)
    clock.advance(120)

    with pytest.raises(HoldExpired):
        shop.extend_hold(hold.id, 60)

    assert store.hold(hold.id) == hold
    assert shop.sweep().holds_expired == 1
    assert store.product(phone.id).reserved == 0
    assert not store.events("hold_extended")


@pytest.mark.parametrize(
    ("end", "refusal"),
    [
        ("used", HoldAlreadyUsed),
        ("released", HoldReleased),
        ("swept", HoldExpired),
    ],
)
def test_a_hold_that_ended_cannot_be_extended(shop, store, clock, phone, end, refusal):
    hold = shop.hold(phone.id, 3)
    if end == "used":
        shop.order_from_hold(hold.id)
    elif end == "released":
        shop.release_hold(hold.id)
    else:
        clock.advance(120)
        shop.sweep()
    before = store.hold(hold.id)

    with pytest.raises(refusal):
        shop.extend_hold(hold.id, 60)

    assert store.hold(hold.id) == before
    assert store.hold(hold.id).status is not HoldStatus.ACTIVE
    assert not store.events("hold_extended")


def test_extending_an_unknown_hold_is_not_found(shop):
    with pytest.raises(HoldNotFound):
        shop.extend_hold(99, 60)


def test_the_longest_hold_life_defaults_to_900_seconds_and_is_read_from_the_environment():
    assert Settings().hold_max_seconds == 900
    assert Settings.from_env({"STOCKADE_HOLD_MAX_SECONDS": "1200"}).hold_max_seconds == 1200


def test_a_longest_hold_life_shorter_than_the_hold_ttl_is_refused():
    with pytest.raises(SettingsError, match="STOCKADE_HOLD_MAX_SECONDS"):
        Settings.from_env({"STOCKADE_HOLD_TTL_SECONDS": "300", "STOCKADE_HOLD_MAX_SECONDS": "299"})
