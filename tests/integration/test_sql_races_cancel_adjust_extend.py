"""Cancels, stock adjustments and hold extensions racing their rivals on a real MariaDB."""

from __future__ import annotations

import random
import time
from datetime import timedelta

import pytest

from stockade.adapters.clock import FixedClock
from stockade.domain.errors import HoldExpired, OrderAlreadyProcessed, OutOfStock, StockAdjustmentRefused
from stockade.domain.model import OrderStatus
from tests.integration.helpers import (
    MICROSECOND,
    count_events,
    open_services,
    product_row,
    race,
    scalar,
    set_clock,
    summary,
    unexpected,
)

HOLD_TTL = 120


@pytest.fixture
def services(mysql_url: str):
    """One Services shared by every racing thread; background tasks off (the test runs them)."""
    with open_services(mysql_url, migrate_schema=True, background=False, hold_ttl_seconds=HOLD_TTL) as services:
        yield services


def _assert_consistent(services) -> None:
    report = services.shop.check()
    assert report.ok, report.drifts


#: How long the cancels wait after the start line, round by round: none (before processing reads
#: the order), into processing's wait (its conditional update must lose), after it (processing won).
CANCEL_DELAYS = (0.0, 0.02, 0.04, 0.0, 0.3, 0.03)
PROCESSING_SECONDS = 0.06


@pytest.mark.parametrize("kind", ["created", "paid"])
def test_50_cancels_racing_process_order_let_exactly_one_win_and_the_books_balance(mysql_url: str, kind) -> None:
    with open_services(
        mysql_url, migrate_schema=True, background=False, order_processing_seconds=PROCESSING_SECONDS
    ) as services:
        shop, engine = services.shop, services.engine
        product = shop.create_product("Console", "499.00", 1000)
        winners = []

        for delay in CANCEL_DELAYS:
            if kind == "created":
                order_id = shop.purchase(product.id, 2).order.id
            else:
                order_id = shop.order_from_hold(shop.hold(product.id, 2).id).order.id
                shop.payment(f"pay-{order_id}", order_id, "success")
            stock_before_cancel = product_row(engine, product.id).stock

            def act(thread: int, _call: int, order_id: int = order_id, delay: float = delay):
                if thread == 0:
                    return shop.process_order(order_id)
                time.sleep(delay)
                return shop.cancel_order(order_id)

            outcomes = race(51, 1, act)  # one processing run and 50 cancels, started together

            process, cancels = outcomes[0], outcomes[1:]
            allowed = OrderAlreadyProcessed
            assert not unexpected(outcomes, allowed), summary(unexpected(outcomes, allowed))
            status, refund = (
                scalar(engine, f"SELECT {column} FROM orders WHERE id = :o", o=order_id)
                for column in ("status", "refund_status")
            )
            stock = product_row(engine, product.id).stock
            processed_events, cancelled_events = (
                scalar(
                    engine,
                    "SELECT COUNT(*) FROM event_log WHERE event = :e AND data LIKE :d",
                    e=event,
                    d=f'%"order_id": {order_id}%',
                )
                for event in ("order_processed", "order_cancelled")
            )
            if process.value.processed:
                winners.append("processing")
                assert status == OrderStatus.PROCESSED.value
                assert all(isinstance(c.error, OrderAlreadyProcessed) for c in cancels), summary(
                    [c.trace or "" for c in cancels if c.ok]
                )
                assert (processed_events, cancelled_events, stock, refund) == (1, 0, stock_before_cancel, None)
            else:
                winners.append("cancel")
                assert status == OrderStatus.CANCELLED.value
                assert process.value.status is OrderStatus.CANCELLED
                # the cancels after the first are answered 200 too, with no second effect
                assert all(c.ok and c.value.order.status is OrderStatus.CANCELLED for c in cancels)
                assert (processed_events, cancelled_events, stock) == (0, 1, stock_before_cancel + 2)
                assert refund == ("required" if kind == "paid" else None)
            assert product_row(engine, product.id).reserved == 0

        sold = scalar(
            engine,
            "SELECT COALESCE(SUM(quantity), 0) FROM orders WHERE product_id = :p AND status = 'processed'",
            p=product.id,
        )
        assert product_row(engine, product.id).stock == 1000 - sold
        assert count_events(engine, "order_processed") == winners.count("processing")
        assert count_events(engine, "payment_refund_required") == (winners.count("cancel") if kind == "paid" else 0)
        assert "cancel" in winners  # a cancel before processing read the order always wins
        _assert_consistent(services)


