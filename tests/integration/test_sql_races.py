"""No oversell, no double effect: real concurrency (threads and processes) on a real MariaDB."""

from __future__ import annotations

import random
import threading

import pytest
import sqlalchemy as sa

from stockade.adapters.clock import FixedClock
from stockade.adapters.sql import migrate
from stockade.application.commands import PaymentNotification, Purchase
from stockade.application.idempotency import answer_once, request_key
from stockade.application.payments import handle_payment
from stockade.application.ports import IdempotencyKeyTaken
from stockade.application.purchase import purchase
from stockade.application.records import encode_refusal
from stockade.domain.errors import HoldExpired, HoldNotActive, LimitPerCustomerReached, OutOfStock
from stockade.domain.model import OrderStatus, PaymentResult, WebhookOutcome
from tests.integration.helpers import (
    MICROSECOND,
    RACE_TIMEOUT_SECONDS,
    count_events,
    open_services,
    product_row,
    purchases_in_processes,
    race,
    race_once,
    rows,
    scalar,
    set_clock,
    summary,
    unexpected,
    with_sweep_batch,
)

HOLD_TTL = 120


@pytest.fixture(params=["mariadb", "sqlite"])
def database_url(request: pytest.FixtureRequest, tmp_path) -> str:
    """A migrated database of each kind: MariaDB, and SQLite, whose writers commit in groups."""
    url = request.getfixturevalue("mysql_url") if request.param == "mariadb" else f"sqlite:///{tmp_path}/races.db"
    migrate(url)
    return url


@pytest.fixture
def services(database_url: str):
    """One Services shared by every racing thread (the normal case), on each kind of database.

    Background tasks stay off: none of these tests needs them, and their threads would
    compete with the racers for the connection pool."""
    with open_services(database_url, background=False, hold_ttl_seconds=HOLD_TTL) as services:
        yield services


def _assert_consistent(services) -> None:
    report = services.shop.check()
    assert report.ok, report.drifts


# ---------------------------------------------------------------- selling out


def test_120_racing_purchases_sell_exactly_the_50_units_in_stock(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Flash", "15000000.00", 50)

    outcomes = race(12, 10, lambda t, c: shop.purchase(product.id, 1))

    assert not unexpected(outcomes, OutOfStock), summary(unexpected(outcomes, OutOfStock))
    sold = [o.value for o in outcomes if o.ok]
    assert len(sold) == 50
    assert sum(isinstance(o.error, OutOfStock) for o in outcomes) == 70
    assert len({view.order.id for view in sold}) == 50
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved) == (0, 0)
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE product_id = :p", p=product.id) == 50
    assert scalar(engine, "SELECT SUM(quantity) FROM orders WHERE product_id = :p", p=product.id) == 50
    assert count_events(engine, "purchase_created") == 50
    _assert_consistent(services)


def test_purchases_racing_from_four_processes_sell_exactly_the_50_units_in_stock(database_url: str) -> None:
    processes, purchases = 4, 30
    with open_services(database_url, background=False) as services:
        product = services.shop.create_product("Flash", "99.99", 50)

    reports = purchases_in_processes(database_url, product.id, processes, purchases)

    errors = [e for _, _, errs in reports for e in errs]
    assert not errors, summary(errors)
    assert sum(sold for sold, _, _ in reports) == 50
    assert sum(refused for _, refused, _ in reports) == processes * purchases - 50
    with open_services(database_url, background=False) as services:
        engine = services.engine
        row = product_row(engine, product.id)
        assert (row.stock, row.reserved) == (0, 0)
        assert scalar(engine, "SELECT COUNT(*) FROM orders") == 50
        _assert_consistent(services)


def test_120_racing_holds_reserve_exactly_the_50_units_in_stock(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Flash", "10.00", 50)

    outcomes = race(12, 10, lambda t, c: shop.hold(product.id, 1))

    assert not unexpected(outcomes, OutOfStock), summary(unexpected(outcomes, OutOfStock))
    assert len({o.value.id for o in outcomes if o.ok}) == 50
    assert sum(isinstance(o.error, OutOfStock) for o in outcomes) == 70
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved, row.available) == (50, 50, 0)
    assert scalar(engine, "SELECT COUNT(*) FROM holds WHERE status = 'active'") == 50
    _assert_consistent(services)


