"""Prometheus metrics: request counts and latency, purchases, holds and webhooks by outcome,
and gauges of the background work's backlog."""

from __future__ import annotations

import atexit
import logging
import os
import threading
import time
from bisect import bisect_left
from collections.abc import Callable, Iterator

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
from prometheus_client.core import GaugeMetricFamily, Metric

from stockade.adapters.forks import call_in_forked_children
from stockade.adapters.off_the_loop import brief_lock
from stockade.application.commands import Backlog

# A `_created` series per counter and histogram doubles what is scraped and says only when the
# process started, which process_start_time_seconds says once.
disable_created_metrics()

log = logging.getLogger("stockade.metrics")

#: gauge name, help, the Backlog field it shows
BACKLOG_GAUGES = (
    ("stockade_outbox_pending_messages", "Outbox messages not completed yet", "outbox_pending"),
    (
        "stockade_outbox_oldest_pending_age_seconds",
        "Age of the oldest uncompleted outbox message (0: none)",
        "outbox_oldest_seconds",
    ),
    ("stockade_holds_active", "Holds in status active (expired ones not swept yet included)", "active_holds"),
    ("stockade_orders_pending", "Orders made from a hold and not paid yet", "pending_orders"),
    ("stockade_webhooks_deferred", "Webhook deliveries waiting for their order", "deferred_webhooks"),
    (
        "stockade_task_lag_seconds",
        "How long the oldest task no worker has started yet has waited (0: none)",
        "task_lag_seconds",
    ),
)


#: The longest an increment waits in its process's memory before its series shows it.
TALLY_SECONDS = 1.0


class Tally:
    """The increments of the request path, added up in this process's memory and written to
    their series together. With several workers every increment of a series is a lock, a
    pid check and a write to a mapped file, and each request made four: now a request adds
    to a sum in a dict, and one thread writes the sums every TALLY_SECONDS, one write per
    series. This process's /metrics writes them first, so it shows its own requests
    exactly; another worker's show up to TALLY_SECONDS late."""

    def __init__(self, seconds: float = TALLY_SECONDS) -> None:
        self._seconds = seconds
        self._sums: dict[Callable[[float], None], float] = {}
        self._lock = brief_lock()
        self._writer_started = False
        call_in_forked_children(self._forked)
        atexit.register(self.write)

    def count(self, inc: Callable[[float], None], amount: float = 1.0) -> None:
        if not self._writer_started:
            self._start_writer()
        with self._lock:
            self._sums[inc] = self._sums.get(inc, 0.0) + amount

    def observe(self, histogram: Histogram, seconds: float, *counters: Callable[[float], None]) -> None:
        """Histogram.observe, tallied: its sum, and the count of the first bucket that holds it;
        and one more on each of `counters` (a request's own counter), under the same lock."""
        total = histogram._sum.inc
        bucket = histogram._buckets[bisect_left(histogram._upper_bounds, seconds)].inc
        if not self._writer_started:
            self._start_writer()
        with self._lock:
            sums = self._sums
            sums[total] = sums.get(total, 0.0) + seconds
            sums[bucket] = sums.get(bucket, 0.0) + 1.0
            for inc in counters:
                sums[inc] = sums.get(inc, 0.0) + 1.0

    def _start_writer(self) -> None:
        self._writer_started = True  # before the start, which may let another caller run
        threading.Thread(target=self._write_every_interval, name="stockade-metrics-tally", daemon=True).start()

    def write(self) -> None:
        fresh: dict[Callable[[float], None], float] = {}  # made before the brief lock: no collection under it
        with self._lock:
            sums, self._sums = self._sums, fresh
        for inc, amount in sums.items():
            inc(amount)

    def _write_every_interval(self) -> None:
        while True:
            time.sleep(self._seconds)
            self.write()

    def _forked(self) -> None:
        """A forked child has no writer thread, and the sums it was born with are its parent's."""
        self._sums = {}
        self._lock = brief_lock()
        self._writer_started = False


#: The one tally of this process.
TALLY = Tally()


