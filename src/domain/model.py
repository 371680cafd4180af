"""Entities and values of the stock model (contract section 1) and their state machines."""

from __future__ import annotations

import enum
import functools
from datetime import datetime, timedelta
from decimal import ROUND_HALF_UP, Decimal

import attrs

from stockade.domain.errors import (
    CustomerRequired,
    HoldAlreadyUsed,
    HoldExpired,
    HoldNotActive,
    HoldReleased,
    HoldTooOld,
    OrderAlreadyProcessed,
    OutOfStock,
    StockAdjustmentRefused,
    StockBelowReserved,
)

CENT = Decimal("0.01")
#: The most units a product's stock may be set or adjusted to (a signed 32-bit integer).
MAX_STOCK = 2**31 - 1


@functools.lru_cache(maxsize=1024)
def utc_timestamp(moment: datetime) -> str:
    """A UTC moment as every body shows it: ISO 8601 with microseconds and `Z`. (isoformat
    takes half strftime's time, and writes a year before 1000 with four digits too.) Kept
    for the moments rendered again and again: an answer shows its `now` twice and a
    product's created_at and updated_at, and isoformat costs thousands of instructions.
    Every moment here is UTC: one in another zone would share its UTC instant's entry."""
    return moment.isoformat(timespec="microseconds")[:26] + "Z"


def money(value: Decimal | int | str) -> Decimal:
    """Money as a two-place Decimal; floats are refused (their binary error would round wrongly)."""
    if isinstance(value, float):
        raise TypeError("money must not be a float; pass a Decimal, int or str")
    return Decimal(value).quantize(CENT, rounding=ROUND_HALF_UP)


class HoldStatus(str, enum.Enum):
    ACTIVE = "active"
    USED = "used"
    RELEASED = "released"
    EXPIRED = "expired"


class RefundStatus(str, enum.Enum):
    """Money taken for an order that was cancelled: an operator must give it back."""

    REQUIRED = "required"
    REFUNDED = "refunded"


class OrderStatus(str, enum.Enum):
    CREATED = "created"
    PENDING = "pending"
    PAID = "paid"
    PROCESSED = "processed"
    CANCELLED = "cancelled"


#: Every allowed order transition; anything else is refused by the conditional update.
ORDER_TRANSITIONS: dict[OrderStatus, frozenset[OrderStatus]] = {
    OrderStatus.CREATED: frozenset({OrderStatus.PROCESSED, OrderStatus.CANCELLED}),
    OrderStatus.PENDING: frozenset({OrderStatus.PAID, OrderStatus.CANCELLED}),
    OrderStatus.PAID: frozenset({OrderStatus.PROCESSED, OrderStatus.CANCELLED}),
    OrderStatus.PROCESSED: frozenset(),
    OrderStatus.CANCELLED: frozenset(),
}

#: Orders whose processing task must run (contract: after `created` or `paid`).
PROCESSABLE = frozenset({OrderStatus.CREATED, OrderStatus.PAID})


@attrs.frozen
class StockLevels:
    """The two integers of a product row and the only ways they may change.

    `available = stock - reserved` is never negative; every verb either returns the
    new levels or raises, so a caller can never produce an inconsistent row.
    The SQL adapter states each verb's guard as the WHERE clause of one UPDATE.
    """

    stock: int
    reserved: int

    def __attrs_post_init__(self) -> None:
        if self.stock < 0 or self.reserved < 0 or self.stock < self.reserved:
            raise ValueError(f"inconsistent stock levels {self.stock}/{self.reserved}")

    @property
    def available(self) -> int:
        return self.stock - self.reserved

    def purchase(self, quantity: int) -> StockLevels:
        if self.available < quantity:
            raise OutOfStock()
        return StockLevels(self.stock - quantity, self.reserved)

    def hold(self, quantity: int) -> StockLevels:
        if self.available < quantity:
            raise OutOfStock()
        return StockLevels(self.stock, self.reserved + quantity)

    def release(self, quantity: int) -> StockLevels:
        return StockLevels(self.stock, self.reserved - quantity)

    def settle(self, quantity: int) -> StockLevels:
        """A pending order was paid: its reserved units leave the shelf."""
        return StockLevels(self.stock - quantity, self.reserved - quantity)

    def set_stock(self, stock: int) -> StockLevels:
        if stock < self.reserved:
            raise StockBelowReserved()
        return StockLevels(stock, self.reserved)

    def adjust(self, delta: int) -> StockLevels:
        """stock += delta, unless `available` would go below 0 or `stock` above MAX_STOCK."""
        stock = self.stock + delta
        if stock < self.reserved:
            raise StockAdjustmentRefused(StockAdjustmentRefused.BELOW_RESERVED)
        if stock > MAX_STOCK:
            raise StockAdjustmentRefused(StockAdjustmentRefused.ABOVE_MAXIMUM)
        return StockLevels(stock, self.reserved)