def test_racing_purchases_and_holds_of_mixed_quantities_never_exceed_the_stock(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Mixed", "3.50", 100)
    rng = random.Random(20260107)
    plan = [[(rng.choice(("purchase", "hold")), rng.randint(1, 3)) for _ in range(15)] for _ in range(12)]

    def act(t: int, c: int):
        kind, quantity = plan[t][c]
        return kind, quantity, (shop.purchase if kind == "purchase" else shop.hold)(product.id, quantity)

    outcomes = race(12, 15, act)

    assert not unexpected(outcomes, OutOfStock), summary(unexpected(outcomes, OutOfStock))
    sold = sum(q for kind, q, _ in (o.value for o in outcomes if o.ok) if kind == "purchase")
    held = sum(q for kind, q, _ in (o.value for o in outcomes if o.ok) if kind == "hold")
    assert sold + held <= 100
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved) == (100 - sold, held)
    assert scalar(engine, "SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE hold_id IS NULL") == sold
    assert scalar(engine, "SELECT COALESCE(SUM(quantity), 0) FROM holds WHERE status = 'active'") == held
    _assert_consistent(services)
    # Nothing leaked: what is left is exactly sellable, and not one unit more.
    if row.available:
        shop.purchase(product.id, row.available)
    with pytest.raises(OutOfStock):
        shop.purchase(product.id, 1)
    _assert_consistent(services)


# ---------------------------------------------------------------- one hold, many orders


