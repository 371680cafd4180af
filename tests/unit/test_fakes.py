"""The fakes keep the port contracts the SQL adapter keeps, so the use-case tests mean something."""

from __future__ import annotations

from datetime import timedelta
from decimal import Decimal

import attrs
import pytest

from stockade.adapters.memory_cache import NullProductCache
from stockade.application.ports import ConditionFailed, DuplicateHoldOrder
from stockade.domain.model import HoldStatus, OrderStatus, PaymentEvent, PaymentResult, WebhookOutcome

from .fakes import InMemoryStore, InMemoryUnitOfWork, RecordingPublisher


@pytest.fixture
def recorder():
    return RecordingPublisher()


@pytest.fixture
def uow(recorder):
    return InMemoryUnitOfWork(InMemoryStore(), recorder, NullProductCache())


@pytest.fixture
def now(clock):
    return clock.now()


def test_take_sells_only_what_is_available_as_the_product_was_read(uow, now):
    with uow:
        product = uow.products.add("P", Decimal("1.00"), 5, None, now)
        uow.products.reserve(product.id, 2, None, now)
        with pytest.raises(ConditionFailed):
            uow.products.take(product, 4, now)
        for changed in (attrs.evolve(product, price=Decimal("0.99")), attrs.evolve(product, name="Renamed")):
            with pytest.raises(ConditionFailed):
                uow.products.take(changed, 1, now)
        assert uow.products.take(product, 3, now) == 2
        assert (uow.products.get(product.id).stock, uow.products.get(product.id).reserved) == (2, 2)


def test_deleted_product_can_be_neither_sold_nor_held(uow, now):
    with uow:
        product = uow.products.add("P", Decimal("1.00"), 5, None, now)
        assert uow.products.soft_delete(product.id, now)
        with pytest.raises(ConditionFailed):
            uow.products.take(product, 1, now)
        with pytest.raises(ConditionFailed):
            uow.products.reserve(product.id, 1, None, now)


def test_hold_can_be_used_only_while_active_and_unexpired(uow, now):
    with uow:
        product = uow.products.add("P", Decimal("1.00"), 5, None, now)
        hold = uow.holds.add(product.id, 1, None, now + timedelta(seconds=10), now)
        with pytest.raises(ConditionFailed):
            uow.holds.use(hold, 1, now + timedelta(seconds=10))
        uow.holds.use(hold, 1, now)
        assert not uow.holds.end(hold.id, HoldStatus.RELEASED, now)


def test_second_order_for_one_hold_is_a_duplicate(uow, now):
    with uow:
        product = uow.products.add("P", Decimal("1.00"), 5, None, now)
        uow.orders.add(product.id, 1, Decimal("1.00"), OrderStatus.PENDING, now, hold_id=1)
        with pytest.raises(DuplicateHoldOrder):
            uow.orders.add(product.id, 1, Decimal("1.00"), OrderStatus.PENDING, now, hold_id=1)


def test_order_transition_applies_only_from_the_given_status(uow, now):
    with uow:
        product = uow.products.add("P", Decimal("1.00"), 5, None, now)
        order_id = uow.orders.add(product.id, 1, Decimal("1.00"), OrderStatus.PENDING, now)
        assert uow.orders.transition(order_id, OrderStatus.PENDING, OrderStatus.PAID, now)
        assert not uow.orders.transition(order_id, OrderStatus.PENDING, OrderStatus.CANCELLED, now)


def test_payment_event_key_is_added_once(uow, now):
    event = PaymentEvent(
        0, "k", 1, PaymentResult.SUCCESS, "1:success", WebhookOutcome.DEFERRED, WebhookOutcome.DEFERRED, "", now, None
    )
    with uow:
        assert uow.payments.add(event)
        assert not uow.payments.add(event)


def test_leaving_without_commit_rolls_everything_back(uow, now):
    with uow:
        uow.products.add("P", Decimal("1.00"), 5, None, now)
        uow.outbox.add("t", {}, now, now)
    with uow:
        assert uow.products.list(10, 0) == []
    assert uow.store.tables.outbox == {}


def test_published_messages_wait_for_commit(uow, recorder, now):
    with uow:
        uow.outbox.add("t", {"order_id": 1}, now, now)
        assert recorder.published == []
        uow.commit()
    assert [m.payload for m in recorder.published] == [{"order_id": 1}]
