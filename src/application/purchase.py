"""Direct purchase: units leave stock at once; the order is `created` and then processed."""

from __future__ import annotations

from datetime import datetime

import attrs

from stockade.application.claim import claim_units
from stockade.application.commands import OrderView, Purchase
from stockade.application.ports import RequestKey, UnitOfWork
from stockade.application.records import encode_result
from stockade.application.services import PROCESS_ORDER, Deps
from stockade.domain.model import Order, OrderStatus, Product, money


def purchase(deps: Deps, cmd: Purchase, key: RequestKey | None = None) -> OrderView:
    """Sell `quantity` units of a product. Raises ProductNotFound, OutOfStock, CustomerRequired,
    LimitPerCustomerReached."""

    def write(uow: UnitOfWork, now: datetime, product: Product) -> OrderView:
        total = money(product.price * cmd.quantity)
        order_id = uow.orders.add(
            cmd.product_id, cmd.quantity, total, OrderStatus.CREATED, now, customer_id=cmd.customer_id
        )
        uow.events.record(
            "purchase_created",
            {"order_id": order_id, "product_id": cmd.product_id, "quantity": cmd.quantity, "total_price": str(total)},
            now,
        )
        uow.outbox.add(PROCESS_ORDER, {"order_id": order_id}, now, now + deps.policy.outbox_retry)
        # Last, so the row lock it takes is held for the least time. Its guard includes the
        # price and name: the order was charged what this read showed, and the answer names the
        # product as it did, or the sale does not happen.
        stock_after = uow.products.take(product, cmd.quantity, now)
        order = Order(
            order_id,  # type: ignore[arg-type]  # a Ref until commit
            cmd.product_id,
            None,
            cmd.quantity,
            total,
            OrderStatus.CREATED,
            None,
            now,
            now,
            cmd.customer_id,
        )
        # The answer shows the product as the sale left it: the price and name it checked,
        # the stock its own statement left.
        return OrderView(order, attrs.evolve(product, stock=stock_after))  # type: ignore[arg-type]

    return claim_units(deps, cmd.product_id, cmd.quantity, write, key, encode_result, cmd.customer_id)