def test_ten_racing_orders_from_one_hold_make_exactly_one_order(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Seat", "10.00", 100)

    for _ in range(5):
        hold = shop.hold(product.id, 2)
        reserved_before = product_row(engine, product.id).reserved

        outcomes = race(10, 1, lambda t, c: shop.order_from_hold(hold.id))

        assert not unexpected(outcomes, HoldNotActive), summary(unexpected(outcomes, HoldNotActive))
        winners = [o.value.order for o in outcomes if o.ok]
        assert len(winners) == 1
        assert sum(isinstance(o.error, HoldNotActive) for o in outcomes) == 9
        assert [tuple(r) for r in rows(engine, "SELECT id FROM orders WHERE hold_id = :h", h=hold.id)] == [
            (winners[0].id,)
        ]
        assert scalar(engine, "SELECT order_id FROM holds WHERE id = :h", h=hold.id) == winners[0].id
        assert product_row(engine, product.id).reserved == reserved_before
    _assert_consistent(services)


# ---------------------------------------------------------------- webhooks


def test_forty_racing_deliveries_of_one_webhook_apply_it_exactly_once(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Seat", "10.00", 20)
    order_id = shop.order_from_hold(shop.hold(product.id, 3).id).order.id
    before = product_row(engine, product.id)
    note = PaymentNotification("one-key", order_id, PaymentResult.SUCCESS)

    outcomes = race(40, 1, lambda t, c: handle_payment(shop.deps, note))

    assert not unexpected(outcomes), summary(unexpected(outcomes))
    replayed = [o.value.replayed for o in outcomes]
    assert replayed.count(False) == 1 and replayed.count(True) == 39
    assert {(o.value.outcome, o.value.status) for o in outcomes} == {(WebhookOutcome.APPLIED, "paid")}
    after = product_row(engine, product.id)
    assert (after.stock, after.reserved) == (before.stock - 3, before.reserved - 3)
    assert len(shop.logs(event="order_paid")) == 1
    assert scalar(engine, "SELECT COUNT(*) FROM payment_events") == 1
    _assert_consistent(services)


def test_racing_success_and_failure_webhooks_with_different_keys_apply_only_one(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Seat", "10.00", 100)
    failures_won = 0

    for round_ in range(10):
        order_id = shop.order_from_hold(shop.hold(product.id, 2).id).order.id
        before = product_row(engine, product.id)

        outcomes = race_once(
            lambda: shop.payment(f"ok-{round_}", order_id, "success"),
            lambda: shop.payment(f"ko-{round_}", order_id, "failure"),
        )

        assert not unexpected(outcomes), summary(unexpected(outcomes))
        success, failure = (o.value for o in outcomes)
        assert sorted([success.outcome.value, failure.outcome.value]) == ["applied", "ignored"]
        after = product_row(engine, product.id)
        status = shop.get_order(order_id).order.status
        if success.outcome is WebhookOutcome.APPLIED:
            assert status in (OrderStatus.PAID, OrderStatus.PROCESSED)
            assert failure.status in ("paid", "processed")
            assert (after.stock, after.reserved) == (before.stock - 2, before.reserved - 2)
        else:
            failures_won += 1
            assert status is OrderStatus.CANCELLED and success.status == "cancelled"
            assert (after.stock, after.reserved) == (before.stock, before.reserved - 2)
        assert count_events(engine, "payment_ignored") == round_ + 1

    assert count_events(engine, "payment_refund_required") == failures_won
    _assert_consistent(services)


def test_racing_successful_payments_for_thirty_orders_of_one_product_all_apply(services) -> None:
    shop, engine = services.shop, services.engine
    rounds = 5
    product = shop.create_product("Seat", "10.00", 100 * rounds)
    outcomes = []

    # Every round runs before anything is judged: a failed delivery in any round fails the test.
    for r in range(rounds):
        order_ids = [shop.order_from_hold(shop.hold(product.id, 2).id).order.id for _ in range(30)]
        outcomes += race(30, 1, lambda t, c, ids=order_ids, r=r: shop.payment(f"pay-{r}-{t}", ids[t], "success"))

    assert not unexpected(outcomes), summary(unexpected(outcomes))
    assert all(o.value.outcome is WebhookOutcome.APPLIED for o in outcomes)
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved) == (100 * rounds - 60 * rounds, 0)
    assert count_events(engine, "order_paid") == 30 * rounds
    _assert_consistent(services)


def test_racing_releases_of_thirty_holds_of_one_product_all_give_their_units_back(services) -> None:
    shop, engine = services.shop, services.engine
    rounds = 3
    product = shop.create_product("Seat", "10.00", 100)
    outcomes = []

    for _ in range(rounds):
        hold_ids = [shop.hold(product.id, 3).id for _ in range(30)]
        outcomes += race(30, 1, lambda t, c, ids=hold_ids: shop.release_hold(ids[t]))

    assert not unexpected(outcomes), summary(unexpected(outcomes))
    assert product_row(engine, product.id).reserved == 0
    assert scalar(engine, "SELECT COUNT(*) FROM holds WHERE status = 'released'") == 30 * rounds
    assert count_events(engine, "hold_released") == 30 * rounds
    _assert_consistent(services)


# ---------------------------------------------------------------- limits per customer


def _assert_sold_to_one_customer(services, product_id: int, sold: int) -> None:
    engine = services.engine
    row = product_row(engine, product_id)
    assert (row.stock, row.reserved) == (1000 - sold, 0)
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE customer_id = 'bot-1'") == sold
    assert scalar(engine, "SELECT claimed FROM customer_claims WHERE customer_id = 'bot-1'") == sold
    _assert_consistent(services)


def test_200_racing_purchases_by_one_customer_with_a_limit_of_5_sell_exactly_5(database_url: str) -> None:
    with open_services(database_url, background=False) as services:
        shop = services.shop
        product = shop.create_product("Limited", "10.00", 1000, max_per_customer=5)

        outcomes = race(40, 5, lambda t, c: shop.purchase(product.id, 1, "bot-1"))

        allowed = (LimitPerCustomerReached,)
        assert not unexpected(outcomes, *allowed), summary(unexpected(outcomes, *allowed))
        assert sum(o.ok for o in outcomes) == 5
        assert sum(isinstance(o.error, LimitPerCustomerReached) for o in outcomes) == 195
        _assert_sold_to_one_customer(services, product.id, 5)


def test_200_racing_purchases_by_one_customer_from_four_processes_sell_exactly_5(database_url: str) -> None:
    with open_services(database_url, background=False) as services:
        product = services.shop.create_product("Limited", "10.00", 1000, max_per_customer=5)

    reports = purchases_in_processes(database_url, product.id, 4, 50, customer_id="bot-1")

    errors = [e for _, _, errs in reports for e in errs]
    assert not errors, summary(errors)
    assert sum(sold for sold, _, _ in reports) == 5
    assert sum(refused for _, refused, _ in reports) == 195
    with open_services(database_url, background=False) as services:
        _assert_sold_to_one_customer(services, product.id, 5)


def test_racing_holds_purchases_and_releases_of_many_customers_keep_every_claim_within_its_limit(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Limited", "10.00", 1000, max_per_customer=3)
    rng = random.Random(20261204)
    plan = [
        [(rng.choice(("purchase", "hold", "release")), f"c{rng.randint(1, 4)}") for _ in range(12)] for _ in range(12)
    ]
    held: dict[str, list[int]] = {}

    def act(t: int, c: int):
        action, customer = plan[t][c]
        if action == "purchase":
            return shop.purchase(product.id, 1, customer)
        if action == "hold":
            held.setdefault(customer, []).append(shop.hold(product.id, 1, customer).id)
            return None
        try:
            hold_id = held.get(customer, []).pop()
        except IndexError:
            return None  # nothing of theirs to release
        return shop.release_hold(hold_id)

    outcomes = race(12, 12, act)

    allowed = (LimitPerCustomerReached,)
    assert not unexpected(outcomes, *allowed), summary(unexpected(outcomes, *allowed))
    for customer, claimed in rows(engine, "SELECT customer_id, claimed FROM customer_claims"):
        assert claimed <= 3, customer
    _assert_consistent(services)


# ---------------------------------------------------------------- expiry


@pytest.mark.parametrize(
    "mode",
    ["both-at-expiry", "both-just-before", "order-just-before-sweep-at-expiry"],
)
def test_a_sweep_racing_an_order_at_the_expiry_instant_lets_exactly_one_happen(mysql_url: str, mode: str) -> None:
    order_clock, sweep_clock = FixedClock(), FixedClock()
    start = order_clock.now()
    with (
        open_services(mysql_url, clock=order_clock, migrate_schema=True, hold_ttl_seconds=HOLD_TTL) as buyer,
        open_services(mysql_url, clock=sweep_clock, hold_ttl_seconds=HOLD_TTL) as sweeper,
    ):
        engine = buyer.engine
        product = buyer.shop.create_product("Ticket", "5.00", 1000)
        orders_won = expired = 0

        for _ in range(30):
            set_clock(order_clock, start)
            hold = buyer.shop.hold(product.id, 3)
            reserved_with_hold = product_row(engine, product.id).reserved
            at, before = hold.expires_at, hold.expires_at - MICROSECOND
            set_clock(order_clock, at if mode == "both-at-expiry" else before)
            set_clock(sweep_clock, before if mode == "both-just-before" else at)

            order_try, sweep_try = race_once(
                lambda: buyer.shop.order_from_hold(hold.id),
                sweeper.shop.release_expired,
            )

            assert not unexpected([order_try], HoldNotActive), order_try.trace
            assert sweep_try.ok, sweep_try.trace
            status = scalar(engine, "SELECT status FROM holds WHERE id = :h", h=hold.id)
            order_rows = scalar(engine, "SELECT COUNT(*) FROM orders WHERE hold_id = :h", h=hold.id)
            reserved = product_row(engine, product.id).reserved
            if order_try.ok:
                orders_won += 1
                assert sweep_try.value == (0, 0)
                assert (status, order_rows, reserved) == ("used", 1, reserved_with_hold)
            else:
                expired += 1
                assert isinstance(order_try.error, HoldExpired)
                assert sweep_try.value == (1, 0)
                assert (status, order_rows, reserved) == ("expired", 0, reserved_with_hold - 3)

        assert orders_won + expired == 30
        if mode == "both-at-expiry":
            assert expired == 30  # expires_at <= now: expired for both, so the order must lose
        if mode == "both-just-before":
            assert orders_won == 30  # not yet expired for either: the sweep must leave it alone
        assert count_events(engine, "hold_released") == expired
        _assert_consistent(buyer)


@pytest.mark.parametrize("sweep_batch", [500, 7], ids=["one-batch", "small-batches"])
@pytest.mark.parametrize("sweepers", ["threads", "two-services"])
def test_concurrent_sweeps_release_each_of_200_expired_holds_exactly_once(
    mysql_url: str, sweepers: str, sweep_batch: int
) -> None:
    clock = FixedClock()
    with (
        open_services(mysql_url, clock=clock, migrate_schema=True, hold_ttl_seconds=HOLD_TTL) as first,
        open_services(mysql_url, clock=clock, hold_ttl_seconds=HOLD_TTL) as second,
    ):
        engine = first.engine
        products = [first.shop.create_product(f"P{i}", "1.00", 100) for i in range(4)]
        for i in range(200):
            first.shop.hold(products[i % 4].id, 1 + i % 2)
        assert sum(product_row(engine, p.id).reserved for p in products) == 300
        clock.advance(HOLD_TTL + 1)
        owners = [first, first, first, first] if sweepers == "threads" else [first, first, second, second]
        shops = [with_sweep_batch(s.shop, sweep_batch) for s in owners]

        outcomes = race_once(*(shop.release_expired for shop in shops))

        assert not unexpected(outcomes), summary(unexpected(outcomes))
        assert sum(o.value[0] for o in outcomes) == 200
        released = [e.data["hold_id"] for e in first.shop.logs(limit=1000, event="hold_released")]
        assert len(released) == 200 and len(set(released)) == 200
        assert sum(e.data["count"] for e in first.shop.logs(limit=1000, event="holds_batch_released")) == 200
        assert scalar(engine, "SELECT COUNT(*) FROM holds WHERE status = 'expired'") == 200
        assert [product_row(engine, p.id).reserved for p in products] == [0, 0, 0, 0]
        assert first.shop.release_expired() == (0, 0)
        _assert_consistent(first)


# ---------------------------------------------------------------- idempotency keys


def test_racing_requests_with_one_idempotency_key_purchase_exactly_once(services) -> None:
    shop, engine = services.shop, services.engine
    rounds, racers = 8, 24
    product = shop.create_product("Keyed", "10.00", 50)
    command = Purchase(product.id, 1)

    def keyed_purchase(name: str):
        key = request_key("orders.purchase", name, command)
        return answer_once(shop.deps, key, lambda k: purchase(shop.deps, command, k))

    # Every round runs before anything is judged: a deadlock in any round fails the test.
    by_key = {f"key-{r}": race(racers, 1, lambda t, c, key=f"key-{r}": keyed_purchase(key)) for r in range(rounds)}

    everything = [o for outcomes in by_key.values() for o in outcomes]
    assert not unexpected(everything), summary(unexpected(everything))
    for key, outcomes in by_key.items():
        first = [o.value for o in outcomes if not o.value.replayed]
        assert len(first) == 1 and first[0].refusal is None, key
        replays = [o.value for o in outcomes if o.value.replayed]
        assert len(replays) == racers - 1 and all(r.result == first[0].result for r in replays), key
    assert scalar(engine, "SELECT COUNT(*) FROM orders") == rounds
    assert product_row(engine, product.id).stock == 50 - rounds
    assert scalar(engine, "SELECT COUNT(*) FROM idempotency_keys WHERE answer IS NOT NULL") == rounds


@pytest.mark.parametrize("existing", ["none", "answered"])
def test_racing_claims_of_one_key_never_deadlock(services, existing: str) -> None:
    """Each claim runs once, with no retry: a deadlock (or lock wait timeout) is a failure."""
    shop = services.shop
    key = request_key("orders.purchase", "hot-key", Purchase(1, 1))
    answer = encode_refusal(OutOfStock())

    def claim():
        with shop.deps.uow() as uow:
            uow.idempotency.claim(key, shop.deps.clock.now(), answer)
            uow.commit()

    if existing == "answered":
        claim()

    rounds = [race(16, 1, lambda t, c: claim()) for _ in range(5)]

    everything = [o for outcomes in rounds for o in outcomes]
    assert not unexpected(everything, IdempotencyKeyTaken), summary(unexpected(everything, IdempotencyKeyTaken))
    assert sum(o.ok for o in everything) == (1 if existing == "none" else 0)


@pytest.mark.parametrize("buy", ["purchase", "hold"])
def test_a_buyer_waits_for_a_sweeper_holding_its_expired_holds_and_then_succeeds(mysql_url: str, buy: str) -> None:
    """Only an expired, unswept hold stands in the way, and a sweeper has it locked: the buyer
    must wait for the sweeper to release it, not skip the locked row and answer 409."""
    clock = FixedClock()
    with open_services(
        mysql_url, clock=clock, migrate_schema=True, background=False, hold_ttl_seconds=HOLD_TTL
    ) as services:
        shop, engine = services.shop, services.engine
        product = shop.create_product("Last two", "1.00", 2)
        hold = shop.hold(product.id, 2)
        clock.advance(HOLD_TTL + 1)
        outcome: list[object] = []
        buyer = threading.Thread(target=lambda: outcome.append(race_once(lambda: getattr(shop, buy)(product.id, 2))[0]))

        with engine.connect() as sweeper:  # a sweep in progress: the hold locked, not yet released
            sweeper.execute(sa.text("SELECT id FROM holds WHERE id = :h FOR UPDATE"), {"h": hold.id})
            buyer.start()
            buyer.join(1.0)
            waited = buyer.is_alive()
            sweeper.execute(sa.text("UPDATE holds SET status = 'expired' WHERE id = :h"), {"h": hold.id})
            sweeper.execute(sa.text("UPDATE products SET reserved = reserved - 2 WHERE id = :p"), {"p": product.id})
            sweeper.commit()
        buyer.join(RACE_TIMEOUT_SECONDS)

        assert waited, f"the buyer did not wait for the sweeper: {outcome}"
        assert len(outcome) == 1 and outcome[0].ok, outcome
        row = product_row(engine, product.id)
        assert (row.stock, row.reserved) == ((0, 0) if buy == "purchase" else (2, 2))
