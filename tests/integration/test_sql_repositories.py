"""The SQL adapter on a real MariaDB: schema, constraints, and every use case's round trip."""

from __future__ import annotations

import gc
import json
import re
import threading
import time
from datetime import timedelta
from decimal import Decimal

import attrs
import pytest
import sqlalchemy as sa
from alembic import command
from falcon import testing

from stockade.adapters.clock import FixedClock
from stockade.adapters.sql import migrate
from stockade.adapters.sql.migrate import alembic_config
from stockade.application.commands import OrderView, PaymentNotification, PlaceHold, Purchase
from stockade.application.idempotency import request_key
from stockade.application.payments import handle_payment
from stockade.application.ports import ConditionFailed, IdempotencyKeyTaken, KeyRecord, resolved
from stockade.application.records import decode, encode_refusal
from stockade.domain.errors import HoldExpired, LimitPerCustomerReached, OutOfStock, ProductNotFound
from stockade.domain.model import HoldStatus, OrderStatus, PaymentResult, WebhookOutcome
from stockade.entrypoints.http.app import create_app
from tests.integration.helpers import count_events, execute, open_services, product_row, rows, scalar

HOLD_TTL = 120
TABLES = ("products", "holds", "orders", "customer_claims", "payment_events", "idempotency_keys", "event_log", "outbox")


@pytest.fixture
def clock() -> FixedClock:
    return FixedClock()


@pytest.fixture
def services(mysql_url: str, clock: FixedClock):
    """Migrated database, Services on a fixed clock, background tasks off (the test drives them)."""
    with open_services(
        mysql_url, clock=clock, migrate_schema=True, background=False, hold_ttl_seconds=HOLD_TTL
    ) as services:
        yield services


@pytest.fixture
def shop(services):
    return services.shop


@pytest.fixture
def engine(services) -> sa.Engine:
    return services.engine


def _schema(engine: sa.Engine) -> dict[str, str]:
    """SHOW CREATE TABLE of every table (without the AUTO_INCREMENT counter), and the Alembic revision."""
    found = {t: re.sub(r" AUTO_INCREMENT=\d+", "", rows(engine, f"SHOW CREATE TABLE `{t}`")[0][1]) for t in TABLES}
    found["alembic_version"] = ",".join(r[0] for r in rows(engine, "SELECT version_num FROM alembic_version"))
    return found


def _pending_order(shop, product_id: int, quantity: int) -> int:
    return shop.order_from_hold(shop.hold(product_id, quantity).id).order.id


# ---------------------------------------------------------------- migrations


def test_migrating_twice_changes_nothing_and_keeps_the_data(mysql_url: str) -> None:
    migrate(mysql_url)
    engine = sa.create_engine(mysql_url)
    try:
        before = _schema(engine)
        assert before["alembic_version"] == "0008"
        execute(
            engine,
            "INSERT INTO products (name, price, stock, reserved, version, created_at, updated_at) "
            "VALUES ('kept', 1.50, 3, 0, 1, NOW(6), NOW(6))",
        )
        migrate(mysql_url)
        assert _schema(engine) == before
        assert [tuple(r) for r in rows(engine, "SELECT name, price, stock FROM products")] == [
            ("kept", Decimal("1.50"), 3)
        ]
    finally:
        engine.dispose()


def test_migration_0003_keeps_each_webhooks_first_outcome_and_forgets_old_key_records(mysql_url: str) -> None:
    migrate(mysql_url, "0002")
    engine = sa.create_engine(mysql_url)
    try:
        for key, outcome, status in (("early", "applied", 202), ("on-time", "applied", 200), ("late", "ignored", 200)):
            execute(
                engine,
                "INSERT INTO payment_events (key_hash, idempotency_key, order_id, result, fingerprint, "
                "outcome, http_status, response_status, created_at) VALUES "
                "(:k, :k, 1, 'success', 'f', :o, :s, 'paid', NOW(6))",
                k=key,
                o=outcome,
                s=status,
            )
        execute(
            engine,
            "INSERT INTO idempotency_keys (scope, key_hash, fingerprint, status_code, body, claimed_at) "
            "VALUES ('orders', 'h', 'f', 201, '{}', NOW(6))",
        )
        migrate(mysql_url)
        assert dict(rows(engine, "SELECT idempotency_key, first_outcome FROM payment_events")) == {
            "early": "deferred",
            "on-time": "applied",
            "late": "ignored",
        }
        assert scalar(engine, "SELECT COUNT(*) FROM idempotency_keys") == 0
    finally:
        engine.dispose()


def test_migration_0004_keeps_outbox_messages_and_reads_them_as_never_started(mysql_url: str) -> None:
    migrate(mysql_url, "0003")
    engine = sa.create_engine(mysql_url)
    try:
        execute(
            engine,
            "INSERT INTO outbox (task, payload, created_at, retry_at, attempts) "
            "VALUES ('stockade.process_order', '{\"order_id\": 1}', NOW(6), NOW(6), 2)",
        )
        migrate(mysql_url)
        assert [tuple(r) for r in rows(engine, "SELECT attempts, started_at, deliveries, resent_at FROM outbox")] == [
            (2, None, 0, None)
        ]
        assert "KEY `ix_outbox_started` (`started_at`)" in rows(engine, "SHOW CREATE TABLE outbox")[0][1]
    finally:
        engine.dispose()


def test_migration_0005_names_no_customer_on_existing_rows_and_owes_no_claim(mysql_url: str) -> None:
    migrate(mysql_url, "0004")
    engine = sa.create_engine(mysql_url)
    try:
        execute(
            engine,
            "INSERT INTO products (name, price, stock, reserved, version, created_at, updated_at) "
            "VALUES ('old', 1.00, 5, 1, 1, NOW(6), NOW(6))",
        )
        execute(
            engine,
            "INSERT INTO holds (product_id, quantity, status, expires_at, created_at, updated_at) "
            "VALUES (1, 1, 'active', NOW(6) + INTERVAL 1 HOUR, NOW(6), NOW(6))",
        )
        migrate(mysql_url)
        assert scalar(engine, "SELECT max_per_customer FROM products") is None
        assert scalar(engine, "SELECT customer_id FROM holds") is None
        assert scalar(engine, "SELECT COUNT(*) FROM customer_claims") == 0
        with open_services(mysql_url, background=False) as services:
            assert services.shop.check().ok
        for table in ("orders", "holds"):
            ddl = rows(engine, f"SHOW CREATE TABLE {table}")[0][1]
            for index in ("status_id", "product_id", "customer_id"):
                assert f"KEY `ix_{table}_{index}`" in ddl, ddl
        with engine.connect() as connection:  # and back: the downgrade runs
            config = alembic_config(mysql_url)
            config.attributes["connection"] = connection
            command.downgrade(config, "0004")
            connection.commit()
        assert "customer_id" not in rows(engine, "SHOW CREATE TABLE orders")[0][1]
        assert scalar(engine, "SELECT version_num FROM alembic_version") == "0004"
    finally:
        engine.dispose()


