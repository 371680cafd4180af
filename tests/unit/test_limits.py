"""Limits per customer (contract section 8) on the fakes: claims, what gives them back, the proofs."""

from __future__ import annotations

import hashlib
import json
from concurrent.futures import ThreadPoolExecutor

import pytest

from stockade.application.commands import PlaceHold, Purchase
from stockade.application.idempotency import request_key
from stockade.application.records import decode, encode_result
from stockade.domain.errors import CustomerRequired, LimitPerCustomerReached
from stockade.domain.model import ClaimStanding, Hold


@pytest.fixture
def limited(shop):
    """A product of 100 units, at most 3 per customer."""
    return shop.create_product("Sneaker", "10.00", 100, max_per_customer=3)


def claims(store) -> dict[tuple[int, str], int]:
    return dict(store.tables.claims)


@pytest.mark.parametrize(
    ("claimed", "limit", "quantity", "exceeded"),
    [(0, None, 10**9, False), (0, 3, 3, False), (2, 3, 1, False), (2, 3, 2, True), (5, 3, 1, True), (0, 1, 2, True)],
)
def test_a_claim_is_exceeded_only_past_a_limit(claimed, limit, quantity, exceeded):
    assert ClaimStanding(claimed, limit).exceeded_by(quantity) is exceeded


def test_purchases_and_holds_grow_the_customers_claim_and_orders_from_holds_keep_it(shop, store, limited):
    shop.purchase(limited.id, 1, "ann")
    hold = shop.hold(limited.id, 2, "ann")
    assert claims(store) == {(limited.id, "ann"): 3}
    order = shop.order_from_hold(hold.id).order
    assert order.customer_id == "ann" and store.order(order.id).customer_id == "ann"
    assert claims(store) == {(limited.id, "ann"): 3}
    with pytest.raises(LimitPerCustomerReached):
        shop.purchase(limited.id, 1, "ann")
    assert shop.check().ok


def test_a_purchase_or_hold_without_a_customer_records_no_claim(shop, store, phone):
    shop.purchase(phone.id, 1)
    shop.hold(phone.id, 1)
    assert claims(store) == {}


def test_a_product_without_a_limit_still_counts_its_customers_claims(shop, store, phone):
    """So a limit set later counts what each customer already has (contract: a claim is their holds and orders)."""
    shop.purchase(phone.id, 2, "ann")
    shop.update_product(phone.id, max_per_customer=2)
    with pytest.raises(LimitPerCustomerReached):
        shop.purchase(phone.id, 1, "ann")
    assert claims(store) == {(phone.id, "ann"): 2}


def test_a_refused_claim_changes_nothing(shop, store, limited):
    shop.purchase(limited.id, 3, "ann")
    before = (store.product(limited.id), claims(store), len(store.tables.orders), len(store.events()))
    for take in (shop.purchase, shop.hold):
        with pytest.raises(LimitPerCustomerReached):
            take(limited.id, 1, "ann")
    assert (store.product(limited.id), claims(store), len(store.tables.orders), len(store.events())) == before


def test_a_release_an_expiry_a_failed_payment_and_a_timeout_each_give_the_claim_back(shop, store, clock, limited):
    released = shop.hold(limited.id, 3, "ann")
    shop.release_hold(released.id)
    assert claims(store) == {(limited.id, "ann"): 0}
    shop.hold(limited.id, 3, "ann")
    clock.advance(shop.deps.policy.hold_ttl.total_seconds() + 1)
    assert shop.release_expired() == (1, 0)
    assert claims(store) == {(limited.id, "ann"): 0}
    failed = shop.order_from_hold(shop.hold(limited.id, 3, "ann").id).order
    shop.payment("fail-1", failed.id, "failure")
    assert claims(store) == {(limited.id, "ann"): 0}
    shop.order_from_hold(shop.hold(limited.id, 3, "ann").id)
    clock.advance(shop.deps.policy.payment_ttl.total_seconds() + 1)
    assert shop.release_expired() == (0, 1)
    assert claims(store) == {(limited.id, "ann"): 0}
    assert shop.check().ok


