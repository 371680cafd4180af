"""The pure domain: stock levels, hold status, the payment table, money."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from decimal import Decimal

import pytest
from hypothesis import given
from hypothesis import strategies as st

from stockade.domain.errors import HoldAlreadyUsed, HoldExpired, HoldReleased, OutOfStock, StockBelowReserved
from stockade.domain.model import (
    Hold,
    HoldStatus,
    OrderStatus,
    PaymentDecision,
    PaymentResult,
    StockLevels,
    WebhookOutcome,
    decide_payment,
    ensure_hold_usable,
    money,
    utc_timestamp,
)

NOW = datetime(2026, 1, 7, 8, 0, tzinfo=timezone.utc)


@given(st.datetimes(timezones=st.just(timezone.utc)))
def test_a_moment_is_shown_as_iso_8601_with_microseconds_and_z(moment: datetime) -> None:
    shown = utc_timestamp(moment)
    assert len(shown) == 27 and shown.endswith("Z"), shown  # four-digit year, whatever the year
    assert datetime.fromisoformat(shown[:-1] + "+00:00") == moment


# StockLevels


def test_purchase_takes_units_from_stock_and_leaves_reserved_alone():
    assert StockLevels(10, 3).purchase(7) == StockLevels(3, 3)


def test_purchase_of_more_than_available_is_out_of_stock():
    with pytest.raises(OutOfStock):
        StockLevels(10, 3).purchase(8)


def test_hold_reserves_units_without_touching_stock():
    assert StockLevels(10, 3).hold(7) == StockLevels(10, 10)


def test_hold_of_more_than_available_is_out_of_stock():
    with pytest.raises(OutOfStock):
        StockLevels(10, 3).hold(8)


def test_release_gives_reserved_units_back():
    assert StockLevels(10, 3).release(2) == StockLevels(10, 1)


def test_release_of_more_than_reserved_is_refused():
    with pytest.raises(ValueError):
        StockLevels(10, 3).release(4)


def test_settle_takes_units_from_stock_and_reserved_together():
    levels = StockLevels(10, 3).settle(2)
    assert levels == StockLevels(8, 1)
    assert levels.available == 7


def test_settle_of_more_than_reserved_is_refused():
    with pytest.raises(ValueError):
        StockLevels(10, 3).settle(4)


def test_set_stock_replaces_stock_and_keeps_reserved():
    assert StockLevels(10, 3).set_stock(3) == StockLevels(3, 3)


def test_set_stock_below_reserved_is_refused():
    with pytest.raises(StockBelowReserved):
        StockLevels(10, 3).set_stock(2)


@pytest.mark.parametrize("stock, reserved", [(-1, 0), (0, -1), (2, 3)])
def test_inconsistent_stock_levels_cannot_exist(stock, reserved):
    with pytest.raises(ValueError):
        StockLevels(stock, reserved)


_operation = st.tuples(
    st.sampled_from(["purchase", "hold", "release", "settle", "set_stock"]), st.integers(min_value=0, max_value=30)
)


@given(stock=st.integers(0, 50), ops=st.lists(_operation, max_size=40))
def test_any_sequence_of_operations_keeps_reserved_between_zero_and_stock(stock, ops):
    levels = StockLevels(stock, 0)
    for verb, n in ops:
        before = levels
        try:
            levels = getattr(levels, verb)(n)
        except OutOfStock:
            assert verb in ("purchase", "hold") and n > before.available
            continue
        except StockBelowReserved:
            assert verb == "set_stock" and n < before.reserved
            continue
        except ValueError:
            assert verb in ("release", "settle") and n > before.reserved
            continue
        assert 0 <= levels.reserved <= levels.stock
        assert levels.available == levels.stock - levels.reserved >= 0
        expected = {
            "purchase": (before.stock - n, before.reserved),
            "hold": (before.stock, before.reserved + n),
            "release": (before.stock, before.reserved - n),
            "settle": (before.stock - n, before.reserved - n),
            "set_stock": (n, before.reserved),
        }[verb]
        assert (levels.stock, levels.reserved) == expected


# Hold


def _hold(status=HoldStatus.ACTIVE, expires_in=60):
    return Hold(1, 1, 2, status, NOW + timedelta(seconds=expires_in), None, NOW, NOW)


def test_active_hold_before_its_ttl_is_active_and_usable():
    hold = _hold()
    assert hold.status_at(NOW) is HoldStatus.ACTIVE
    assert hold.refusal(NOW) is None
    ensure_hold_usable(hold, NOW)


def test_active_hold_at_its_expiry_instant_is_expired_even_unswept():
    hold = _hold(expires_in=60)
    assert hold.status_at(NOW + timedelta(seconds=60)) is HoldStatus.EXPIRED
    assert isinstance(hold.refusal(NOW + timedelta(seconds=60)), HoldExpired)


def test_used_hold_stays_used_after_its_ttl():
    hold = _hold(HoldStatus.USED)
    assert hold.status_at(NOW + timedelta(hours=1)) is HoldStatus.USED
    with pytest.raises(HoldAlreadyUsed):
        ensure_hold_usable(hold, NOW + timedelta(hours=1))


@pytest.mark.parametrize(
    "status, error",
    [
        (HoldStatus.USED, HoldAlreadyUsed),
        (HoldStatus.RELEASED, HoldReleased),
        (HoldStatus.EXPIRED, HoldExpired),
    ],
)
def test_ended_hold_refuses_with_the_error_that_names_its_status(status, error):
    assert isinstance(_hold(status).refusal(NOW), error)
    with pytest.raises(error):
        ensure_hold_usable(_hold(status), NOW)


# Payment decisions: contract section 5, row by row

S, F = PaymentResult.SUCCESS, PaymentResult.FAILURE
APPLIED, DEFERRED, IGNORED = WebhookOutcome.APPLIED, WebhookOutcome.DEFERRED, WebhookOutcome.IGNORED


@pytest.mark.parametrize(
    "order_status, result, decision",
    [
        (OrderStatus.PENDING, S, PaymentDecision(APPLIED, OrderStatus.PAID)),
        (OrderStatus.PENDING, F, PaymentDecision(APPLIED, OrderStatus.CANCELLED)),
        (None, S, PaymentDecision(DEFERRED, None)),
        (None, F, PaymentDecision(DEFERRED, None)),
        (OrderStatus.PAID, S, PaymentDecision(IGNORED, None)),
        (OrderStatus.PAID, F, PaymentDecision(IGNORED, None)),
        (OrderStatus.PROCESSED, S, PaymentDecision(IGNORED, None)),
        (OrderStatus.PROCESSED, F, PaymentDecision(IGNORED, None)),
        (OrderStatus.CANCELLED, S, PaymentDecision(IGNORED, None, refund_required=True)),
        (OrderStatus.CANCELLED, F, PaymentDecision(IGNORED, None)),
        (OrderStatus.CREATED, S, PaymentDecision(IGNORED, None)),
        (OrderStatus.CREATED, F, PaymentDecision(IGNORED, None)),
    ],
)
def test_payment_decision_follows_the_webhook_table(order_status, result, decision):
    assert decide_payment(order_status, result) == decision


# money


@pytest.mark.parametrize(
    "value, expected",
    [
        ("1.005", "1.01"),
        ("2.675", "2.68"),
        ("1.004", "1.00"),
        ("-1.005", "-1.01"),
        (3, "3.00"),
        (Decimal("15000000"), "15000000.00"),
        ("0.1", "0.10"),
    ],
)
def test_money_has_two_places_rounded_half_up(value, expected):
    result = money(value)
    assert result == Decimal(expected)
    assert str(result) == expected


def test_money_refuses_floats_rather_than_rounding_their_binary_error():
    # money(1.005) would be 1.00 (the float is 1.00499...), unlike money("1.005") == 1.01.
    with pytest.raises(TypeError):
        money(1.005)