def test_customer_ids_compare_exactly_whatever_the_servers_collation(shop, engine) -> None:
    product = shop.create_product("Limited", "1.00", 10, max_per_customer=1)
    shop.purchase(product.id, 1, "ann")
    shop.purchase(product.id, 1, "Ann")
    assert [r[0] for r in rows(engine, "SELECT customer_id FROM customer_claims ORDER BY customer_id")] == [
        "Ann",
        "ann",
    ]
    assert [v.order.customer_id for v in shop.list_orders(customer_id="ann")[0]] == ["ann"]


def test_the_schema_declares_the_three_stock_check_constraints(engine: sa.Engine) -> None:
    ddl = rows(engine, "SHOW CREATE TABLE products")[0][1]
    for name in (
        "ck_products_stock_nonnegative",
        "ck_products_reserved_nonnegative",
        "ck_products_available_nonnegative",
    ):
        assert name in ddl


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE products SET stock = reserved - 1 WHERE id = :id",
        "UPDATE products SET stock = -1, reserved = 0 WHERE id = :id",
        "UPDATE products SET reserved = -1 WHERE id = :id",
        "UPDATE products SET reserved = stock + 1 WHERE id = :id",
    ],
    ids=["stock-below-reserved", "negative-stock", "negative-reserved", "reserved-above-stock"],
)
def test_check_constraints_reject_a_direct_update_that_breaks_the_stock_model(shop, engine, statement) -> None:
    product = shop.create_product("Guarded", "10.00", 10)
    shop.hold(product.id, 4)
    before = product_row(engine, product.id)
    assert (before.stock, before.reserved) == (10, 4)

    with pytest.raises((sa.exc.IntegrityError, sa.exc.OperationalError)) as raised:
        execute(engine, statement, id=product.id)

    assert "ck_products_" in str(raised.value)
    assert product_row(engine, product.id) == before


def test_check_constraints_reject_negative_stock_on_insert(engine: sa.Engine) -> None:
    with pytest.raises((sa.exc.IntegrityError, sa.exc.OperationalError)):
        execute(
            engine,
            "INSERT INTO products (name, price, stock, reserved, version, created_at, updated_at) "
            "VALUES ('bad', 1, -5, 0, 1, NOW(6), NOW(6))",
        )
    assert scalar(engine, "SELECT COUNT(*) FROM products") == 0


# ---------------------------------------------------------------- products


def test_a_price_of_fifteen_million_round_trips_exactly(shop, engine) -> None:
    product = shop.create_product("Phone", "15000000.00", 5)

    stored = shop.get_product(product.id)
    assert stored.price == Decimal("15000000.00")
    assert str(stored.price) == "15000000.00"
    assert scalar(engine, "SELECT price FROM products WHERE id = :id", id=product.id) == Decimal("15000000.00")
    assert shop.list_products()[0][0].price == Decimal("15000000.00")


def test_the_largest_allowed_price_round_trips_exactly(shop, engine) -> None:
    product = shop.create_product("Yacht", Decimal("9999999999999.99"), 3)

    assert shop.get_product(product.id).price == Decimal("9999999999999.99")
    raw = scalar(engine, "SELECT price FROM products WHERE id = :id", id=product.id)
    assert isinstance(raw, Decimal) and raw == Decimal("9999999999999.99")

    view = shop.purchase(product.id, 3)
    assert view.order.total_price == Decimal("29999999999999.97")
    assert shop.get_order(view.order.id).order.total_price == Decimal("29999999999999.97")
    assert shop.get_order(view.order.id).product.price == Decimal("9999999999999.99")


def test_products_keep_their_fields_through_the_database(shop, clock) -> None:
    product = shop.create_product("Caf\N{LATIN SMALL LETTER E WITH ACUTE} \N{SHOPPING TROLLEY}", "0.05", 7)

    stored = shop.get_product(product.id)
    assert (stored.name, stored.price, stored.stock, stored.reserved) == (product.name, Decimal("0.05"), 7, 0)
    assert stored.created_at == clock.now() and stored.created_at.tzinfo is not None


def test_listing_pages_through_products_by_after_id(shop) -> None:
    ids = [shop.create_product(f"P{i}", "1.00", 1).id for i in range(5)]

    first, next_after = shop.list_products(limit=2)
    assert [p.id for p in first] == ids[:2] and next_after == ids[1]
    second, next_after = shop.list_products(limit=2, after_id=next_after)
    assert [p.id for p in second] == ids[2:4] and next_after == ids[3]
    last, next_after = shop.list_products(limit=2, after_id=next_after)
    assert [p.id for p in last] == ids[4:] and next_after is None
    assert shop.list_products(limit=2, after_id=ids[-1]) == ([], None)


def test_a_soft_deleted_product_is_hidden_but_its_orders_keep_it(shop, engine) -> None:
    product = shop.create_product("Old model", "42.50", 5)
    kept = shop.create_product("Still sold", "1.00", 1)
    order = shop.purchase(product.id, 2).order

    shop.delete_product(product.id)

    with pytest.raises(ProductNotFound):
        shop.get_product(product.id)
    assert [p.id for p in shop.list_products()[0]] == [kept.id]
    with pytest.raises(ProductNotFound):
        shop.purchase(product.id, 1)
    view = shop.get_order(order.id)
    assert view.order.quantity == 2 and view.order.total_price == Decimal("85.00")
    assert (view.product.id, view.product.name, view.product.price) == (product.id, "Old model", Decimal("42.50"))
    assert scalar(engine, "SELECT deleted_at IS NOT NULL FROM products WHERE id = :id", id=product.id) == 1


# ---------------------------------------------------------------- buying


def test_a_purchase_takes_stock_and_writes_an_order(shop, engine) -> None:
    product = shop.create_product("Widget", "15000000.00", 10)

    view = shop.purchase(product.id, 3)

    assert view.order.status is OrderStatus.CREATED
    assert view.order.total_price == Decimal("45000000.00")
    assert (view.product.stock, view.product.reserved) == (7, 0)
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (7, 0)
    stored = shop.get_order(view.order.id).order
    assert (stored.product_id, stored.quantity, stored.status, stored.hold_id) == (
        product.id,
        3,
        OrderStatus.CREATED,
        None,
    )
    assert stored.total_price == Decimal("45000000.00")
    assert count_events(engine, "purchase_created") == 1
    assert scalar(engine, "SELECT COUNT(*) FROM outbox WHERE task = 'stockade.process_order'") == 1


def test_a_purchase_beyond_available_is_refused_and_writes_nothing(shop, engine) -> None:
    product = shop.create_product("Scarce", "5.00", 2)
    shop.hold(product.id, 1)

    with pytest.raises(OutOfStock):
        shop.purchase(product.id, 2)

    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (2, 1)
    assert scalar(engine, "SELECT COUNT(*) FROM orders") == 0
    assert count_events(engine, "purchase_created") == 0


