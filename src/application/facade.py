"""`Shop`: every use case bound to its ports; the Python API of Stockade."""

from __future__ import annotations

from collections.abc import Callable
from decimal import Decimal
from typing import TypeVar

from stockade.application import audit, background, holds, orders, payments, products, purchase
from stockade.application.commands import (
    AdjustStock,
    Backlog,
    CheckReport,
    CreateProduct,
    ExtendHold,
    HoldSearch,
    HoldView,
    Limit,
    OrderFromHold,
    OrderSearch,
    OrderView,
    PaymentNotification,
    PendingOrder,
    PlaceHold,
    ProcessResult,
    Purchase,
    SweepReport,
    UpdateProduct,
    WebhookResult,
)
from stockade.application.idempotency import Answer, answer_once, request_key
from stockade.application.ports import RequestKey
from stockade.application.services import Deps
from stockade.domain.model import Hold, LoggedEvent, PaymentResult, Product, StockAdjustment, money

C = TypeVar("C")
T = TypeVar("T")


class Shop:
    """Use cases as methods. Domain errors (stockade.domain.errors) say why one refused."""

    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    # products
    def create_product(
        self, name: str, price: Decimal | int | str, stock: int, max_per_customer: int | None = None
    ) -> Product:
        return products.create_product(self.deps, CreateProduct(name, money(price), stock, max_per_customer))

    def get_product(self, product_id: int) -> Product:
        return products.get_product(self.deps, product_id)

    def list_products(self, limit: int = 50, after_id: int = 0) -> tuple[list[Product], int | None]:
        return products.list_products(self.deps, limit, after_id)

    def update_product(self, product_id: int, **changes) -> Product:
        """Any of name, price, stock, max_per_customer (None: no limit), if_match."""
        if "max_per_customer" in changes:
            changes["max_per_customer"] = Limit(changes["max_per_customer"])
        return products.update_product(self.deps, UpdateProduct(product_id, **changes))

    def delete_product(self, product_id: int) -> None:
        products.delete_product(self.deps, product_id)

    def adjust_stock(self, product_id: int, delta: int, reason: str) -> StockAdjustment:
        return products.adjust_stock(self.deps, AdjustStock(product_id, delta, reason))

    def adjust_stock_once(self, command: AdjustStock, idempotency_key: str | None) -> Answer[StockAdjustment]:
        return self._once("products.adjustments", command, idempotency_key, products.adjust_stock)

    def list_adjustments(
        self, product_id: int, limit: int = 50, before_id: int | None = None
    ) -> tuple[list[StockAdjustment], int | None]:
        return products.list_adjustments(self.deps, product_id, limit, before_id)

    # buying
    def purchase(self, product_id: int, quantity: int, customer_id: str | None = None) -> OrderView:
        return purchase.purchase(self.deps, Purchase(product_id, quantity, customer_id))

    def hold(self, product_id: int, quantity: int, customer_id: str | None = None) -> Hold:
        return holds.place_hold(self.deps, PlaceHold(product_id, quantity, customer_id))

    def get_hold(self, hold_id: int) -> HoldView:
        return holds.get_hold(self.deps, hold_id)

    def extend_hold(self, hold_id: int, extend_seconds: int) -> HoldView:
        return holds.extend_hold(self.deps, ExtendHold(hold_id, extend_seconds))

    def list_holds(self, **search) -> tuple[list[HoldView], int | None]:
        """A page of holds by id (HoldSearch: limit, after_id, status, product_id, customer_id)
        and the `after_id` of the next page, None at the end."""
        return holds.list_holds(self.deps, HoldSearch(**search))

    def release_hold(self, hold_id: int) -> None:
        holds.release_hold(self.deps, hold_id)

    def order_from_hold(self, hold_id: int) -> PendingOrder:
        return orders.order_from_hold(self.deps, OrderFromHold(hold_id))

    # buying, once per Idempotency-Key: a repeat gets the first answer (result or refusal) again
    def purchase_once(self, command: Purchase, idempotency_key: str | None) -> Answer[OrderView]:
        return self._once("orders.purchase", command, idempotency_key, purchase.purchase)

    def hold_once(self, command: PlaceHold, idempotency_key: str | None) -> Answer[Hold]:
        return self._once("holds", command, idempotency_key, holds.place_hold)

    def order_from_hold_once(self, command: OrderFromHold, idempotency_key: str | None) -> Answer[PendingOrder]:
        return self._once("orders", command, idempotency_key, orders.order_from_hold)

    def _once(
        self, scope: str, command: C, idempotency_key: str | None, use_case: Callable[[Deps, C, RequestKey | None], T]
    ) -> Answer[T]:
        key = None if idempotency_key is None else request_key(scope, idempotency_key, command)
        return answer_once(self.deps, key, lambda k: use_case(self.deps, command, k))

    def get_order(self, order_id: int) -> OrderView:
        return orders.get_order(self.deps, order_id)

    def cancel_order(self, order_id: int) -> OrderView:
        return orders.cancel_order(self.deps, order_id)

    def refund_order(self, order_id: int) -> OrderView:
        return orders.refund_order(self.deps, order_id)

    def list_orders(self, **search) -> tuple[list[OrderView], int | None]:
        """A page of orders by id (OrderSearch: limit, after_id, status, product_id, customer_id,
        refund_status) and the `after_id` of the next page, None at the end."""
        return orders.list_orders(self.deps, OrderSearch(**search))

    def payment(self, idempotency_key: str, order_id: int, status: str) -> WebhookResult:
        """Apply a payment notification (`success` or `failure`), once per key; a repeated
        key gets the first result again, with `replayed=True`."""
        return payments.handle_payment(self.deps, PaymentNotification(idempotency_key, order_id, PaymentResult(status)))

    # background and operations
    def process_order(self, order_id: int, message_id: int | None = None) -> ProcessResult:
        return orders.process_order(self.deps, order_id, message_id)

    def request_processing(self, order_id: int) -> None:
        orders.request_processing(self.deps, order_id)

    def apply_deferred_payments(self, order_id: int | None = None, message_id: int | None = None) -> int:
        return payments.apply_deferred_payments(self.deps, order_id, message_id)

    def sweep(self) -> SweepReport:
        return background.sweep(self.deps)

    def release_expired(self) -> tuple[int, int]:
        return background.release_expired(self.deps)

    def relay_outbox(self) -> int:
        return background.relay_outbox(self.deps)

    def purge_idempotency_keys(self) -> int:
        return background.purge_idempotency_keys(self.deps)

    def backlog(self) -> Backlog:
        return background.backlog(self.deps)

    def check(self) -> CheckReport:
        return audit.check_invariants(self.deps)

    def logs(self, limit: int = 100, event: str | None = None, before_id: int | None = None) -> list[LoggedEvent]:
        with self.deps.read() as uow:
            return uow.events.list(limit, event, before_id)
