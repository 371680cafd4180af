"""The Celery worker (tasks are a few lines that call a use case) and beat (the periodic work)."""

from __future__ import annotations

import logging
import os
import signal
import threading
from typing import TYPE_CHECKING

from celery import Celery
from celery.signals import setup_logging, worker_shutdown

from stockade.adapters.celery_tasks import QUEUE, make_celery
from stockade.application.ports import TransientStorageError
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER
from stockade.application.tracing import serving
from stockade.entrypoints.logs import configure_logging
from stockade.entrypoints.settings import Settings

if TYPE_CHECKING:
    from stockade.entrypoints.bootstrap import Services

log = logging.getLogger("stockade.worker")


class _ServicesHolder:
    """Services of one worker app, built lazily in the process that runs its tasks, once
    for all its threads.

    Keyed by pid: a forked child never reuses its parent's connections.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
        self.pid: int | None = None
        self._building = threading.Lock()

    def shop(self):
        with self._building:
            if self.services is None or self.pid != os.getpid():
                from stockade.entrypoints.bootstrap import build_services

                self.services = build_services(self.settings, migrate_schema=False)
                self.pid = os.getpid()
            return self.services.shop

    def close(self) -> None:
        if self.services is not None and self.pid == os.getpid():
            self.services.close()
        self.services = None


_holders: list[_ServicesHolder] = []


def create_worker_app(settings: Settings) -> Celery:
    if settings.broker_url is None:
        raise ValueError("the worker and beat need STOCKADE_BROKER_URL")
    app = make_celery(settings.broker_url, settings.task_visibility_timeout_seconds)
    holder = _ServicesHolder(settings)
    _holders.append(holder)
    app.stockade_services = holder
    # shared=False: each app runs its own closures, with its own settings.
    opts = {
        "autoretry_for": (TransientStorageError, OSError),
        "retry_backoff": True,
        "max_retries": 10,
        "shared": False,
    }

    @app.task(name=PROCESS_ORDER, **opts)
    def process_order(order_id: int, message_id: int | None = None, request_id: str | None = None) -> None:
        with serving(request_id):
            holder.shop().process_order(int(order_id), message_id)

    @app.task(name=APPLY_DEFERRED_PAYMENTS, **opts)
    def apply_deferred_payments(
        order_id: int | None = None, message_id: int | None = None, request_id: str | None = None
    ) -> None:
        with serving(request_id):
            holder.shop().apply_deferred_payments(order_id, message_id)

    return app


@worker_shutdown.connect
def _close(**_kwargs) -> None:
    for holder in _holders:
        holder.close()


def _log_as_configured(settings: Settings) -> None:
    """Our log format for Celery's lines too: a setup_logging receiver keeps Celery from setting up its own."""
    configure_logging(settings.log_format)
    setup_logging.connect(lambda **_: configure_logging(settings.log_format), weak=False)


def run_worker(settings: Settings, concurrency: int) -> int:
    _log_as_configured(settings)
    app = create_worker_app(settings)
    app.set_current()
    # Threads: a task mostly waits, so one thread each. Prefetch (one per thread) bounds
    # what the worker holds; the rest stays in the broker.
    app.worker_main(
        [
            "worker",
            "--loglevel=INFO",
            "--pool=threads",
            f"--concurrency={concurrency}",
            "-Q",
            QUEUE,
            "--without-gossip",
            "--without-mingle",
        ]
    )
    return 0


def run_beat(services: Services, heartbeat: str | None = None) -> int:
    """Run the expiry sweeps, the outbox relay and the deferred payments in this process,
    each on its own thread, until SIGTERM or SIGINT; then close `services`. Not through the
    task queue: periodic work never waits behind orders. Any number of beats may run (the
    sweeps skip locked rows and every release is a conditional update).

    With `heartbeat`, that file is touched every sweep interval while every job runs on time
    (a healthcheck reads its age)."""
    stopping = threading.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        signal.signal(signum, lambda *_: stopping.set())
    interval = services.settings.sweep_interval_seconds
    with services:
        services.start_periodic()
        log.info("beat: expiry sweeps, outbox relay and deferred payments every %ss", interval)
        while not stopping.wait(interval):
            if heartbeat is not None and services.periodic is not None and services.periodic.on_time():
                with open(heartbeat, "a"):
                    os.utime(heartbeat)
    log.info("beat: stopped")
    return 0
