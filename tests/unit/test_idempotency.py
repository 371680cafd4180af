"""The Idempotency-Key wrapper of the POST endpoints: one effect, the first response replayed."""

from __future__ import annotations

import json

import pytest

from stockade.application.commands import Purchase
from stockade.application.idempotency import Replay, run_idempotent
from stockade.application.ports import StoredResponse
from stockade.application.purchase import purchase
from stockade.domain.errors import IdempotencyKeyInFlight, IdempotencyKeyReused, OutOfStock


def render(view):
    return StoredResponse(201, json.dumps({"order_id": view.order.id}))


def render_error(error):
    return StoredResponse(409, json.dumps({"message": error.message}))


@pytest.fixture
def buy(shop, phone):
    """POST /api/orders/purchase behind an Idempotency-Key: (key, quantity) -> result or Replay."""

    def call(key, quantity=1):
        return run_idempotent(
            shop.deps, "purchase", key, f"{phone.id}:{quantity}",
            lambda before_commit: purchase(shop.deps, Purchase(phone.id, quantity), before_commit),
            render, render_error,
        )

    return call


def claim(shop, key, fingerprint):
    """A request that claimed `key` and has not finished (or died)."""
    now = shop.deps.clock.now()
    with shop.deps.uow() as uow:
        uow.idempotency.claim("purchase", key, fingerprint, now, now)
        uow.commit()


def test_first_request_runs_the_action_and_stores_its_response(buy, store, phone):
    view = buy("k1")
    assert store.product(phone.id).stock == 9
    row = store.tables.idempotency[("purchase", "k1")]
    assert row.response == StoredResponse(201, json.dumps({"order_id": view.order.id}))


def test_repeated_request_replays_the_first_response_without_a_second_effect(buy, store, phone):
    view = buy("k1")
    again = buy("k1")
    assert again == Replay(StoredResponse(201, json.dumps({"order_id": view.order.id})))
    assert store.product(phone.id).stock == 9
    assert len(store.tables.orders) == 1


def test_same_key_with_a_different_request_is_refused(buy, store, phone):
    buy("k1", quantity=1)
    with pytest.raises(IdempotencyKeyReused):
        buy("k1", quantity=2)
    assert store.product(phone.id).stock == 9


def test_same_key_in_another_scope_is_a_different_request(shop, buy):
    buy("k1")
    result = run_idempotent(shop.deps, "holds", "k1", "other", lambda bc: "done",
                            lambda r: StoredResponse(201, r), render_error)
    assert result == "done"


def test_request_while_the_first_is_in_flight_is_refused_without_effect(shop, buy, store, phone):
    claim(shop, "k1", f"{phone.id}:1")
    with pytest.raises(IdempotencyKeyInFlight):
        buy("k1")
    assert store.product(phone.id).stock == 10


def test_stale_in_flight_claim_is_taken_over(shop, buy, store, clock, phone):
    claim(shop, "k1", f"{phone.id}:1")
    clock.advance(61)
    buy("k1")
    assert store.product(phone.id).stock == 9
    assert store.tables.idempotency[("purchase", "k1")].response is not None


def test_domain_refusal_is_stored_and_replayed(buy, store, phone):
    with pytest.raises(OutOfStock):
        buy("k1", quantity=11)
    store.corrupt_product(phone.id, stock=100)  # even if stock came back, the refusal stands
    assert buy("k1", quantity=11) == Replay(StoredResponse(409, json.dumps({"message": "Out of stock"})))
    assert store.product(phone.id).stock == 100


def test_response_is_stored_in_the_same_transaction_as_the_effect(shop, store, phone):
    def action(before_commit):
        with shop.deps.uow() as uow:
            uow.products.take(phone.id, 1, shop.deps.clock.now())
            before_commit(uow, "sold")
            raise RuntimeError("connection lost before commit")

    with pytest.raises(RuntimeError):
        run_idempotent(shop.deps, "purchase", "k1", "f", action, lambda r: StoredResponse(201, r), render_error)
    assert store.product(phone.id).stock == 10
    assert store.tables.idempotency[("purchase", "k1")].response is None  # nothing stored, claim freed
    with shop.deps.uow() as uow:
        assert uow.idempotency.claim("purchase", "k1", "g", shop.deps.clock.now(), shop.deps.clock.now()).fresh


def test_request_that_failed_without_effect_can_be_retried_with_the_same_key(shop, buy, store, phone):
    def broken(before_commit):
        raise RuntimeError("database unreachable")

    with pytest.raises(RuntimeError):
        run_idempotent(shop.deps, "purchase", "k1", f"{phone.id}:1", broken, render, render_error)
    buy("k1")
    assert store.product(phone.id).stock == 9


def test_a_request_whose_stalled_claim_was_taken_over_rolls_back_its_effect(shop, buy, store, clock, phone):
    """A request stalls past the takeover age; a retry takes its key over and buys. When
    the first wakes up and tries to commit, its sale is refused and rolled back."""

    def stalled(before_commit):
        clock.advance(61)
        assert buy("k1") is not None  # the client's retry, under the same key, wins the key
        return purchase(shop.deps, Purchase(phone.id, 1), before_commit)

    with pytest.raises(IdempotencyKeyInFlight):
        run_idempotent(shop.deps, "purchase", "k1", f"{phone.id}:1", stalled, render, render_error)
    assert store.product(phone.id).stock == 9  # one sale, not two
    assert len(store.tables.orders) == 1
    order_id = next(iter(store.tables.orders))
    assert buy("k1") == Replay(StoredResponse(201, json.dumps({"order_id": order_id})))
