"""Stock adjustments by a delta with a reason, and their trail (contract section 11)."""

from __future__ import annotations

import pytest

from stockade.application.commands import AdjustStock
from stockade.domain.errors import (
    IdempotencyKeyReused,
    ProductNotFound,
    StockAdjustmentRefused,
    StockBelowReserved,
)
from stockade.domain.model import MAX_STOCK, StockLevels


def levels(store, product_id: int) -> tuple[int, int]:
    product = store.product(product_id)
    return product.stock, product.reserved


@pytest.mark.parametrize(
    ("stock", "reserved", "delta", "after"),
    [(10, 4, 5, 15), (10, 4, -6, 4), (0, 0, MAX_STOCK, MAX_STOCK), (MAX_STOCK, 0, -MAX_STOCK, 0)],
)
def test_an_adjustment_keeps_available_and_stock_within_bounds(stock, reserved, delta, after):
    assert StockLevels(stock, reserved).adjust(delta) == StockLevels(after, reserved)


@pytest.mark.parametrize(
    ("stock", "reserved", "delta", "message"),
    [
        (10, 4, -7, StockAdjustmentRefused.BELOW_RESERVED),
        (10, 0, -11, StockAdjustmentRefused.BELOW_RESERVED),
        (MAX_STOCK - 1, 0, 2, StockAdjustmentRefused.ABOVE_MAXIMUM),
    ],
)
def test_an_adjustment_past_a_bound_is_refused(stock, reserved, delta, message):
    with pytest.raises(StockAdjustmentRefused) as refused:
        StockLevels(stock, reserved).adjust(delta)
    assert refused.value.message == message


def test_an_adjustment_changes_stock_and_is_kept_in_the_trail(shop, store, clock, phone):
    adjustment = shop.adjust_stock(phone.id, 5, "delivery")

    assert (adjustment.product_id, adjustment.delta, adjustment.reason, adjustment.stock_after) == (
        phone.id,
        5,
        "delivery",
        15,
    )
    assert adjustment.created_at == clock.now()
    assert levels(store, phone.id) == (15, 0)
    assert shop.list_adjustments(phone.id) == ([adjustment], None)
    [event] = store.events("stock_adjusted")
    assert event.data == {
        "adjustment_id": adjustment.id,
        "product_id": phone.id,
        "delta": 5,
        "reason": "delivery",
        "stock_after": 15,
    }


def test_a_negative_adjustment_may_take_every_available_unit(shop, store, phone):
    shop.hold(phone.id, 4)

    assert shop.adjust_stock(phone.id, -6, "damaged").stock_after == 4

    assert levels(store, phone.id) == (4, 4)
    assert shop.check().ok


def test_an_adjustment_below_the_reserved_units_is_refused_and_changes_nothing(shop, store, phone):
    shop.hold(phone.id, 4)

    with pytest.raises(StockAdjustmentRefused) as refused:
        shop.adjust_stock(phone.id, -7, "damaged")

    assert refused.value.message == StockAdjustmentRefused.BELOW_RESERVED
    assert levels(store, phone.id) == (10, 4)
    assert store.tables.adjustments == {}
    assert not store.events("stock_adjusted")


def test_an_adjustment_above_the_largest_stock_is_refused(shop, store, phone):
    with pytest.raises(StockAdjustmentRefused) as refused:
        shop.adjust_stock(phone.id, MAX_STOCK - 9, "miscount")

    assert refused.value.message == StockAdjustmentRefused.ABOVE_MAXIMUM
    assert levels(store, phone.id) == (10, 0)
    assert store.tables.adjustments == {}


def test_an_adjustment_blocked_only_by_expired_unswept_holds_applies(shop, store, clock, phone):
    shop.hold(phone.id, 4)
    clock.advance(120)

    assert shop.adjust_stock(phone.id, -10, "recall").stock_after == 0

    assert levels(store, phone.id) == (0, 0)
    assert shop.check().ok