class BacklogCollector:
    """The backlog gauges, read from the database at each scrape: every process shows the
    same figures, whichever one runs the work."""

    def __init__(self, read: Callable[[], Backlog]) -> None:
        self.read = read

    def collect(self) -> Iterator[Metric]:
        try:
            backlog = self.read()
        except Exception as exc:  # noqa: BLE001 - the counters are still worth serving
            log.warning(
                "backlog gauges left out of /metrics: the database did not answer (%s); "
                "they come back once it does (see /readyz)",
                exc,
            )
            return
        for name, doc, field in BACKLOG_GAUGES:
            yield GaugeMetricFamily(name, doc, value=getattr(backlog, field))

    def describe(self) -> Iterator[Metric]:
        return iter(())  # read at scrape time only, never while registering


class Outcomes:
    """A counter by outcome (a bounded set of names), each outcome's series looked up once."""

    def __init__(self, counter: Counter) -> None:
        self.counter = counter
        self._series: dict[str, Callable[[float], None]] = {}

    def count(self, req: falcon.Request, outcome: str) -> None:
        """Counts `outcome` as this request's: RequestCounts tallies it with the request's own
        count and latency, in one go."""
        inc = self._series.get(outcome)
        if inc is None:
            inc = self._series[outcome] = self.counter.labels(outcome).inc
        req.context.outcome = inc


class Metrics:
    """One registry per app; multi-process gunicorn aggregates through PROMETHEUS_MULTIPROC_DIR.

    Process metrics (CPU, memory, open files, start time) are those of the process that answers.
    """

    def __init__(self, backlog: Callable[[], Backlog] | None = None) -> None:
        self.registry = CollectorRegistry(auto_describe=True)
        ProcessCollector(registry=self.registry)
        self.backlog = BacklogCollector(backlog) if backlog else None
        if self.backlog:
            self.registry.register(self.backlog)
        self.requests = Counter(
            "stockade_http_requests_total", "HTTP requests", ["method", "route", "status"], registry=self.registry
        )
        self.latency = Histogram(
            "stockade_http_request_duration_seconds",
            "HTTP request latency",
            ["method", "route"],
            buckets=(0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5),
            registry=self.registry,
        )
        self.purchases = Outcomes(
            Counter("stockade_purchases_total", "Purchases by outcome", ["outcome"], registry=self.registry)
        )
        self.holds = Outcomes(Counter("stockade_holds_total", "Holds by outcome", ["outcome"], registry=self.registry))
        self.webhooks = Outcomes(
            Counter("stockade_webhooks_total", "Payment webhooks by outcome", ["outcome"], registry=self.registry)
        )

    def render(self) -> bytes:
        TALLY.write()
        if os.environ.get("PROMETHEUS_MULTIPROC_DIR"):
            from prometheus_client import multiprocess

            registry = CollectorRegistry()
            multiprocess.MultiProcessCollector(registry)
            registry.register(PROCESS_COLLECTOR)
            if self.backlog:
                registry.register(self.backlog)
            return generate_latest(registry)
        return generate_latest(self.registry)


#: The methods a request is counted under by name; any other is counted as "other", so that a
#: client inventing methods cannot grow the series without bound.
COUNTED_METHODS = frozenset({"GET", "HEAD", "POST", "PUT", "PATCH", "DELETE", "OPTIONS"})


class RequestCounts:
    """Counts and times every request, labelled by route template (bounded cardinality).

    The labelled series of each (method, route, status) are looked up once and kept: a
    `labels()` call on every request cost as much as the rest of the counting."""

    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics
        self._series: dict[tuple[str, str, int], tuple[Histogram, Callable[[float], None]]] = {}

    def record(
        self, method: str, route: str, status: int, seconds: float | None, outcome: Callable[[float], None] | None
    ) -> None:
        """One request, its latency (None: refused before it was timed) and the outcome counter
        an endpoint chose for it (see Outcomes.count)."""
        key = (method, route, status)
        series = self._series.get(key)
        if series is None:
            series = self._series[key] = self._labelled(*key)
        latency, count_request = series
        if seconds is None:
            TALLY.count(count_request)
        elif outcome is None:
            TALLY.observe(latency, seconds, count_request)
        else:
            TALLY.observe(latency, seconds, count_request, outcome)

    def _labelled(self, method: str, route: str, status: int) -> tuple[Histogram, Callable[[float], None]]:
        method = method if method in COUNTED_METHODS else "other"
        return self.metrics.latency.labels(method, route), self.metrics.requests.labels(method, route, str(status)).inc


class MetricsResource:
    def __init__(self, metrics: Metrics) -> None:
        self.metrics = metrics

    def on_get(self, req, resp) -> None:
        resp.content_type = CONTENT_TYPE_LATEST
        resp.data = self.metrics.render()
