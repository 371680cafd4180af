"""Product use cases: create, read, list, update with If-Match, delete."""

from __future__ import annotations

from decimal import Decimal

import pytest

from stockade.domain.errors import PreconditionFailed, ProductHasReservations, ProductNotFound, StockBelowReserved


def test_created_product_has_two_place_price_and_nothing_reserved(shop, store):
    product = shop.create_product("Phone", "15000000", 5)
    assert shop.get_product(product.id) == product
    assert str(product.price) == "15000000.00"
    assert (product.stock, product.reserved, product.available) == (5, 0, 5)
    assert store.events("product_created")[0].data["product_id"] == product.id


def test_products_are_listed_by_id_in_pages(shop):
    ids = [shop.create_product(f"P{i}", 1, 1).id for i in range(3)]
    page, after = shop.list_products(limit=2)
    assert [p.id for p in page] == ids[:2] and after == ids[1]
    page, after = shop.list_products(limit=2, after_id=after)
    assert [p.id for p in page] == ids[2:] and after is None


def test_update_with_matching_if_match_applies_and_changes_the_etag(shop, phone):
    updated = shop.update_product(phone.id, stock=20, price=Decimal("9.5"), if_match=(phone.version,))
    assert (updated.stock, updated.price) == (20, Decimal("9.50"))
    assert updated.etag != phone.etag
    assert shop.get_product(phone.id) == updated


def test_update_after_a_sale_with_the_old_if_match_is_a_failed_precondition(shop, store, phone):
    shop.purchase(phone.id, 1)
    with pytest.raises(PreconditionFailed):
        shop.update_product(phone.id, stock=100, if_match=(phone.version,))
    assert store.product(phone.id).stock == 9


def test_update_without_if_match_applies_unconditionally(shop, phone):
    shop.purchase(phone.id, 1)
    assert shop.update_product(phone.id, stock=100).stock == 100


def test_stock_cannot_be_set_below_reserved(shop, store, phone):
    shop.hold(phone.id, 4)
    with pytest.raises(StockBelowReserved):
        shop.update_product(phone.id, stock=3)
    assert store.product(phone.id).stock == 10
    assert shop.update_product(phone.id, stock=4).available == 0


def test_stock_can_be_set_below_units_of_expired_unswept_holds(shop, clock, phone):
    shop.hold(phone.id, 4)
    clock.advance(121)
    assert shop.update_product(phone.id, stock=1).reserved == 0


def test_update_of_unknown_product_is_not_found(shop):
    with pytest.raises(ProductNotFound):
        shop.update_product(99, name="x")


def test_product_read_after_an_update_is_not_stale_from_the_cache(shop, phone):
    shop.get_product(phone.id)
    shop.update_product(phone.id, name="Renamed")
    assert shop.get_product(phone.id).name == "Renamed"


def test_product_read_after_a_sale_shows_the_new_stock(shop, phone):
    shop.get_product(phone.id)
    shop.purchase(phone.id, 3)
    assert shop.get_product(phone.id).stock == 7


def test_deleted_product_is_gone_from_reads(shop, phone):
    shop.get_product(phone.id)
    shop.delete_product(phone.id)
    with pytest.raises(ProductNotFound):
        shop.get_product(phone.id)
    assert shop.list_products()[0] == []


def test_product_with_an_active_hold_cannot_be_deleted(shop, phone):
    shop.hold(phone.id, 1)
    with pytest.raises(ProductHasReservations):
        shop.delete_product(phone.id)
    assert shop.get_product(phone.id).reserved == 1


def test_product_with_a_pending_order_cannot_be_deleted(shop, clock, phone):
    shop.order_from_hold(shop.hold(phone.id, 1).id)
    clock.advance(121)
    with pytest.raises(ProductHasReservations):
        shop.delete_product(phone.id)


def test_product_can_be_deleted_once_its_holds_expired_even_unswept(shop, store, clock, phone):
    hold = shop.hold(phone.id, 2)
    clock.advance(121)
    shop.delete_product(phone.id)
    assert store.product(phone.id).deleted_at is not None
    assert store.hold(hold.id).status.value == "expired"


def test_deleted_product_keeps_serving_its_orders(shop, phone):
    order = shop.purchase(phone.id, 1).order
    shop.delete_product(phone.id)
    assert shop.get_order(order.id).product.name == "Phone"


def test_deleting_an_unknown_product_is_not_found(shop):
    with pytest.raises(ProductNotFound):
        shop.delete_product(42)