def test_100_purchases_and_100_adjustments_racing_on_one_product_leave_the_exact_stock(services) -> None:
    shop, engine = services.shop, services.engine
    product = shop.create_product("Flash", "20.00", 120)
    rng = random.Random(20261204)
    deltas = [rng.choice((-3, -2, -1, 1, 2, 3)) for _ in range(100)]

    def act(thread: int, call: int):
        if thread % 2 == 0:
            return shop.purchase(product.id, 1)
        return shop.adjust_stock(product.id, deltas[thread // 2 * 10 + call], f"count {thread}-{call}")

    outcomes = race(20, 10, act)

    allowed = (OutOfStock, StockAdjustmentRefused)
    assert not unexpected(outcomes, *allowed), summary(unexpected(outcomes, *allowed))
    sold = sum(1 for o in outcomes if o.ok and o.thread % 2 == 0)
    applied = [o.value for o in outcomes if o.ok and o.thread % 2 == 1]
    expected_stock = 120 - sold + sum(a.delta for a in applied)
    row = product_row(engine, product.id)
    assert (row.stock, row.reserved) == (expected_stock, 0)
    assert scalar(engine, "SELECT COUNT(*) FROM orders WHERE product_id = :p", p=product.id) == sold
    assert scalar(engine, "SELECT COUNT(*) FROM stock_adjustments WHERE product_id = :p", p=product.id) == len(applied)
    assert scalar(engine, "SELECT SUM(delta) FROM stock_adjustments WHERE product_id = :p", p=product.id) == sum(
        a.delta for a in applied
    )
    assert count_events(engine, "stock_adjusted") == len(applied)
    # each adjustment saw the stock of its own moment: the last one applied shows the last stock
    # unless sales came after it, and none ever showed a negative available
    assert all(a.stock_after >= 0 for a in applied)
    assert sold > 0 and len(applied) > 0
    _assert_consistent(services)


@pytest.mark.parametrize("mode", ["both-at-expiry", "extensions-just-before-sweep-at-expiry"])
def test_50_extensions_racing_the_sweeper_at_the_expiry_instant_end_extended_or_expired_never_both(
    mysql_url: str, mode: str
) -> None:
    buyer_clock, sweep_clock = FixedClock(), FixedClock()
    start = buyer_clock.now()
    with (
        open_services(mysql_url, clock=buyer_clock, migrate_schema=True, hold_ttl_seconds=HOLD_TTL) as buyer,
        open_services(mysql_url, clock=sweep_clock, hold_ttl_seconds=HOLD_TTL) as sweeper,
    ):
        engine = buyer.engine
        product = buyer.shop.create_product("Ticket", "5.00", 1000)
        extended_rounds = expired_rounds = extensions_won = 0

        for _ in range(8):
            set_clock(buyer_clock, start)
            hold = buyer.shop.hold(product.id, 3)
            reserved_with_hold = product_row(engine, product.id).reserved
            at = hold.expires_at
            set_clock(buyer_clock, at if mode == "both-at-expiry" else at - MICROSECOND)
            set_clock(sweep_clock, at)

            outcomes = race(
                51, 1, lambda t, _c: sweeper.shop.release_expired() if t == 0 else buyer.shop.extend_hold(hold.id, 1)
            )

            sweep, extensions = outcomes[0], outcomes[1:]
            assert sweep.ok, sweep.trace
            assert not unexpected(extensions, HoldExpired), summary(unexpected(extensions, HoldExpired))
            won = [e for e in extensions if e.ok]
            status, expires_at = (
                scalar(engine, f"SELECT {column} FROM holds WHERE id = :h", h=hold.id)
                for column in ("status", "expires_at")
            )
            reserved = product_row(engine, product.id).reserved
            extensions_won += len(won)
            if won:
                extended_rounds += 1
                assert sweep.value == (0, 0)
                assert status == "active"
                # every extension that answered 200 counts: none was lost to a racing one
                assert expires_at == (at + timedelta(seconds=len(won))).replace(tzinfo=None)
                assert reserved == reserved_with_hold
                assert buyer.shop.release_hold(hold.id) is None  # leave the next round a clean product
            else:
                expired_rounds += 1
                assert sweep.value == (1, 0)
                assert (status, expires_at) == ("expired", at.replace(tzinfo=None))
                assert reserved == reserved_with_hold - 3
            assert product_row(engine, product.id).reserved == reserved_with_hold - 3

        assert extended_rounds + expired_rounds == 8
        if mode == "both-at-expiry":
            assert expired_rounds == 8  # expires_at <= now for both: no extension may revive it
        assert count_events(engine, "hold_extended") == extensions_won
        assert count_events(engine, "holds_batch_released") == expired_rounds
        report = buyer.shop.check()
        assert report.ok, report.drifts
