"""Falcon resources: body -> validated command -> use case -> JSON."""

from __future__ import annotations

import hashlib
import hmac
import json
import re
from collections.abc import Callable
from typing import Any

import falcon

from stockade.application import holds as hold_cases
from stockade.application import orders as order_cases
from stockade.application import payments as payment_cases
from stockade.application import products as product_cases
from stockade.application import purchase as purchase_cases
from stockade.application.commands import (
    CreateProduct,
    OrderFromHold,
    PaymentNotification,
    PlaceHold,
    Purchase,
    UpdateProduct,
)
from stockade.application.idempotency import Answer, answer_once, request_key
from stockade.application.ports import RequestKey
from stockade.application.services import Deps
from stockade.domain import errors as domain
from stockade.domain.model import PaymentResult, WebhookOutcome
from stockade.entrypoints.http import representations as rep
from stockade.entrypoints.http.metrics import Metrics
from stockade.entrypoints.http.validation import (
    _DIGITS,
    MAX_ID,
    MAX_STOCK,
    Fields,
    ValidationFailed,
    idempotency_key,
    json_object,
    parse_object,
    path_id,
    query_int,
    read_body,
)

_EVENT_NAME = re.compile(r"[a-z0-9_]{1,64}")


def _json(resp: falcon.Response, status: int, body: Any) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps(body)


def _unknown_reference(field: str) -> ValidationFailed:
    return ValidationFailed({field: [f"does not name an existing {field.removesuffix('_id')}"]})


class AdminGuard:
    """Bearer-token check for product writes and /api/logs, when a token is configured."""

    def __init__(self, token: str | None) -> None:
        self.token = token.encode() if token else None

    def __call__(self, req: falcon.Request) -> None:
        if self.token is None:
            return
        header = req.get_header("Authorization") or ""
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token):
            raise falcon.HTTPUnauthorized(description="A valid admin bearer token is required",
                                          challenges=["Bearer"])


class IdempotentPost:
    """Shared shape of the three POSTs that honour Idempotency-Key.

    First answers and replays are the same domain Answer, rendered by the same code.
    """

    scope = ""
    #: the body field whose id names the thing the use case looks up (unknown: 422)
    reference = ""

    def __init__(self, deps: Deps, metrics: Metrics) -> None:
        self.deps = deps
        self.metrics = metrics

    def use_case(self, command: Any, key: RequestKey | None) -> Any:
        raise NotImplementedError

    def render(self, result: Any) -> Any:
        raise NotImplementedError

    def answer(self, req: falcon.Request, resp: falcon.Response, command: Any) -> Answer:
        header = idempotency_key(req)
        key = None if header is None else request_key(self.scope, header, command)
        answer = answer_once(self.deps, key, lambda k: self.use_case(command, k))
        if answer.replayed:
            resp.set_header("Idempotent-Replayed", "true")
        if answer.refusal is not None:
            if isinstance(answer.refusal, (domain.ProductNotFound, domain.HoldNotFound)):
                raise _unknown_reference(self.reference)
            raise answer.refusal
        _json(resp, 201, self.render(answer.result))
        return answer


class _TakeUnitsResource(IdempotentPost):
    """POST {product_id, quantity}: the purchase and the hold share everything but the use case."""

    reference = "product_id"

    def counter(self):
        raise NotImplementedError

    def on_post(self, req, resp) -> None:
        fields = Fields(json_object(req))
        product_id = fields.integer("product_id", 1, MAX_ID)
        quantity = fields.integer("quantity", 1, self.deps.policy.max_quantity)
        fields.done()
        try:
            answer = self.answer(req, resp, self.command(product_id, quantity))
        except domain.OutOfStock:
            self.counter().labels("replayed" if resp.get_header("Idempotent-Replayed") else "out_of_stock").inc()
            raise
        except falcon.HTTPError as exc:
            self.counter().labels(f"http_{exc.status_code}").inc()
            raise
        # A replay is the first answer again: not a second sale or hold.
        self.counter().labels("replayed" if answer.replayed else "created").inc()


