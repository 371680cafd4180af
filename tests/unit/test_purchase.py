"""Direct purchase: units leave stock at once, the order is `created`, processing follows."""

from __future__ import annotations

from decimal import Decimal

import attrs
import pytest

from stockade.application.claim import ATTEMPTS
from stockade.application.commands import Purchase
from stockade.application.idempotency import answer_once, request_key
from stockade.application.ports import ConditionFailed, TransientStorageError
from stockade.application.purchase import purchase
from stockade.application.services import PROCESS_ORDER
from stockade.domain.errors import OutOfStock, ProductNotFound
from stockade.domain.model import OrderStatus


def test_purchase_creates_an_order_and_takes_units_from_stock(shop, store, phone):
    view = shop.purchase(phone.id, 3)
    order = store.order(view.order.id)
    assert (order.status, order.quantity, order.total_price, order.hold_id) == (
        OrderStatus.CREATED,
        3,
        Decimal("300.00"),
        None,
    )
    assert (view.product.stock, view.product.reserved) == (7, 0)
    assert (store.product(phone.id).stock, store.product(phone.id).reserved) == (7, 0)


def test_purchase_records_purchase_created(shop, store, phone):
    order = shop.purchase(phone.id, 2).order
    [event] = store.events("purchase_created")
    assert event.data == {"order_id": order.id, "product_id": phone.id, "quantity": 2, "total_price": "200.00"}


def test_purchase_publishes_process_order_after_commit_from_the_outbox(shop, store, publisher, phone):
    order = shop.purchase(phone.id, 1).order
    [row] = store.messages(PROCESS_ORDER)
    assert row.message.payload == {"order_id": order.id} and row.completed_at is None
    assert publisher.published == [row.message]


def test_purchase_of_more_than_available_is_out_of_stock_and_changes_nothing(shop, store, publisher, phone):
    shop.hold(phone.id, 8)
    before = store.product(phone.id)
    with pytest.raises(OutOfStock):
        shop.purchase(phone.id, 3)
    assert store.product(phone.id) == before
    assert store.tables.orders == {}
    assert store.events("purchase_created") == [] and store.messages(PROCESS_ORDER) == []
    assert publisher.published == []


def test_purchase_of_exactly_the_available_units_sells_out(shop, store, phone):
    shop.purchase(phone.id, 10)
    assert store.product(phone.id).available == 0
    with pytest.raises(OutOfStock):
        shop.purchase(phone.id, 1)


def test_purchase_of_unknown_product_is_not_found(shop, store):
    with pytest.raises(ProductNotFound):
        shop.purchase(404, 1)
    assert store.tables.orders == {}


def test_purchase_of_deleted_product_is_not_found(shop, store, phone):
    shop.delete_product(phone.id)
    with pytest.raises(ProductNotFound):
        shop.purchase(phone.id, 1)
    assert store.product(phone.id).stock == 10


def test_purchase_blocked_only_by_expired_unswept_holds_succeeds(shop, store, clock, phone):
    hold = shop.hold(phone.id, 10)
    clock.advance(121)
    view = shop.purchase(phone.id, 10)
    assert (view.product.stock, view.product.reserved) == (0, 0)
    assert store.hold(hold.id).status.value == "expired"
    assert [e.data["hold_id"] for e in store.events("hold_released")] == [hold.id]


def test_purchase_blocked_by_live_holds_stays_out_of_stock(shop, store, clock, phone):
    hold = shop.hold(phone.id, 10)
    clock.advance(119)
    with pytest.raises(OutOfStock):
        shop.purchase(phone.id, 1)
    assert store.hold(hold.id).status.value == "active"


def test_a_price_change_after_the_buyers_read_charges_the_new_price(shop, store, phone):
    shop.get_product(phone.id)  # this process remembers the product at 100.00
    shop.purchase(phone.id, 1)  # its own sale outdates that memory, which stays the basis to try on
    shop.update_product(phone.id, price="120.00")

    view = shop.purchase(phone.id, 2)

    assert view.order.total_price == Decimal("240.00") and view.product.price == Decimal("120.00")
    assert store.order(view.order.id).total_price == Decimal("240.00")
    assert store.product(phone.id).stock == 7


def test_a_purchase_shows_the_name_and_stock_the_sale_left(shop, store, phone):
    shop.get_product(phone.id)
    shop.update_product(phone.id, name="Phone 2")  # outdates the remembered "Phone"

    view = shop.purchase(phone.id, 3)

    assert (view.product.name, view.product.stock) == ("Phone 2", 7)


def test_a_sold_out_refusal_from_memory_still_lets_lapsed_holds_go(shop, store, clock, phone):
    shop.hold(phone.id, 10)
    with pytest.raises(OutOfStock):
        shop.purchase(phone.id, 1)  # proven from memory: the hold has not expired
    clock.advance(shop.deps.policy.hold_ttl.total_seconds())

    view = shop.purchase(phone.id, 1)  # the remembered refusal is no proof past the hold's expiry

    assert view.product.stock == 9 and store.product(phone.id).reserved == 0


class _RacesLost:
    """A unit of work whose first `losses` conditional sales lose their race (as if another
    buyer's statement matched first each time), though the units are there."""

    def __init__(self, make_uow, losses: int) -> None:
        self.make_uow, self.losses = make_uow, losses

    def __call__(self):
        uow = self.make_uow()
        take = uow.products.take

        def losing_take(*args, **kwargs):
            if self.losses > 0:
                self.losses -= 1
                raise ConditionFailed()
            return take(*args, **kwargs)

        uow.products.take = losing_take
        return uow


def test_a_purchase_that_loses_races_tries_again_while_units_are_there(shop, store, phone):
    races = _RacesLost(shop.deps.uow, losses=ATTEMPTS - 1)
    deps = attrs.evolve(shop.deps, uow=races)

    view = purchase(deps, Purchase(phone.id, 1))

    assert races.losses == 0 and view.product.stock == 9 and store.product(phone.id).stock == 9


def test_a_purchase_that_loses_every_race_is_never_refused_without_proof(shop, store, phone):
    deps = attrs.evolve(shop.deps, uow=_RacesLost(shop.deps.uow, losses=10 * ATTEMPTS))
    command = Purchase(phone.id, 1)

    with pytest.raises(TransientStorageError):  # 503, retry: the units were there all along
        answer_once(deps, request_key("orders.purchase", "k", command), lambda k: purchase(deps, command, k))

    assert store.tables.idempotency == {} and store.product(phone.id).stock == 10