def test_a_paid_order_keeps_its_claim(shop, store, limited):
    order = shop.order_from_hold(shop.hold(limited.id, 3, "ann").id).order
    shop.payment("pay-1", order.id, "success")
    assert claims(store) == {(limited.id, "ann"): 3}
    with pytest.raises(LimitPerCustomerReached):
        shop.hold(limited.id, 1, "ann")


def test_the_customers_own_expired_unswept_hold_is_given_back_before_a_limit_refusal(shop, store, clock, limited):
    shop.hold(limited.id, 3, "ann")
    clock.advance(shop.deps.policy.hold_ttl.total_seconds() + 1)
    assert shop.purchase(limited.id, 3, "ann").order.customer_id == "ann"
    assert claims(store) == {(limited.id, "ann"): 3}
    assert store.events("holds_batch_released")
    assert shop.check().ok


def test_a_limit_set_since_memory_last_saw_the_product_is_still_enforced(shop, store, phone):
    shop.purchase(phone.id, 1)  # memory keeps the product without a limit
    shop.update_product(phone.id, max_per_customer=1)
    with pytest.raises(CustomerRequired):
        shop.purchase(phone.id, 1)
    with pytest.raises(CustomerRequired):
        shop.hold(phone.id, 1)
    assert store.product(phone.id).stock == 9


def test_a_limit_lowered_since_memory_last_saw_the_product_is_still_enforced(shop, store, limited):
    shop.purchase(limited.id, 1, "bob")  # memory keeps the limit of 3
    shop.update_product(limited.id, max_per_customer=1)
    with pytest.raises(LimitPerCustomerReached):
        shop.purchase(limited.id, 2, "ann")
    assert claims(store) == {(limited.id, "bob"): 1}


def test_a_limit_removed_since_memory_last_saw_the_product_no_longer_needs_a_customer(shop, store, limited):
    shop.purchase(limited.id, 1, "bob")  # memory keeps the limit of 3
    shop.update_product(limited.id, max_per_customer=None)
    assert shop.purchase(limited.id, 5).order.customer_id is None
    assert shop.hold(limited.id, 5).customer_id is None


def test_concurrent_purchases_of_one_customer_never_pass_the_limit(shop, store, limited):
    def attempt(_: int) -> bool:
        try:
            shop.purchase(limited.id, 1, "bot")
            return True
        except LimitPerCustomerReached:
            return False

    with ThreadPoolExecutor(max_workers=8) as pool:
        assert sum(pool.map(attempt, range(40))) == 3
    assert claims(store) == {(limited.id, "bot"): 3} and store.product(limited.id).stock == 97


def test_check_names_a_product_whose_customer_claim_drifted(shop, store, limited):
    shop.purchase(limited.id, 2, "ann")
    shop.hold(limited.id, 1, "bob")
    assert shop.check().ok
    store.tables.claims[limited.id, "ann"] = 1
    del store.tables.claims[limited.id, "bob"]
    report = shop.check()
    assert [d.product_id for d in report.drifts] == [limited.id]
    assert report.drifts[0].problems == (
        "customer 'ann' claims 1 but their active holds and orders hold 2",
        "customer 'bob' claims 0 but their active holds and orders hold 1",
    )


@pytest.mark.parametrize("command", [Purchase(7, 2), PlaceHold(7, 2)])
def test_a_command_without_a_customer_keeps_the_fingerprint_it_had_before_customers(command):
    """An Idempotency-Key first used before the upgrade still matches its retry after it."""
    before = hashlib.sha256(json.dumps({"product_id": 7, "quantity": 2}, sort_keys=True).encode()).hexdigest()
    assert request_key("s", "k", command).fingerprint == before
    assert request_key("s", "k", type(command)(7, 2, "ann")).fingerprint != before


def test_an_answer_stored_before_customers_is_replayed_with_no_customer(shop, limited):
    hold = shop.hold(limited.id, 1, "ann")
    record = encode_result(hold)
    del record["value"]["customer_id"]
    old = decode(record)
    assert isinstance(old, Hold) and old.customer_id is None and old.id == hold.id