class PurchaseResource(_TakeUnitsResource):
    scope = "orders.purchase"
    command = Purchase

    def use_case(self, command: Purchase, key: RequestKey | None):
        return purchase_cases.purchase(self.deps, command, key)

    def render(self, view) -> Any:
        return {"data": rep.order(view)}

    def counter(self):
        return self.metrics.purchases


class HoldsResource(_TakeUnitsResource):
    scope = "holds"
    command = PlaceHold

    def use_case(self, command: PlaceHold, key: RequestKey | None):
        return hold_cases.place_hold(self.deps, command, key)

    def render(self, hold) -> Any:
        return rep.new_hold(hold)

    def counter(self):
        return self.metrics.holds


class OrdersResource(IdempotentPost):
    scope = "orders"
    reference = "hold_id"

    def use_case(self, command: OrderFromHold, key: RequestKey | None):
        return order_cases.order_from_hold(self.deps, command, key)

    def render(self, result) -> Any:
        return rep.pending_order(result)

    def on_post(self, req, resp) -> None:
        fields = Fields(json_object(req))
        hold_id = fields.integer("hold_id", 1, MAX_ID)
        fields.done()
        self.answer(req, resp, OrderFromHold(hold_id))


class OrderResource:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def on_get(self, req, resp, order_id: str) -> None:
        _json(resp, 200, {"data": rep.order(order_cases.get_order(self.deps, path_id(order_id)))})


class HoldResource:
    def __init__(self, deps: Deps) -> None:
        self.deps = deps

    def on_get(self, req, resp, hold_id: str) -> None:
        _json(resp, 200, rep.hold(hold_cases.get_hold(self.deps, path_id(hold_id))))

    def on_delete(self, req, resp, hold_id: str) -> None:
        hold_cases.release_hold(self.deps, path_id(hold_id))
        resp.status = 204


class ProductsResource:
    def __init__(self, deps: Deps, guard: AdminGuard) -> None:
        self.deps = deps
        self.guard = guard

    def on_get(self, req, resp) -> None:
        limit = query_int(req, "limit", 50, 1, 200)
        after_id = query_int(req, "after_id", 0, 0, MAX_ID)
        page, next_after = product_cases.list_products(self.deps, limit, after_id)
        _json(resp, 200, {"data": [rep.product(p) for p in page], "meta": {"next_after_id": next_after}})

    def on_post(self, req, resp) -> None:
        self.guard(req)
        fields = Fields(json_object(req))
        name = fields.text("name", 255)
        price = fields.price("price")
        stock = fields.integer("stock", 0, MAX_STOCK)
        fields.done()
        product = product_cases.create_product(self.deps, CreateProduct(name, price, stock))
        resp.set_header("ETag", product.etag)
        _json(resp, 201, {"data": rep.product(product)})


def _if_match(req: falcon.Request, product_id: int) -> tuple[int, ...] | None:
    """Versions named by If-Match (our ETags are "<id>-<version>"); None when absent or *."""
    header = req.get_header("If-Match")
    if header is None or header.strip() == "*":
        return None
    versions = []
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            continue  # If-Match uses strong comparison: a weak tag never matches
        ident, _, version = tag.strip('"').partition("-")
        if ident == str(product_id) and _DIGITS.fullmatch(version):
            versions.append(int(version))
    return tuple(versions)


class ProductResource:
    def __init__(self, deps: Deps, guard: AdminGuard) -> None:
        self.deps = deps
        self.guard = guard

    def on_get(self, req, resp, product_id: str) -> None:
        product = product_cases.get_product(self.deps, path_id(product_id))
        resp.set_header("ETag", product.etag)
        _json(resp, 200, {"data": rep.product(product)})

    def on_put(self, req, resp, product_id: str) -> None:
        self.guard(req)
        pid = path_id(product_id)
        fields = Fields(json_object(req))
        name = fields.text("name", 255, required=False)
        price = fields.price("price", required=False)
        stock = fields.integer("stock", 0, MAX_STOCK, required=False)
        if not fields.errors and name is None and price is None and stock is None:
            fields.fail("body", "must contain at least one of name, price, stock")
        fields.done()
        product = product_cases.update_product(
            self.deps, UpdateProduct(pid, name, price, stock, _if_match(req, pid))
        )
        resp.set_header("ETag", product.etag)
        _json(resp, 200, {"data": rep.product(product)})

    def on_delete(self, req, resp, product_id: str) -> None:
        self.guard(req)
        product_cases.delete_product(self.deps, path_id(product_id))
        resp.status = 204