def test_a_hold_reserves_units_until_its_ttl(shop, engine, clock) -> None:
    product = shop.create_product("Ticket", "20.00", 10)

    hold = shop.hold(product.id, 4)

    assert hold.status is HoldStatus.ACTIVE and hold.expires_at == clock.now() + timedelta(seconds=HOLD_TTL)
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved, row.available) == (10, 4, 6)
    view = shop.get_hold(hold.id)
    assert view.status_now == "active" and view.hold.expires_at == hold.expires_at
    with pytest.raises(OutOfStock):
        shop.hold(product.id, 7)


def test_an_order_from_a_hold_keeps_its_units_reserved(shop, engine) -> None:
    product = shop.create_product("Seat", "12.34", 10)
    hold = shop.hold(product.id, 3)

    pending = shop.order_from_hold(hold.id).order

    assert pending.status is OrderStatus.PENDING and pending.hold_id == hold.id
    assert pending.total_price == Decimal("37.02")
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (10, 3)
    used = shop.get_hold(hold.id)
    assert (used.status_now, used.hold.order_id) == ("used", pending.id)
    assert shop.get_order(pending.id).order.status is OrderStatus.PENDING
    assert shop.check().ok


def test_a_successful_payment_takes_stock_and_reserved_once(shop, engine) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    order_id = _pending_order(shop, product.id, 3)

    result = shop.payment("pay-1", order_id, "success")

    assert (result.outcome, result.status) == (WebhookOutcome.APPLIED, "paid")
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (7, 0)
    assert shop.get_order(order_id).order.status is OrderStatus.PAID
    assert len(shop.logs(event="order_paid")) == 1
    assert shop.check().ok


def test_a_failed_payment_gives_the_reserved_units_back(shop, engine) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    order_id = _pending_order(shop, product.id, 3)

    result = shop.payment("pay-1", order_id, "failure")

    assert (result.outcome, result.status) == (WebhookOutcome.APPLIED, "cancelled")
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (10, 0)
    assert shop.get_order(order_id).order.status is OrderStatus.CANCELLED
    assert len(shop.logs(event="order_cancelled")) == 1
    assert shop.check().ok


def test_a_webhook_replayed_with_its_key_has_no_second_effect(shop, engine) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    order_id = _pending_order(shop, product.id, 2)
    note = PaymentNotification("replay-key", order_id, PaymentResult.SUCCESS)

    first = handle_payment(shop.deps, note)
    again = [handle_payment(shop.deps, note) for _ in range(3)]

    assert first.replayed is False
    assert all(result.replayed for result in again)
    assert all(attrs.evolve(result, replayed=False) == first for result in again)
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (8, 0)
    assert len(shop.logs(event="order_paid")) == 1
    assert scalar(engine, "SELECT COUNT(*) FROM payment_events") == 1


def test_a_second_key_for_a_paid_order_is_ignored(shop, engine) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    order_id = _pending_order(shop, product.id, 2)
    shop.payment("first", order_id, "success")

    late = shop.payment("second", order_id, "failure")

    assert (late.outcome, late.status) == (WebhookOutcome.IGNORED, "paid")
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (8, 0)
    assert len(shop.logs(event="payment_ignored")) == 1


def test_a_success_for_a_cancelled_order_asks_for_a_refund(shop, engine) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    order_id = _pending_order(shop, product.id, 2)
    shop.payment("fail", order_id, "failure")

    late = shop.payment("late-success", order_id, "success")

    assert (late.outcome, late.status) == (WebhookOutcome.IGNORED, "cancelled")
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (10, 0)
    assert len(shop.logs(event="payment_refund_required")) == 1


def test_a_webhook_before_its_order_is_deferred_then_applied_once_the_order_appears(shop, engine) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    hold = shop.hold(product.id, 3)
    # A fresh database: the first order gets id 1 (nothing has consumed an order id yet).
    assert scalar(engine, "SELECT COUNT(*) FROM orders") == 0

    early = shop.payment("early", 1, "success")
    assert (early.outcome, early.status) == (WebhookOutcome.DEFERRED, "deferred")
    assert shop.apply_deferred_payments(1) == 0  # no order yet: stays deferred

    order_id = shop.order_from_hold(hold.id).order.id
    assert order_id == 1
    assert scalar(engine, "SELECT COUNT(*) FROM outbox WHERE task = 'stockade.apply_deferred_payments'") == 1

    assert shop.apply_deferred_payments(order_id) == 1
    assert shop.apply_deferred_payments(order_id) == 0

    assert shop.get_order(order_id).order.status is OrderStatus.PAID
    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (7, 0)
    assert scalar(engine, "SELECT outcome FROM payment_events WHERE idempotency_key = 'early'") == "applied"
    assert len(shop.logs(event="order_paid")) == 1
    replay = handle_payment(shop.deps, PaymentNotification("early", 1, PaymentResult.SUCCESS))
    assert replay.replayed and (replay.outcome, replay.status) == (WebhookOutcome.DEFERRED, "deferred")
    assert shop.check().ok


# ---------------------------------------------------------------- expiry


def test_a_sweep_after_the_ttl_releases_the_hold_and_its_units(shop, engine, clock) -> None:
    product = shop.create_product("Ticket", "20.00", 10)
    hold = shop.hold(product.id, 4)

    clock.advance(HOLD_TTL - 1)
    assert shop.release_expired() == (0, 0)
    assert product_row(engine, product.id).reserved == 4

    clock.advance(2)
    assert shop.release_expired() == (1, 0)
    assert shop.release_expired() == (0, 0)

    assert product_row(engine, product.id).reserved == 0
    assert scalar(engine, "SELECT status FROM holds WHERE id = :id", id=hold.id) == "expired"
    assert [e.data["hold_id"] for e in shop.logs(event="hold_released")] == [hold.id]
    assert shop.logs(event="holds_batch_released")[0].data == {"count": 1}
    with pytest.raises(HoldExpired):
        shop.order_from_hold(hold.id)
    assert shop.check().ok


def test_an_expired_hold_cannot_become_an_order_even_before_the_sweep(shop, engine, clock) -> None:
    product = shop.create_product("Ticket", "20.00", 10)
    hold = shop.hold(product.id, 4)
    clock.advance(HOLD_TTL)

    with pytest.raises(HoldExpired):
        shop.order_from_hold(hold.id)

    assert scalar(engine, "SELECT COUNT(*) FROM orders") == 0
    assert scalar(engine, "SELECT status FROM holds WHERE id = :id", id=hold.id) == "active"


def test_a_sweep_cancels_unpaid_orders_after_the_payment_ttl(shop, engine, clock) -> None:
    product = shop.create_product("Seat", "10.00", 10)
    order_id = _pending_order(shop, product.id, 3)

    clock.advance(shop.deps.policy.payment_ttl.total_seconds() + 1)
    assert shop.release_expired() == (0, 1)

    assert shop.get_order(order_id).order.status is OrderStatus.CANCELLED
    assert product_row(engine, product.id).reserved == 0
    assert shop.check().ok


