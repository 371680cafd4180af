"""Prometheus metrics: request counts and latency, purchases, holds and webhooks by outcome."""

from __future__ import annotations

import os
import time

import falcon
from prometheus_client import (
    CONTENT_TYPE_LATEST,
    PROCESS_COLLECTOR,
    CollectorRegistry,
    Counter,
    Histogram,
    ProcessCollector,
    disable_created_metrics,
    generate_latest,
)

# A `_created` series per counter and histogram doubles what is scraped and says only when the
# process started, which process_start_time_seconds says once.
disable_created_metrics()


class Metrics:
    """One registry per app; multi-process gunicorn aggregates through PROMETHEUS_MULTIPROC_DIR.

    Process metrics (CPU, memory, open files, start time) are those of the process that answers.
    """

    def __init__(self) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.requests = Counter("stockade_http_requests_total", "HTTP requests", ["method", "route", "status"],
                                registry=self.registry)
        self.latency = Histogram(
            "stockade_http_request_duration_seconds", "HTTP request latency", ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.purchases = Counter("stockade_purchases_total", "Purchases by outcome", ["outcome"], registry=self.registry)
        self.holds = Counter("stockade_holds_total", "Holds by outcome", ["outcome"], registry=self.registry)
        self.webhooks = Counter("stockade_webhooks_total", "Payment webhooks by outcome", ["outcome"],
                                registry=self.registry)

    def render(self) -> bytes:
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(PROCESS_COLLECTOR)
            return generate_latest(registry)
        return generate_latest(self.registry)


class MetricsMiddleware:
    """Counts and times every request, labelled by route template (bounded cardinality)."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        req.context.started = time.perf_counter()

    def process_response(self, req, resp, resource, req_succeeded) -> None:
        route = req.uri_template or "unmatched"
        started = getattr(req.context, "started", None)
        if started is not None:
            self.metrics.latency.labels(req.method, route).observe(time.perf_counter() - started)
        self.metrics.requests.labels(req.method, route, str(resp.status).split()[0]).inc()


class MetricsResource:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req, resp) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.metrics.render()
