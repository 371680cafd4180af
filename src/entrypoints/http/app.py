"""`create_app`: the Falcon application of the public API, given the Shop."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from stockade.application.facade import Shop
from stockade.domain.errors import DomainError
from stockade.entrypoints.http import schemas
from stockade.entrypoints.http.auth import AdminGuard, WebhookSignature
from stockade.entrypoints.http.buying import OrderActionResource, OrderResource, OrdersResource, TakeUnitsResource
from stockade.entrypoints.http.errors import handle_domain_error, handle_unexpected, serialize_http_error
from stockade.entrypoints.http.holds import HoldResource, HoldsResource
from stockade.entrypoints.http.metrics import Metrics, MetricsResource, RequestCounts
from stockade.entrypoints.http.observability import RequestMiddleware
from stockade.entrypoints.http.openapi import openapi_document
from stockade.entrypoints.http.operations import HealthResource, LogsResource, OpenApiResource, ReadyResource
from stockade.entrypoints.http.products import AdjustmentsResource, ProductResource, ProductsResource
from stockade.entrypoints.http.webhook import WebhookResource


def create_app(
    shop: Shop,
    *,
    admin_token: str | None = None,
    webhook_secret: str | None = None,
    readiness: Callable[[], dict[str, str | None]] | None = None,
    metrics: Metrics | None = None,
    cors_origins: tuple[str, ...] = (),
) -> falcon.App:
    """The public API on `shop`. `cors_origins`: the origins a browser may call it from (none: no
    CORS headers at all)."""
    metrics = metrics or Metrics(backlog=shop.backlog)
    # First in, last out: its log line and count have the final status.
    middleware: list[Any] = [RequestMiddleware(RequestCounts(metrics))]
    if cors_origins:
        middleware.append(
            falcon.CORSMiddleware(
                allow_origins=list(cors_origins), expose_headers=["ETag", "Idempotent-Replayed", "X-Request-ID"]
            )
        )
    app = falcon.App(middleware=middleware)
    app.req_options.strip_url_path_trailing_slash = False  # /api/products/1/ is not /api/products/1
    app.req_options.keep_blank_qs_values = True  # so that ?limit= is refused, not ignored
    app.set_error_serializer(serialize_http_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(DomainError, handle_domain_error)

    max_quantity = shop.deps.policy.max_quantity
    max_extend_seconds = int(shop.deps.policy.hold_ttl.total_seconds())
    buy = schemas.buy_request(max_quantity)
    guard = AdminGuard(admin_token)
    routes = {
        "/api/products": ProductsResource(shop.list_products, shop.create_product, guard),
        "/api/products/{product_id}": ProductResource(
            shop.get_product, shop.update_product, shop.delete_product, guard
        ),
        "/api/products/{product_id}/adjustments": AdjustmentsResource(
            shop.list_adjustments, shop.adjust_stock_once, guard
        ),
        "/api/orders/purchase": TakeUnitsResource(
            buy, lambda body, key: shop.purchase_once(body.purchase(), key), schemas.OrderEnvelope.of, metrics.purchases
        ),
        "/api/orders": OrdersResource(shop.order_from_hold_once, schemas.PendingOrderBody.of, shop.list_orders, guard),
        "/api/orders/{order_id}": OrderResource(shop.get_order),
        "/api/orders/{order_id}/cancel": OrderActionResource(shop.cancel_order, guard),
        "/api/orders/{order_id}/refund": OrderActionResource(shop.refund_order, guard),
        "/api/holds": HoldsResource(
            buy, lambda body, key: shop.hold_once(body.hold(), key), metrics.holds, shop.list_holds, guard
        ),
        "/api/holds/{hold_id}": HoldResource(
            shop.get_hold, shop.extend_hold, shop.release_hold, schemas.extend_hold_request(max_extend_seconds)
        ),
        "/api/payments/webhook": WebhookResource(
            shop.payment, WebhookSignature(webhook_secret, shop.deps.clock.now), metrics.webhooks
        ),
        "/api/logs": LogsResource(shop.logs, guard),
        "/api/openapi.json": OpenApiResource(openapi_document(max_quantity, max_extend_seconds)),
        "/healthz": HealthResource(),
        "/readyz": ReadyResource(readiness or (lambda: {})),
        "/metrics": MetricsResource(metrics),
    }
    for template, resource in routes.items():
        if hasattr(resource, "on_get"):
            resource.on_head = resource.on_get  # type: ignore[attr-defined]  # Falcon sends HEAD no body
        app.add_route(template, resource)
    return app