class WebhookResource:
    """POST /api/payments/webhook: signature first, then the body, then exactly-once."""

    STATUSES = {"success": PaymentResult.SUCCESS, "failure": PaymentResult.FAILURE, "failed": PaymentResult.FAILURE}
    TOLERANCE_SECONDS = 300

    def __init__(self, deps: Deps, secret: str | None, metrics: Metrics) -> None:
        self.deps = deps
        self.secret = secret.encode() if secret else None
        self.metrics = metrics

    def verify(self, req: falcon.Request, raw: bytes) -> None:
        if self.secret is None:
            return
        header = req.get_header("Stockade-Signature") or ""
        parts: dict[str, list[str]] = {}
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            parts.setdefault(name, []).append(value)
        stamp = (parts.get("t") or [""])[0]
        if not _DIGITS.fullmatch(stamp) or len(stamp) > 12 or abs(self.deps.clock.now().timestamp() - int(stamp)) > self.TOLERANCE_SECONDS:
            raise falcon.HTTPUnauthorized(description="Missing, malformed or expired Stockade-Signature",
                                          challenges=["Stockade-Signature"])
        expected = hmac.new(self.secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not any(hmac.compare_digest(expected.encode(), given.encode("ascii", "replace"))
                   for given in parts.get("v1", [])):
            raise falcon.HTTPUnauthorized(description="Invalid Stockade-Signature", challenges=["Stockade-Signature"])

    def on_post(self, req, resp) -> None:
        raw = read_body(req)
        self.verify(req, raw)
        fields = Fields(parse_object(raw))
        key = fields.text("idempotency_key", 255)
        order_id = fields.integer("order_id", 1, MAX_ID)
        status = fields.data.get("status")
        if not isinstance(status, str) or status not in self.STATUSES:
            fields.fail("status", "must be one of success, failure")
        fields.done()
        result = payment_cases.handle_payment(self.deps, PaymentNotification(key, order_id, self.STATUSES[status]))
        if result.replayed:
            resp.set_header("Idempotent-Replayed", "true")
        self.metrics.webhooks.labels("replayed" if result.replayed else result.outcome.value).inc()
        _json(resp, 202 if result.outcome is WebhookOutcome.DEFERRED else 200, rep.webhook(result))


class LogsResource:
    def __init__(self, deps: Deps, guard: AdminGuard) -> None:
        self.deps = deps
        self.guard = guard

    def on_get(self, req, resp) -> None:
        self.guard(req)
        limit = query_int(req, "limit", 100, 1, 1000)
        before_id = query_int(req, "before_id", None, 1, MAX_ID)
        event = req.get_param("event")
        if event is not None and not 1 <= len(event) <= 64:
            raise ValidationFailed({"event": ["must be 1 to 64 characters"]})
        if event is not None and not _EVENT_NAME.fullmatch(event):
            events = []  # no event has such a name; a case-insensitive collation must not say otherwise
        else:
            with self.deps.read() as uow:
                events = uow.events.list(limit, event or None, before_id)
        next_before = events[-1].id if len(events) == limit else None
        _json(resp, 200, {"data": [rep.logged(e) for e in events], "meta": {"next_before_id": next_before}})


class HealthResource:
    def on_get(self, req, resp) -> None:
        _json(resp, 200, {"status": "ok"})


class ReadyResource:
    def __init__(self, readiness: Callable[[], dict[str, str | None]]) -> None:
        self.readiness = readiness

    def on_get(self, req, resp) -> None:
        checks = self.readiness()
        failed = [name for name, reason in checks.items() if reason is not None]
        shown = {name: reason or "ok" for name, reason in checks.items()}
        if failed:
            _json(resp, 503, {"message": "Not ready: " + "; ".join(f"{name}: {shown[name]}" for name in failed),
                              "checks": shown})
        else:
            _json(resp, 200, {"status": "ok", "checks": shown})


class OpenApiResource:
    def __init__(self, document: dict) -> None:
        self.body = json.dumps(document)

    def on_get(self, req, resp) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = self.body
