"""`create_app`: the Falcon application of the public API, given ready use cases."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from stockade.application import background
from stockade.application.services import Deps
from stockade.domain.errors import DomainError
from stockade.entrypoints.http import resources as r
from stockade.entrypoints.http.errors import handle_domain_error, handle_unexpected, serialize_http_error
from stockade.entrypoints.http.metrics import Metrics, MetricsMiddleware, MetricsResource
from stockade.entrypoints.http.openapi import openapi_document


def create_app(
    deps: Deps,
    *,
    admin_token: str | None = None,
    webhook_secret: str | None = None,
    readiness: Callable[[], dict[str, str | None]] | None = None,
    metrics: Metrics | None = None,
) -> falcon.App:
    metrics = metrics or Metrics(backlog=lambda: background.backlog(deps))
    app = falcon.App(middleware=[MetricsMiddleware(metrics)])
    app.req_options.strip_url_path_trailing_slash = True
    app.set_error_serializer(serialize_http_error)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_error_handler(DomainError, handle_domain_error)

    guard = r.AdminGuard(admin_token)
    app.add_route("/api/products", r.ProductsResource(deps, guard))
    app.add_route("/api/products/{product_id}", r.ProductResource(deps, guard))
    app.add_route("/api/orders/purchase", r.PurchaseResource(deps, metrics))
    app.add_route("/api/orders", r.OrdersResource(deps, metrics))
    app.add_route("/api/orders/{order_id}", r.OrderResource(deps))
    app.add_route("/api/holds", r.HoldsResource(deps, metrics))
    app.add_route("/api/holds/{hold_id}", r.HoldResource(deps))
    app.add_route("/api/payments/webhook", r.WebhookResource(deps, webhook_secret, metrics))
    app.add_route("/api/logs", r.LogsResource(deps, guard))
    app.add_route("/api/openapi.json", r.OpenApiResource(openapi_document(deps.policy.max_quantity)))
    app.add_route("/healthz", r.HealthResource())
    app.add_route("/readyz", r.ReadyResource(readiness or (lambda: {})))
    app.add_route("/metrics", MetricsResource(metrics))
    return app
