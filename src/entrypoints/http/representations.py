"""JSON shapes of the public API (contract section 4); money as two-place strings."""

from __future__ import annotations

from datetime import datetime
from decimal import Decimal
from typing import Any

from stockade.application.commands import HoldView, OrderView, PendingOrder, WebhookResult
from stockade.domain.model import Hold, LoggedEvent, Product


def ts(moment: datetime | None) -> str | None:
    return None if moment is None else moment.strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def amount(value: Decimal) -> str:
    return f"{value:.2f}"


def product(p: Product) -> dict[str, Any]:
    return {
        "id": p.id, "name": p.name, "price": amount(p.price), "stock": p.stock, "reserved": p.reserved,
        "available": p.available, "created_at": ts(p.created_at), "updated_at": ts(p.updated_at),
    }


def order(view: OrderView) -> dict[str, Any]:
    o, p = view.order, view.product
    return {
        "id": o.id, "product_id": o.product_id, "hold_id": o.hold_id, "quantity": o.quantity,
        "total_price": amount(o.total_price), "status": o.status.value,
        "created_at": ts(o.created_at), "updated_at": ts(o.updated_at),
        "product": {"id": p.id, "name": p.name, "price": amount(p.price), "stock": p.stock},
    }


def new_hold(h: Hold) -> dict[str, Any]:
    return {"hold_id": h.id, "expires_at": ts(h.expires_at), "product_id": h.product_id,
            "quantity": h.quantity, "status": h.status.value}


def hold(view: HoldView) -> dict[str, Any]:
    h = view.hold
    return {"hold_id": h.id, "product_id": h.product_id, "quantity": h.quantity, "status": view.status_now,
            "expires_at": ts(h.expires_at), "order_id": h.order_id}


def pending_order(result: PendingOrder) -> dict[str, Any]:
    o = result.order
    return {"order_id": o.id, "status": o.status.value, "total_price": amount(o.total_price),
            "hold_id": o.hold_id, "product_id": o.product_id, "quantity": o.quantity}


def webhook(result: WebhookResult) -> dict[str, Any]:
    return {"order_id": result.order_id, "status": result.status, "idempotency_key": result.idempotency_key,
            "outcome": result.outcome.value}


def logged(event: LoggedEvent) -> dict[str, Any]:
    return {"id": event.id, "event": event.event, "data": event.data, "created_at": ts(event.created_at)}
