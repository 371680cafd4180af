"""Direct purchase: units leave stock at once; the order is `created` and then processed."""

from __future__ import annotations

from datetime import datetime

from stockade.application.claim import BeforeCommit, claim_units
from stockade.application.commands import OrderView, Purchase
from stockade.application.ports import UnitOfWork
from stockade.application.services import PROCESS_ORDER, Deps
from stockade.domain.model import Order, OrderStatus, money


def purchase(deps: Deps, cmd: Purchase, before_commit: BeforeCommit | None = None) -> OrderView:
    """Sell `quantity` units of a product. Raises ProductNotFound, OutOfStock."""

    def write(uow: UnitOfWork, now: datetime):
        # Read after the conditional UPDATE, in its transaction, with the row locked by it:
        # the price charged and the stock shown are exactly those of this sale.
        product = uow.products.get(cmd.product_id)
        assert product is not None, "take() succeeded, so the product is live"
        total = money(product.price * cmd.quantity)
        order_id = uow.orders.add(cmd.product_id, cmd.quantity, total, OrderStatus.CREATED, now)
        uow.outbox.add(PROCESS_ORDER, {"order_id": order_id}, now, now + deps.policy.outbox_retry)
        uow.events.record(
            "purchase_created",
            {"order_id": order_id, "product_id": cmd.product_id, "quantity": cmd.quantity, "total_price": str(total)},
            now,
        )
        order = Order(order_id, cmd.product_id, None, cmd.quantity, total, OrderStatus.CREATED, None, now, now)

        return lambda uow: OrderView(order, product)

    return claim_units(
        deps,
        cmd.product_id,
        cmd.quantity,
        lambda uow, now: uow.products.take(cmd.product_id, cmd.quantity, now),
        write,
        before_commit,
    )