@attrs.frozen
class Product:
    """A product row as read: name, price and its stock levels."""

    id: int
    name: str
    price: Decimal
    stock: int
    reserved: int
    version: int
    created_at: datetime
    updated_at: datetime
    deleted_at: datetime | None = None
    #: the most units one customer may claim (contract section 8); None: no limit
    max_per_customer: int | None = None

    @property
    def available(self) -> int:
        return self.stock - self.reserved

    @property
    def levels(self) -> StockLevels:
        return StockLevels(self.stock, self.reserved)

    @property
    def etag(self) -> str:
        """Changes with every write to the row, sales included (so If-Match protects them)."""
        return f'"{self.id}-{self.version}"'


@attrs.frozen
class ProductSnapshot:
    """A product as read, with the earliest moment one of its claims can lapse.

    `next_lapse_at` is the earliest expiry among the product's active holds and the earliest
    payment deadline among its pending orders (None: it has neither). Until then no unit of
    it can come back without a write to the product, so the snapshot can prove a refusal.
    """

    product: Product
    next_lapse_at: datetime | None

    def proves_sold_out(self, quantity: int, now: datetime) -> bool:
        """True when `quantity` cannot be had now: too few available, and no claim has lapsed
        that a buyer's reclaim would release first (contract: expired holds never refuse)."""
        return self.product.available < quantity and not self.lapse_due(now)

    def lapse_due(self, now: datetime) -> bool:
        """Whether a claim on the product may have lapsed by `now` (a hold expired, an order
        overdue) without a write to the product yet."""
        return self.next_lapse_at is not None and self.next_lapse_at <= now


@attrs.frozen
class Hold:
    """A short-lived reservation of units of one product."""

    id: int
    product_id: int
    quantity: int
    status: HoldStatus
    expires_at: datetime
    order_id: int | None
    created_at: datetime
    updated_at: datetime
    customer_id: str | None = None

    def is_expired(self, now: datetime) -> bool:
        return self.status is HoldStatus.ACTIVE and self.expires_at <= now

    def status_at(self, now: datetime) -> HoldStatus:
        """The status a client sees: an active hold past its TTL is expired, swept or not."""
        return HoldStatus.EXPIRED if self.is_expired(now) else self.status

    def extended_expiry(self, extend: timedelta, longest_life: timedelta, now: datetime) -> datetime:
        """When the hold expires once extended by `extend`: never past `created_at + longest_life`.
        Raises the refusal of a hold that is not active now (expired ones included, swept or
        not), and HoldTooOld when it already reaches that bound."""
        ensure_hold_usable(self, now)
        bound = self.created_at + longest_life
        if self.expires_at >= bound:
            raise HoldTooOld()
        return min(self.expires_at + extend, bound)

    def refusal(self, now: datetime) -> HoldNotActive | None:
        """Why this hold cannot become an order now, or None when it can."""
        status = self.status_at(now)
        if status is HoldStatus.ACTIVE:
            return None
        return {
            HoldStatus.USED: HoldAlreadyUsed(),
            HoldStatus.RELEASED: HoldReleased(),
            HoldStatus.EXPIRED: HoldExpired(),
        }[status]