@pytest.mark.parametrize("deleted", [False, True], ids=["unknown", "deleted"])
def test_adjusting_a_product_that_is_not_there_is_not_found(shop, store, phone, deleted):
    product_id = phone.id if deleted else 99
    if deleted:
        shop.delete_product(phone.id)
    with pytest.raises(ProductNotFound):
        shop.adjust_stock(product_id, 1, "delivery")
    with pytest.raises(ProductNotFound):
        shop.list_adjustments(product_id)
    assert store.tables.adjustments == {}


def test_an_adjustment_is_visible_to_the_next_product_read(shop, phone):
    assert shop.get_product(phone.id).stock == 10  # now in the cache

    shop.adjust_stock(phone.id, -3, "damaged")

    assert shop.get_product(phone.id).stock == 7


def test_a_put_that_changes_stock_is_recorded_as_a_set_with_its_delta(shop, store, phone):
    shop.purchase(phone.id, 3)

    shop.update_product(phone.id, stock=20)

    [adjustment], _ = shop.list_adjustments(phone.id)
    assert (adjustment.delta, adjustment.reason, adjustment.stock_after) == (13, "set", 20)
    assert store.events("stock_adjusted")[0].data["reason"] == "set"


def test_a_put_that_sets_stock_lower_records_a_negative_delta(shop, phone):
    shop.update_product(phone.id, stock=4)

    [adjustment], _ = shop.list_adjustments(phone.id)
    assert (adjustment.delta, adjustment.stock_after) == (-6, 4)


@pytest.mark.parametrize("changes", [{"name": "Tablet"}, {"stock": 10}, {"price": "5.00", "stock": 10}])
def test_a_put_that_leaves_stock_as_it_is_records_no_adjustment(shop, store, phone, changes):
    shop.update_product(phone.id, **changes)

    assert store.tables.adjustments == {}
    assert not store.events("stock_adjusted")


def test_a_refused_put_records_no_adjustment(shop, store, phone):
    shop.hold(phone.id, 5)

    with pytest.raises(StockBelowReserved):
        shop.update_product(phone.id, stock=4)

    assert store.tables.adjustments == {}


def test_the_trail_is_newest_first_a_page_at_a_time(shop, phone):
    made = [shop.adjust_stock(phone.id, delta, f"r{delta}") for delta in (1, 2, 3, 4, 5)]
    other = shop.create_product("Other", "1.00", 1)
    shop.adjust_stock(other.id, 1, "elsewhere")

    first, after_first = shop.list_adjustments(phone.id, limit=2)
    second, after_second = shop.list_adjustments(phone.id, limit=2, before_id=after_first)
    third, after_third = shop.list_adjustments(phone.id, limit=2, before_id=after_second)

    assert [a.delta for a in first + second + third] == [5, 4, 3, 2, 1]
    assert (after_first, after_second, after_third) == (made[3].id, made[1].id, None)
    assert shop.list_adjustments(phone.id, limit=5) == (made[::-1], None)


def test_a_keyed_adjustment_is_applied_once_and_its_answer_replayed(shop, store, phone):
    command = AdjustStock(phone.id, 5, "delivery")

    first = shop.adjust_stock_once(command, "k1")
    again = shop.adjust_stock_once(command, "k1")

    assert (first.replayed, again.replayed) == (False, True)
    assert again.result == first.result
    assert levels(store, phone.id) == (15, 0)
    assert len(store.tables.adjustments) == 1
    with pytest.raises(IdempotencyKeyReused):
        shop.adjust_stock_once(AdjustStock(phone.id, 6, "delivery"), "k1")


def test_a_keyed_adjustment_refusal_is_replayed_even_once_it_would_fit(shop, store, phone):
    command = AdjustStock(phone.id, -11, "recall")

    first = shop.adjust_stock_once(command, "k1")
    shop.adjust_stock(phone.id, 5, "delivery")
    again = shop.adjust_stock_once(command, "k1")

    assert isinstance(first.refusal, StockAdjustmentRefused) and isinstance(again.refusal, StockAdjustmentRefused)
    assert again.replayed
    assert levels(store, phone.id) == (15, 0)
