"""Commands the use cases accept and the results they return: plain values."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal

import attrs

from stockade.domain.model import Hold, HoldStatus, Order, OrderStatus, PaymentResult, Product, WebhookOutcome


@attrs.frozen
class CreateProduct:
    name: str
    price: Decimal
    stock: int
    max_per_customer: int | None = None


@attrs.frozen
class Limit:
    """A new `max_per_customer`: an integer, or None for no limit."""

    per_customer: int | None


@attrs.frozen
class UpdateProduct:
    product_id: int
    name: str | None = None
    price: Decimal | None = None
    stock: int | None = None
    #: None: the limit stays as it is
    max_per_customer: Limit | None = None
    #: the versions an If-Match header named; None: apply unconditionally
    if_match: tuple[int, ...] | None = None


@attrs.frozen
class AdjustStock:
    product_id: int
    delta: int
    reason: str


@attrs.frozen
class Purchase:
    product_id: int
    quantity: int
    customer_id: str | None = None


@attrs.frozen
class PlaceHold:
    product_id: int
    quantity: int
    customer_id: str | None = None


@attrs.frozen
class ExtendHold:
    hold_id: int
    extend_seconds: int


@attrs.frozen
class OrderFromHold:
    hold_id: int


@attrs.frozen
class PaymentNotification:
    idempotency_key: str
    order_id: int
    result: PaymentResult

    @property
    def fingerprint(self) -> str:
        return f"{self.order_id}:{self.result.value}"


@attrs.frozen
class OrderView:
    """An order with its product as it is now (after the sale, for a purchase)."""

    order: Order
    product: Product


@attrs.frozen
class HoldView:
    hold: Hold
    status_now: str


@attrs.frozen
class OrderSearch:
    """Which orders to list (contract section 9): every filter given must match; by id."""

    limit: int = 50
    after_id: int = 0
    status: OrderStatus | None = attrs.field(default=None, converter=attrs.converters.optional(OrderStatus))
    product_id: int | None = None
    customer_id: str | None = None
    refund_status: str | None = None


@attrs.frozen
class HoldSearch:
    """Which holds to list: `status` as a client sees it now (an active hold past its TTL is
    expired, swept or not)."""

    limit: int = 50
    after_id: int = 0
    status: HoldStatus | None = attrs.field(default=None, converter=attrs.converters.optional(HoldStatus))
    product_id: int | None = None
    customer_id: str | None = None


@attrs.frozen
class PendingOrder:
    order: Order


@attrs.frozen
class WebhookResult:
    order_id: int
    idempotency_key: str
    outcome: WebhookOutcome
    status: str  # order status after the delivery, or "deferred"
    replayed: bool = False  # the first answer again, for a repeated key


@attrs.frozen
class ProcessResult:
    order_id: int
    processed: bool
    status: OrderStatus | None


@attrs.frozen
class SweepReport:
    holds_expired: int = 0
    orders_cancelled: int = 0
    payments_applied: int = 0
    messages_relayed: int = 0
    orders_requeued: int = 0
    keys_purged: int = 0


@attrs.frozen
class Backlog:
    """What background work has still to do, read at one moment (the /metrics gauges)."""

    outbox_pending: int
    #: age of the oldest uncompleted outbox message; 0 when there is none
    outbox_oldest_seconds: float
    active_holds: int
    pending_orders: int
    deferred_webhooks: int
    #: how long the oldest message no task has started yet has waited; 0 when there is none
    task_lag_seconds: float


@attrs.frozen
class Drift:
    product_id: int
    name: str
    stock: int
    reserved: int
    expected_reserved: int
    problems: tuple[str, ...]


@attrs.frozen
class CheckReport:
    products_checked: int
    drifts: tuple[Drift, ...]
    checked_at: datetime

    @property
    def ok(self) -> bool:
        return not self.drifts