@attrs.frozen
class Order:
    """An order: a direct purchase (`created`) or one made from a hold (`pending`)."""

    id: int
    product_id: int
    hold_id: int | None
    quantity: int
    total_price: Decimal
    status: OrderStatus
    payment_due_at: datetime | None
    created_at: datetime
    updated_at: datetime
    customer_id: str | None = None
    refund_status: RefundStatus | None = None

    def needs_cancelling(self) -> bool:
        """Whether an admin's cancel changes this order: False when it is cancelled already.
        Raises OrderAlreadyProcessed: its goods are gone."""
        if self.status is OrderStatus.PROCESSED:
            raise OrderAlreadyProcessed()
        return self.status is not OrderStatus.CANCELLED

    @property
    def holds_reserved_units(self) -> bool:
        """A pending order's units are reserved; a created or paid order's left `stock`."""
        return self.status is OrderStatus.PENDING


@attrs.frozen
class StockAdjustment:
    """One change of a product's stock by a delta, with why: the audit trail of stock."""

    id: int
    product_id: int
    delta: int
    reason: str
    stock_after: int
    created_at: datetime


#: The reason recorded for a `PUT` that sets stock to an absolute value.
SET_STOCK_REASON = "set"


#: The orders that count toward their customer's claim (contract section 8).
CLAIMING = frozenset({OrderStatus.CREATED, OrderStatus.PENDING, OrderStatus.PAID, OrderStatus.PROCESSED})


@attrs.frozen
class ClaimStanding:
    """A customer's claim on a product (units of their active holds and claiming orders) and
    the product's limit per customer (None: no limit)."""

    claimed: int
    max_per_customer: int | None

    def exceeded_by(self, quantity: int) -> bool:
        """Whether `quantity` more units would take the claim past the limit (the SQL claim
        statement states the same as its WHERE clause)."""
        return self.max_per_customer is not None and self.claimed + quantity > self.max_per_customer


def ensure_customer_named(product: Product, customer_id: str | None) -> None:
    """A product with a limit per customer is sold only to a named customer."""
    if product.max_per_customer is not None and customer_id is None:
        raise CustomerRequired()


class PaymentResult(str, enum.Enum):
    SUCCESS = "success"
    FAILURE = "failure"


class WebhookOutcome(str, enum.Enum):
    APPLIED = "applied"
    DEFERRED = "deferred"
    IGNORED = "ignored"


@attrs.frozen
class PaymentDecision:
    """What one payment notification does to one order (contract section 5)."""

    outcome: WebhookOutcome
    new_status: OrderStatus | None
    refund_required: bool = False


def decide_payment(order_status: OrderStatus | None, result: PaymentResult) -> PaymentDecision:
    """The webhook table as a pure function of the order's current status."""
    if order_status is None:
        return PaymentDecision(WebhookOutcome.DEFERRED, None)
    if order_status is OrderStatus.PENDING:
        target = OrderStatus.PAID if result is PaymentResult.SUCCESS else OrderStatus.CANCELLED
        return PaymentDecision(WebhookOutcome.APPLIED, target)
    refund = result is PaymentResult.SUCCESS and order_status is OrderStatus.CANCELLED
    return PaymentDecision(WebhookOutcome.IGNORED, None, refund_required=refund)


@attrs.frozen
class PaymentEvent:
    """One webhook delivery, keyed by its idempotency key; deferred until its order exists."""

    id: int
    idempotency_key: str
    order_id: int
    result: PaymentResult
    fingerprint: str
    #: what the delivery came to now (a deferred one is applied or ignored later)
    outcome: WebhookOutcome
    #: what its first response said: the outcome and the order status then ("deferred" if none)
    first_outcome: WebhookOutcome
    response_status: str
    created_at: datetime
    applied_at: datetime | None


@attrs.frozen
class LoggedEvent:
    """One business event as shown by /api/logs."""

    id: int
    event: str
    data: dict
    created_at: datetime


def ensure_hold_usable(hold: Hold, now: datetime) -> None:
    """Raise the domain error that says why this hold cannot become an order."""
    refusal = hold.refusal(now)
    if refusal is not None:
        raise refusal