def test_a_purchase_reclaims_expired_unswept_holds_before_refusing(shop, engine, clock) -> None:
    product = shop.create_product("Last ones", "1.00", 3)
    shop.hold(product.id, 3)
    clock.advance(HOLD_TTL + 1)

    shop.purchase(product.id, 3)

    assert (product_row(engine, product.id).stock, product_row(engine, product.id).reserved) == (0, 0)
    assert shop.check().ok


def test_a_snapshot_names_the_earliest_lapse_of_its_own_products_claims(shop, clock) -> None:
    held, ordered, other = (shop.create_product(name, "1.00", 5) for name in ("Held", "Ordered", "Other"))
    hold = shop.hold(held.id, 1)
    order_id = _pending_order(shop, ordered.id, 1)

    def next_lapse(product_id: int):
        with shop.deps.read() as uow:
            return uow.products.snapshot(product_id).next_lapse_at

    due = shop.get_order(order_id).order.payment_due_at
    assert [next_lapse(p.id) for p in (held, ordered, other)] == [hold.expires_at, due, None]
    clock.advance(HOLD_TTL + 1)
    shop.release_expired()
    assert [next_lapse(p.id) for p in (held, ordered, other)] == [None, due, None]


@pytest.fixture
def wire(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    """Every command PyMySQL sends to the server from now on (statements, COMMIT, ROLLBACK)."""
    import pymysql.connections

    sent: list[str] = []
    send = pymysql.connections.Connection._execute_command

    def recording(self, command, sql):
        sent.append((sql.decode() if isinstance(sql, bytes) else str(sql)).split(" ", 1)[0].upper())
        return send(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", recording)
    return sent


@pytest.fixture
def cached_shop(mysql_url: str, redis_url: str, services):
    """A Shop on the same database whose memory is kept current through Redis."""
    with open_services(mysql_url, background=False, redis_url=redis_url, hold_ttl_seconds=HOLD_TTL) as cached:
        yield cached.shop


def test_the_hot_paths_cost_the_fewest_round_trips(cached_shop, wire) -> None:
    """Round trips are most of a request's cost on MySQL; these counts are the design."""
    shop = cached_shop
    plenty = shop.create_product("Plenty", "2.50", 100)
    gone = shop.create_product("Gone", "2.50", 0)
    shop.purchase(plenty.id, 1)  # warm the pools
    shop.hold(plenty.id, 1)
    with pytest.raises(OutOfStock):
        shop.purchase(gone.id, 1)

    wire.clear()
    with pytest.raises(OutOfStock):
        shop.purchase(gone.id, 1)
    assert wire == [], "a sold-out refusal the memory proves costs no round trip"

    shop.get_product(plenty.id)
    wire.clear()
    shop.purchase(plenty.id, 1)
    assert wire == ["INSERT"], "a purchase is one multi-statement: inserts, the UPDATE, COMMIT"

    wire.clear()
    shop.purchase(plenty.id, 1)
    assert wire == ["INSERT"], "the last sale outdated memory, which is still the basis to try on"

    wire.clear()
    shop.hold(plenty.id, 1)
    assert wire == ["INSERT"], "a hold is one multi-statement too"

    limited = shop.create_product("Limited", "2.50", 100, max_per_customer=50)
    shop.purchase(limited.id, 1, "warm")
    wire.clear()
    shop.purchase(limited.id, 1, "ann")
    assert wire == ["INSERT"], "a customer's claim joins the batch: a limited purchase is one round trip too"
    wire.clear()
    shop.hold(limited.id, 1, "ann")
    assert wire == ["INSERT"], "so is a limited hold"

    hold = shop.hold(plenty.id, 1)
    shop.get_product(plenty.id)
    wire.clear()
    shop.order_from_hold(hold.id)
    assert wire == ["SELECT", "INSERT"], "the hold's read (its product from memory), then one batch"

    wire.clear()
    shop.get_product(gone.id)
    assert wire == [], "a read the memory has costs no round trip"


def test_the_hot_paths_leave_nothing_for_the_garbage_collector(cached_shop) -> None:
    """A request's objects are freed by reference counting as it ends: none is left in a
    reference cycle (a unit of work and its session, a refusal and its traceback), which only
    the garbage collector frees, in collections that a purchase would otherwise trigger
    several times over."""
    shop = cached_shop
    plenty = shop.create_product("Plenty", "2.50", 100)
    gone = shop.create_product("Gone", "2.50", 0)

    def requests(n: int) -> None:
        assert shop.purchase_once(Purchase(plenty.id, 1), None).result is not None
        assert shop.purchase_once(Purchase(plenty.id, 1), f"no-garbage-{n}").result is not None
        assert shop.purchase_once(Purchase(plenty.id, 1, "ann"), None).result is not None
        assert isinstance(shop.purchase_once(Purchase(gone.id, 1), None).refusal, OutOfStock)
        assert shop.hold_once(PlaceHold(plenty.id, 1), None).result is not None

    requests(0)  # warm the pools and the statement caches
    gc.collect()
    gc.disable()
    try:
        for n in range(1, 6):
            requests(n)
        left = gc.collect()
    finally:
        gc.enable()
    assert left == 0, f"{left} objects of these requests were left for the garbage collector"


def test_a_purchase_sends_its_rows_first_and_the_stock_update_last_before_commit(cached_shop, wire) -> None:
    """The stock row's lock is taken by the last statement before COMMIT, inside one round trip."""
    shop = cached_shop
    plenty = shop.create_product("Plenty", "2.50", 100)
    shop.get_product(plenty.id)
    wire.clear()
    statements: list[str] = []
    import pymysql.connections

    send = pymysql.connections.Connection._execute_command

    def recording(self, command, sql):
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        statements.extend(part.strip().split(" ", 1)[0].upper() for part in text.split(";\n"))
        return send(self, command, sql)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(pymysql.connections.Connection, "_execute_command", recording)
        shop.purchase(plenty.id, 1)
    # An id is kept in a variable only where a later statement needs it (the order's, for
    # the payloads); the server commits or rolls back on the UPDATE's row count (CALL). Every
    # value comes back in its statement's OK packet (new ids, the stock the UPDATE reports):
    # no statement reads the row back, and no SELECT follows.
    assert statements == ["INSERT", "SET", "INSERT", "INSERT", "UPDATE", "CALL"]


def test_a_keyed_purchase_stores_its_key_and_answer_with_one_insert_after_the_stock_update(
    cached_shop, monkeypatch
) -> None:
    """The key's row goes in last, with the answer in it (the order's id and the stock the
    UPDATE reported set in by the server): no claim before the effect, no UPDATE of the
    key's row after it."""
    shop = cached_shop
    plenty = shop.create_product("Plenty", "2.50", 100)
    shop.get_product(plenty.id)
    sent = _multi_statements(monkeypatch)
    view = shop.purchase_once(Purchase(plenty.id, 1), "one-insert").result
    statements = [" ".join(statement.split()[:3]).upper() for command in sent for statement in command]
    keyed = [s for s in statements if "IDEMPOTENCY_KEYS" in s]
    assert keyed == ["INSERT INTO IDEMPOTENCY_KEYS"], statements
    assert statements.index(keyed[0]) > statements.index("UPDATE PRODUCTS SET"), statements
    replay = shop.purchase_once(Purchase(plenty.id, 1), "one-insert")
    assert replay.replayed and replay.result == view and view.product.stock == 99


def test_a_purchase_answers_with_the_ids_and_stock_its_statements_reported(shop, engine) -> None:
    """The new rows' ids and the stock the UPDATE left come back in the statements' OK packets
    (LAST_INSERT_ID(stock - q) for the stock): each must be this sale's own, the last unit's
    0 included, with and without an Idempotency-Key (whose stored answer must agree)."""
    product = shop.create_product("Three left", "3.00", 3)
    first = shop.purchase(product.id, 1)
    keyed = shop.purchase_once(Purchase(product.id, 1), "reported-1").result
    last = shop.purchase(product.id, 1)

    assert [v.product.stock for v in (first, keyed, last)] == [2, 1, 0]
    orders_made = rows(engine, "SELECT id FROM orders WHERE product_id = :id ORDER BY id", id=product.id)
    assert [row[0] for row in orders_made] == [v.order.id for v in (first, keyed, last)]
    payloads = rows(engine, "SELECT payload FROM outbox WHERE task = 'stockade.process_order' ORDER BY id")
    assert [json.loads(p[0])["order_id"] for p in payloads[-3:]] == [v.order.id for v in (first, keyed, last)]
    replay = shop.purchase_once(Purchase(product.id, 1), "reported-1")
    assert replay.replayed and replay.result == keyed


def test_a_purchase_names_the_product_as_its_sale_found_it(cached_shop, engine) -> None:
    """The answer's name is the one the sale's own statement checked: a rename behind memory's
    back voids the attempt, and the retry sells under the new name."""
    shop = cached_shop
    product = shop.create_product("Desk lamp", "1.00", 5)
    shop.get_product(product.id)  # memory has it as "Desk lamp"
    # A rename the column's case-insensitive collation would call equal: the guard must not.
    execute(engine, "UPDATE products SET name = 'DESK LAMP' WHERE id = :id", id=product.id)

    sold = shop.purchase(product.id, 1)

    assert (sold.product.name, sold.product.stock) == ("DESK LAMP", 4)
    assert product_row(engine, product.id).stock == 4


def test_a_purchase_refused_after_waiting_for_the_row_lock_frees_it_without_waiting_for_its_client(
    shop, engine, monkeypatch
) -> None:
    """The last unit is being sold by another transaction; a purchase queued on the row's
    lock then matches nothing. Such an UPDATE keeps the lock until its transaction ends, and
    a flash sale's refusals queued behind clients slow to send their ROLLBACK. The server
    must end it in the batch: the row is free while this client has not said a word."""
    from stockade.adapters.sql.session import Session

    product = shop.create_product("Last one", "1.00", 1)
    client_may_go = threading.Event()
    rollback = Session._rollback_unseen

    def slow_client(self, dbapi) -> None:
        client_may_go.wait(30)
        rollback(self, dbapi)

    monkeypatch.setattr(Session, "_rollback_unseen", slow_client)
    outcome: list[object] = []
    seller = engine.connect()
    try:
        seller.execute(sa.text("UPDATE products SET stock = 0 WHERE id = :id"), {"id": product.id})  # holds the lock
        buyer = threading.Thread(target=lambda: outcome.append(_attempt(shop, product.id)))
        buyer.start()
        deadline = time.monotonic() + 30
        queued = "SELECT COUNT(*) FROM information_schema.PROCESSLIST WHERE STATE = 'Updating' AND INFO LIKE 'UPDATE products%'"
        while scalar(engine, queued) == 0:
            assert time.monotonic() < deadline, "the purchase never queued on the row's lock"
            time.sleep(0.01)
        seller.commit()  # the last unit is gone: the queued UPDATE matches nothing

        with engine.connect() as other:
            other.execute(sa.text("SET SESSION innodb_lock_wait_timeout = 5"))
            other.execute(sa.text("UPDATE products SET name = 'Sold' WHERE id = :id"), {"id": product.id})
            other.commit()
    finally:
        client_may_go.set()
        seller.close()
    buyer.join(30)
    assert outcome == [OutOfStock]


def test_a_database_without_the_procedure_answers_503_with_what_to_run(shop, engine) -> None:
    """A schema from before migration 0007 lacks stockade_commit_if_changed: a purchase is
    refused as the schema's fault, with the command that fixes it, not a 500."""
    product = shop.create_product("Older schema", "1.00", 5)
    execute(engine, "DROP PROCEDURE stockade_commit_if_changed")
    client = testing.TestClient(create_app(shop))

    response = client.simulate_post("/api/orders/purchase", json={"product_id": product.id, "quantity": 1})

    assert response.status_code == 503, response.text
    assert "stockade migrate" in response.json["message"]
    assert product_row(engine, product.id).stock == 5


def _attempt(shop, product_id: int) -> object:
    try:
        return shop.purchase(product_id, 1)
    except OutOfStock:
        return OutOfStock


def test_new_ids_come_back_right_whether_a_variable_keeps_them_or_the_batch_reads_them(shop, engine) -> None:
    """Ids travel through variables (used by later statements) and the statements' OK packets;
    every one must name its own row."""
    product = shop.create_product("Ids", "1.00", 10)
    now = shop.deps.clock.now()
    with shop.deps.uow() as uow:
        first = uow.orders.add(product.id, 1, Decimal("1.00"), OrderStatus.CREATED, now)
        second = uow.orders.add(product.id, 2, Decimal("2.00"), OrderStatus.CREATED, now)  # first is now kept
        uow.events.record("purchase_created", {"order_id": first}, now)
        message = uow.outbox.add("stockade.process_order", {"order_id": second}, now, now)
        uow.commit()
    first, second, message = resolved((first, second, message))
    assert rows(engine, "SELECT id, quantity FROM orders ORDER BY id") == [(first, 1), (second, 2)]
    assert json.loads(scalar(engine, "SELECT data FROM event_log WHERE event = 'purchase_created'")) == {
        "order_id": first
    }
    assert message.id == scalar(engine, "SELECT id FROM outbox WHERE task = 'stockade.process_order'")
    assert json.loads(scalar(engine, "SELECT payload FROM outbox WHERE id = :id", id=message.id))["order_id"] == second


def test_a_guard_followed_by_more_statements_still_stops_the_batch(cached_shop, engine) -> None:
    """With an Idempotency-Key the stock UPDATE's guard is not last (the key's answer follows):
    a lost condition still voids everything, the key included."""
    shop = cached_shop
    scarce = shop.create_product("Scarce", "2.50", 1)
    shop.get_product(scarce.id)
    execute(engine, "UPDATE products SET stock = 0 WHERE id = :id", id=scarce.id)  # behind memory's back

    client = testing.TestClient(create_app(shop))
    refused = client.simulate_post(
        "/api/orders/purchase", json={"product_id": scarce.id, "quantity": 1}, headers={"Idempotency-Key": "guarded-1"}
    )

    assert refused.status_code == 409, refused.text
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE product_id = :id", id=scarce.id) == 0
    # The refusal is proven by a fresh read and recorded as the key's answer, in a transaction
    # of its own: the voided one left no claim without an answer.
    assert scalar(engine, "SELECT COUNT(*) FROM idempotency_keys WHERE answer IS NULL") == 0


# ---------------------------------------------------------------- check


def test_check_is_clean_then_names_a_product_whose_reserved_drifted(shop, engine) -> None:
    drifting = shop.create_product("Drifts", "1.00", 10)
    steady = shop.create_product("Steady", "1.00", 10)
    shop.hold(drifting.id, 2)
    shop.order_from_hold(shop.hold(steady.id, 1).id)
    shop.purchase(steady.id, 2)
    report = shop.check()
    assert report.ok and report.products_checked == 2

    execute(engine, "UPDATE products SET reserved = reserved + 1 WHERE id = :id", id=drifting.id)

    report = shop.check()
    assert not report.ok
    assert [d.product_id for d in report.drifts] == [drifting.id]
    drift = report.drifts[0]
    assert (drift.reserved, drift.expected_reserved) == (3, 2)


def test_check_names_a_product_one_of_whose_customers_claims_drifted(shop, engine) -> None:
    limited = shop.create_product("Limited", "1.00", 10, max_per_customer=3)
    shop.purchase(limited.id, 1, "ann")
    shop.order_from_hold(shop.hold(limited.id, 2, "bob").id)
    shop.hold(limited.id, 1, "cat")
    assert shop.check().ok

    execute(engine, "UPDATE customer_claims SET claimed = claimed + 1 WHERE customer_id = 'bob'")
    execute(engine, "DELETE FROM customer_claims WHERE customer_id = 'cat'")

    report = shop.check()
    assert [d.product_id for d in report.drifts] == [limited.id]
    assert report.drifts[0].problems == (
        "customer 'bob' claims 3 but their active holds and orders hold 2",
        "customer 'cat' claims 0 but their active holds and orders hold 1",
    )


# ---------------------------------------------------------------- idempotency keys


def _key(name: str, quantity: int = 1):
    return request_key("orders.purchase", name, Purchase(1, quantity))


def test_a_key_commits_with_its_answer_and_a_second_claim_is_taken(shop) -> None:
    key = _key("k1")
    answer = encode_refusal(OutOfStock())
    with shop.deps.uow() as uow:
        uow.idempotency.claim(key, shop.deps.clock.now(), answer)
        uow.commit()

    with shop.deps.read() as uow:
        assert uow.idempotency.find(key) == KeyRecord(key.fingerprint, answer)
    with pytest.raises(IdempotencyKeyTaken):
        with shop.deps.uow() as uow:
            uow.idempotency.claim(key, shop.deps.clock.now(), answer)
            uow.commit()
    assert isinstance(decode(answer), OutOfStock)


def test_a_key_rolled_back_with_its_effect_leaves_nothing(shop) -> None:
    key = _key("k1")
    with shop.deps.uow() as uow:
        uow.idempotency.claim(key, shop.deps.clock.now())
        uow.products.get(1)  # sends the claim
    with shop.deps.read() as uow:
        assert uow.idempotency.find(key) is None
    with shop.deps.uow() as uow:
        uow.idempotency.claim(key, shop.deps.clock.now(), encode_refusal(OutOfStock()))
        uow.commit()


def test_keys_differing_only_in_case_or_scope_are_distinct(shop) -> None:
    now = shop.deps.clock.now()
    for key in (_key("Key-A"), _key("key-a"), request_key("holds", "Key-A", Purchase(1, 1))):
        with shop.deps.uow() as uow:  # the table's collation ignores case; keys must not
            uow.idempotency.claim(key, now, encode_refusal(OutOfStock()))
            uow.commit()


def test_keys_are_purged_after_their_retention(shop, clock) -> None:
    with shop.deps.uow() as uow:
        uow.idempotency.claim(_key("old"), clock.now(), encode_refusal(OutOfStock()))
        uow.commit()
    clock.advance(3600)
    with shop.deps.uow() as uow:
        assert uow.idempotency.purge(clock.now() - timedelta(seconds=1800)) == 1
        uow.commit()
    with shop.deps.read() as uow:
        assert uow.idempotency.find(_key("old")) is None


def test_a_held_write_that_fails_when_sent_early_leaves_nothing_for_the_next_transaction(shop, engine) -> None:
    """Held statements go out before a statement run at once. If one of them fails there,
    what ran before it must be rolled back, not left in an open transaction on a pooled
    connection for the next unit of work to commit."""
    gone = shop.create_product("Gone", "1.00", 0)
    with pytest.raises(ConditionFailed):
        with shop.deps.uow() as uow:
            now = shop.deps.clock.now()
            uow.events.record("stray_event", {"product_id": gone.id}, now)  # held
            uow.products.reserve(gone.id, 1, None, now)  # held; its guard fails when sent
            uow.products.get(gone.id)  # run at once: sends the held statements first
    for _ in range(3):  # whichever pooled connection the next units of work get
        shop.create_product("Next", "1.00", 1)
    assert scalar(engine, "SELECT COUNT(*) FROM event_log WHERE event = 'stray_event'") == 0


# ---------------------------------------------------------------- group commit


def _queue_of(shop) -> list:
    """The queue of the writers waiting to commit with the shop's next group."""
    return shop.deps.uow()._group._queue


@pytest.fixture
def grouping(shop, monkeypatch: pytest.MonkeyPatch):
    """`grouping(n)`: the next leader of a group waits until `n` writers are queued, so that
    they commit as one group."""
    from stockade.adapters.sql.session import Session

    lead = Session._lead_batches
    expected: list[int] = []

    def gated(self, take_group):
        if expected:
            deadline = time.monotonic() + 10
            while len(_queue_of(shop)) < expected[0]:
                assert time.monotonic() < deadline, "the writers did not queue"
                time.sleep(0.005)
            expected.clear()
        return lead(self, take_group)

    monkeypatch.setattr(Session, "_lead_batches", gated)
    return expected.append


def _all_at_once(*calls) -> list[object]:
    """Run each call in a thread of its own; each one's result or exception, in order."""
    outcomes: list[object] = [None] * len(calls)

    def run(at: int) -> None:
        try:
            outcomes[at] = calls[at]()
        except Exception as exc:  # noqa: BLE001 - the test inspects it
            outcomes[at] = exc

    threads = [threading.Thread(target=run, args=(at,)) for at in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return outcomes


def _multi_statements(monkeypatch: pytest.MonkeyPatch) -> list[list[str]]:
    """Every command PyMySQL sends from now on, split into its statements."""
    import pymysql.connections

    sent: list[list[str]] = []
    send = pymysql.connections.Connection._execute_command

    def recording(self, command, sql):
        text = sql.decode() if isinstance(sql, bytes) else str(sql)
        sent.append([part.strip() for part in text.split(";\n")])
        return send(self, command, sql)

    monkeypatch.setattr(pymysql.connections.Connection, "_execute_command", recording)
    return sent


def test_writers_that_commit_together_share_one_round_trip_each_with_its_own_outcome(
    shop, engine, grouping, monkeypatch
) -> None:
    """Four purchases in one group: the two on a product with one unit left race (the loser's
    UPDATE matches nothing and the server undoes it alone), and the two with one
    Idempotency-Key collide (the second's claim fails; it is undone and the group goes on)."""
    last = shop.create_product("Last one", "1.00", 1)
    keyed = shop.create_product("Keyed", "2.00", 10)
    command = Purchase(keyed.id, 1)
    sent = _multi_statements(monkeypatch)
    grouping(4)

    outcomes = _all_at_once(  # the later product's first: the group sorts them
        lambda: shop.purchase_once(command, "one-key"),
        lambda: shop.purchase_once(command, "one-key"),
        lambda: shop.purchase(last.id, 1),
        lambda: shop.purchase(last.id, 1),
    )

    sold = [o for o in outcomes[2:] if not isinstance(o, Exception)]
    assert len(sold) == 1 and any(isinstance(o, OutOfStock) for o in outcomes[2:]), outcomes
    first, second = outcomes[:2]
    assert not first.replayed or not second.replayed, "one of them is the first answer"
    assert first.replayed != second.replayed and first.result == second.result, outcomes
    groups = [s for s in sent if s.count("SAVEPOINT stockade_writer") == 4]
    assert len(groups) == 1 and groups[0][-1] == "COMMIT", sent
    # Each writer's SAVEPOINT replaces the one before it (same name): none is released.
    assert not any(s.startswith("RELEASE") for s in groups[0]), groups[0]
    updated = [int(m) for s in groups[0] for m in re.findall(r"^UPDATE products .* products\.id = (\d+)", s)]
    assert updated == sorted(updated) == [last.id, last.id, keyed.id, keyed.id], "in the order of the product rows"
    undone = [s for s in sent if s[0] == "ROLLBACK TO SAVEPOINT stockade_writer"]
    assert len(undone) == 1 and undone[0][-1] == "COMMIT", "the duplicate claim is undone, the rest sent again"
    assert (product_row(engine, last.id).stock, product_row(engine, keyed.id).stock) == (0, 9)
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE product_id IN (:a, :b)", a=last.id, b=keyed.id) == 2
    assert scalar(engine, "SELECT COUNT(*) FROM outbox") == scalar(engine, "SELECT COUNT(*) FROM orders")
    assert shop.check().drifts == ()


def test_a_lock_wait_timeout_in_a_group_rolls_every_writer_back_and_each_retries_once(
    shop, engine, services, grouping
) -> None:
    """A transient error may have rolled back the whole transaction: no writer of the group
    may believe it committed. Each retries, and each purchase happens exactly once."""
    free = shop.create_product("Free", "1.00", 10)
    locked = shop.create_product("Locked", "1.00", 10)

    @sa.event.listens_for(engine, "connect")
    def impatient(dbapi_connection, _record) -> None:
        with dbapi_connection.cursor() as cursor:
            cursor.execute("SET SESSION innodb_lock_wait_timeout = 1")

    engine.dispose()  # the pool's connections are opened anew, impatient
    holder = engine.raw_connection()
    try:
        with holder.cursor() as cursor:
            cursor.execute("SELECT stock FROM products WHERE id = %s FOR UPDATE", (locked.id,))
        timeouts: list[int] = []
        from stockade.adapters.sql.session import Session

        send_group = Session._send_group

        def releasing(self, batches):
            errors = send_group(self, batches)
            timeouts.append(len(batches))
            holder.rollback()  # the lock goes once the group has failed
            return errors

        with pytest.MonkeyPatch.context() as patch:
            patch.setattr(Session, "_send_group", releasing)
            grouping(2)
            outcomes = _all_at_once(lambda: shop.purchase(free.id, 1), lambda: shop.purchase(locked.id, 1))
    finally:
        holder.close()

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert timeouts[0] == 2, "both writers were in the group that timed out"
    assert (product_row(engine, free.id).stock, product_row(engine, locked.id).stock) == (9, 9)
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE product_id = :p", p=free.id) == 1
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE product_id = :p", p=locked.id) == 1
    assert shop.check().drifts == ()


def _round_trips_of_writers(sent: list[list[str]], writers: int) -> list[list[str]]:
    """The recorded round trips that carry `writers` writers of a group."""
    return [s for s in sent if s.count("SAVEPOINT stockade_writer") == writers]


@pytest.mark.parametrize("take", ["purchase", "hold"])
def test_writers_of_a_group_that_take_units_of_one_product_decide_with_one_statement(
    shop, engine, grouping, monkeypatch, take
) -> None:
    """Four takes of one product that commit together: their rows first, then ONE conditional
    UPDATE for their total quantity, which the server commits only if it changed the row. The
    row is locked for that statement and the COMMIT only, and the server runs one UPDATE where
    it ran four. Each purchase is told the stock as the writers before it left it."""
    product = shop.create_product("Shared", "1.00", 20)
    sent = _multi_statements(monkeypatch)
    grouping(4)
    act = shop.purchase if take == "purchase" else shop.hold

    outcomes = _all_at_once(*[lambda q=q: act(product.id, q) for q in (1, 2, 3, 4)])

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    groups = _round_trips_of_writers(sent, 4)
    assert len(groups) == 1, sent
    group = groups[0]
    updates = [s for s in group if s.startswith("UPDATE products")]
    assert len(updates) == 1 and group[-2:] == [updates[0], "CALL stockade_commit_if_changed(ROW_COUNT())"], group
    assert not any("stockade_keep_if_changed" in s for s in group), group
    row = product_row(engine, product.id)
    if take == "purchase":
        assert "LAST_INSERT_ID(products.stock - 10)" in updates[0], updates[0]
        assert row.stock == 10
        left = 20
        for told, quantity in sorted(((o.product.stock, o.order.quantity) for o in outcomes), reverse=True):
            left -= quantity
            assert told == left, outcomes
    else:
        assert (row.stock, row.reserved) == (20, 10)
        assert sorted(o.quantity for o in outcomes) == [1, 2, 3, 4]
    assert shop.check().drifts == ()


def test_purchases_and_holds_of_one_product_in_one_group_each_share_their_own_statement(
    shop, engine, grouping, monkeypatch
) -> None:
    """Taking and reserving are different writes: a group of both on one product runs one of
    each, the first followed by its guard, the last by the statement that commits. Together
    they must fit: each checks what the other left."""
    product = shop.create_product("Both ways", "1.00", 10)
    sent = _multi_statements(monkeypatch)
    grouping(4)

    outcomes = _all_at_once(
        lambda: shop.purchase(product.id, 1),
        lambda: shop.hold(product.id, 3),
        lambda: shop.purchase(product.id, 2),
        lambda: shop.hold(product.id, 1),
    )

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    (group,) = _round_trips_of_writers(sent, 4)
    updates = [at for at, s in enumerate(group) if s.startswith("UPDATE products")]
    assert len(updates) == 2 and updates[1] == len(group) - 2, group
    assert group[updates[0] + 1].startswith("SET @stockade_guard"), group
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved) == (7, 4)
    (first, first_quantity), (second, _) = sorted(
        ((o.product.stock, o.order.quantity) for o in (outcomes[0], outcomes[2])), reverse=True
    )
    assert (first, second) == (10 - first_quantity, 7), outcomes  # the holds reserve; they take no stock
    assert shop.check().drifts == ()


def test_customers_of_a_limited_product_share_one_take_and_the_one_over_its_limit_is_undone_alone(
    shop, engine, grouping, monkeypatch
) -> None:
    """Purchases with a customer_id grow their customer's claim first, each by a conditional
    UPDATE whose guard stops the batch when it fails: that writer alone is undone, and the
    others' units are still taken by one combined UPDATE."""
    product = shop.create_product("Limited", "1.00", 20, max_per_customer=2)
    sent = _multi_statements(monkeypatch)
    grouping(4)

    outcomes = _all_at_once(
        lambda: shop.purchase(product.id, 2, "ann"),
        lambda: shop.purchase(product.id, 2, "ann"),
        lambda: shop.purchase(product.id, 1, "bob"),
        lambda: shop.purchase(product.id, 1, "cy"),
    )

    refused = [o for o in outcomes if isinstance(o, Exception)]
    assert len(refused) == 1 and isinstance(refused[0], LimitPerCustomerReached), outcomes
    assert isinstance(outcomes[2], OrderView) and isinstance(outcomes[3], OrderView), outcomes
    takes = [updates for trip in sent if (updates := [s for s in trip if s.startswith("UPDATE products")])]
    assert all(len(updates) == 1 for updates in takes), takes
    assert "LAST_INSERT_ID(products.stock - 4)" in takes[-1][0], takes
    assert product_row(engine, product.id).stock == 16
    assert scalar(engine, "SELECT COUNT(*) FROM orders") == 3
    assert shop.check().drifts == ()


@pytest.mark.parametrize("plain_writers_after", [0, 2], ids=["the last combined write", "one before another"])
def test_a_combined_write_that_asks_for_more_than_is_left_lets_each_writer_decide_alone(
    shop, engine, grouping, monkeypatch, plain_writers_after
) -> None:
    """Four writers ask for 2 units each of a product with 5 left: their combined UPDATE changes
    nothing, so the group is rolled back, none of its rows stays, and it is sent again with a
    conditional UPDATE per writer: two are served and two refused. Whether the combined write
    that lost was the group's last (the server rolls back) or had another after it (its guard
    stops the batch), the outcome is the same."""
    scarce = shop.create_product("Scarce", "1.00", 5)
    plenty = shop.create_product("Plenty", "1.00", 100)  # after the scarce one in the group
    sent = _multi_statements(monkeypatch)
    calls = [lambda: shop.purchase(scarce.id, 2)] * 4 + [lambda: shop.purchase(plenty.id, 1)] * plain_writers_after
    grouping(len(calls))

    outcomes = _all_at_once(*calls)

    served = [o for o in outcomes[:4] if not isinstance(o, Exception)]
    assert len(served) == 2 and all(isinstance(o, OutOfStock) for o in outcomes[:4] if o not in served), outcomes
    assert sorted(o.product.stock for o in served) == [1, 3]
    assert all(not isinstance(o, Exception) for o in outcomes[4:]), outcomes
    combined, one_by_one = _round_trips_of_writers(sent, len(calls))
    assert "LAST_INSERT_ID(products.stock - 8)" in combined[-4 if plain_writers_after else -2], combined
    assert sum(s.startswith("UPDATE products") for s in one_by_one) == len(calls), one_by_one
    assert (product_row(engine, scarce.id).stock, product_row(engine, plenty.id).stock) == (
        1,
        100 - plain_writers_after,
    )
    orders = scalar(engine, "SELECT COUNT(*) FROM orders")
    assert orders == 2 + plain_writers_after
    assert scalar(engine, "SELECT COUNT(*) FROM outbox") == orders
    assert count_events(engine, "purchase_created") == orders
    assert shop.check().drifts == ()


def test_only_the_leader_of_a_group_takes_a_connection(shop, engine, grouping, monkeypatch) -> None:
    """A writer takes a pooled connection only when a statement of its own is to be sent: the
    followers of a group never do, so a group is not capped by the pool's size, and queued
    writers keep no connection from anyone."""
    product = shop.create_product("Pooled", "1.00", 10)
    from stockade.adapters.sql.session import Session

    send_group = Session._send_group
    out: list[int] = []

    def counting(self, batches):
        out.append(engine.pool.checkedout())
        return send_group(self, batches)

    monkeypatch.setattr(Session, "_send_group", counting)
    grouping(4)
    outcomes = _all_at_once(*[lambda: shop.purchase(product.id, 1)] * 4)

    assert all(not isinstance(o, Exception) for o in outcomes), outcomes
    assert out == [1], "one group, sent on the leader's connection, the only one out"
    assert product_row(engine, product.id).stock == 6
    assert engine.pool.checkedout() == 0


def test_strings_are_stored_as_given_when_the_server_mode_has_no_backslash_escapes(mysql_url: str) -> None:
    """Statements are rendered before a connection is taken, with backslash escapes: a server
    whose sql_mode says NO_BACKSLASH_ESCAPES has it removed for our sessions, else a quote
    after a backslash would end the string."""
    tricky = "it's a \\' back\\slash \\\\ \"quote\""
    mode = "init_command=SET+SESSION+sql_mode%3D%27NO_BACKSLASH_ESCAPES%27"
    url = f"{mysql_url}{'&' if '?' in mysql_url else '?'}{mode}"
    with open_services(url, migrate_schema=True, background=False) as services:
        product = services.shop.create_product(tricky, "1.00", 5)
        order = services.shop.purchase(product.id, 1)
        assert services.shop.get_product(product.id).name == tricky
        assert order.product.name == tricky
        assert product_row(services.engine, product.id).stock == 4
