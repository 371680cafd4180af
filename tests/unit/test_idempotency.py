"""Idempotency-Key: the claim, the effect and the answer commit together; replays are the
first domain answer again."""

from __future__ import annotations

import threading

import pytest

from stockade.application.commands import Purchase
from stockade.application.idempotency import Answer, answer_once, request_key
from stockade.application.purchase import purchase
from stockade.application.records import decode
from stockade.domain.errors import IdempotencyKeyReused, OutOfStock


@pytest.fixture
def buy(shop, phone):
    """POST /api/orders/purchase behind an Idempotency-Key: (key, quantity) -> Answer."""

    def call(key, quantity=1):
        command = Purchase(phone.id, quantity)
        return answer_once(shop.deps, request_key("purchase", key, command), lambda k: purchase(shop.deps, command, k))

    return call


def test_first_request_stores_its_domain_result_with_the_effect(buy, store, phone):
    answer = buy("k1")

    assert not answer.replayed and answer.refusal is None
    assert store.product(phone.id).stock == 9
    stored = decode(store.tables.idempotency[("purchase", "k1")].answer)
    assert stored == answer.result
    assert stored.order.id in store.tables.orders and stored.product.stock == 9


def test_repeated_request_replays_the_first_result_without_a_second_effect(buy, store, phone):
    first = buy("k1")
    again = buy("k1")

    assert again == Answer(result=first.result, replayed=True)
    assert store.product(phone.id).stock == 9
    assert len(store.tables.orders) == 1


def test_same_key_with_a_different_request_is_refused(buy, store, phone):
    buy("k1", quantity=1)
    with pytest.raises(IdempotencyKeyReused):
        buy("k1", quantity=2)
    assert store.product(phone.id).stock == 9


def test_same_key_in_another_scope_is_a_different_request(shop, buy, phone):
    buy("k1")
    other = answer_once(shop.deps, request_key("holds", "k1", Purchase(phone.id, 1)), lambda k: "done")
    assert other == Answer(result="done")


def test_domain_refusal_is_stored_and_replayed(buy, store, phone):
    first = buy("k1", quantity=11)
    assert isinstance(first.refusal, OutOfStock) and not first.replayed
    store.corrupt_product(phone.id, stock=100)  # even if stock came back, the refusal stands

    again = buy("k1", quantity=11)

    assert isinstance(again.refusal, OutOfStock) and again.replayed
    assert store.product(phone.id).stock == 100
    assert not store.tables.orders


def test_a_request_that_fails_before_commit_leaves_no_key_and_can_be_retried(shop, buy, store, phone):
    command = Purchase(phone.id, 1)

    def crashing(key):
        def write_then_crash(uow, now):
            uow.idempotency.claim(key, now)
            uow.products.take(phone, 1, now)
            raise RuntimeError("connection lost before commit")

        from stockade.application.services import transaction

        return transaction(shop.deps, write_then_crash)

    with pytest.raises(RuntimeError):
        answer_once(shop.deps, request_key("purchase", "k1", command), crashing)
    assert store.product(phone.id).stock == 10
    assert ("purchase", "k1") not in store.tables.idempotency

    assert not buy("k1").replayed
    assert store.product(phone.id).stock == 9


def test_concurrent_requests_with_one_key_sell_once_and_the_rest_replay(buy, store, phone):
    answers: list[Answer] = []
    barrier = threading.Barrier(20)

    def client() -> None:
        barrier.wait()
        answers.append(buy("same"))

    threads = [threading.Thread(target=client) for _ in range(20)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    assert store.product(phone.id).stock == 9 and len(store.tables.orders) == 1
    assert sorted(a.replayed for a in answers) == [False] + [True] * 19
    assert len({a.result for a in answers}) == 1
