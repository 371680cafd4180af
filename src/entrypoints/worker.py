"""The Celery worker and beat: tasks are a few lines that call a use case."""

from __future__ import annotations

import logging
import os
import tempfile

from celery import Celery
from celery.signals import setup_logging, worker_process_shutdown

from stockade.adapters.celery_tasks import QUEUE, make_celery
from stockade.application.background import purge_idempotency_keys as purge_keys
from stockade.application.ports import TransientStorageError
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER
from stockade.application.tracing import serving
from stockade.entrypoints.logs import configure_logging
from stockade.entrypoints.settings import Settings

log = logging.getLogger("stockade.worker")


class _ServicesHolder:
    """Services of one worker app, built lazily in the process that runs its tasks.

    Keyed by pid: a forked child never reuses its parent's connections.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services = None
        self.pid: int | None = None

    def shop(self):
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
    app = make_celery(settings.broker_url, settings.task_visibility_timeout_seconds)
    holder = _ServicesHolder(settings)
    _holders.append(holder)
    app.stockade_services = holder
    # shared=False: each app runs its own closures, with its own settings.
    opts = {"autoretry_for": (TransientStorageError, OSError), "retry_backoff": True, "max_retries": 10,
            "shared": False}

    @app.task(name=PROCESS_ORDER, **opts)
    def process_order(order_id: int, message_id: int | None = None, request_id: str | None = None) -> None:
        with serving(request_id):
            holder.shop().process_order(int(order_id), message_id)

    @app.task(name=APPLY_DEFERRED_PAYMENTS, **opts)
    def apply_deferred_payments(order_id: int | None = None, message_id: int | None = None,
                                request_id: str | None = None) -> None:
        with serving(request_id):
            holder.shop().apply_deferred_payments(order_id, message_id)

    @app.task(name="stockade.release_expired", **opts)
    def release_expired() -> None:
        holder.shop().release_expired()

    @app.task(name="stockade.relay_outbox", **opts)
    def relay_outbox() -> None:
        holder.shop().relay_outbox()

    @app.task(name="stockade.sweep_deferred_payments", **opts)
    def sweep_deferred_payments() -> None:
        holder.shop().apply_deferred_payments()

    @app.task(name="stockade.purge_idempotency_keys", **opts)
    def purge_idempotency_keys() -> None:
        purge_keys(holder.shop().deps)

    interval = settings.sweep_interval_seconds
    # Each periodic run expires after one interval: a backlog never piles up while no worker runs.
    app.conf.beat_schedule = {
        name: {"task": f"stockade.{name}", "schedule": every, "options": {"expires": every, "queue": QUEUE}}
        for name, every in (("release_expired", interval), ("relay_outbox", interval),
                            ("sweep_deferred_payments", interval), ("purge_idempotency_keys", 3600.0))
    }
    return app


@worker_process_shutdown.connect
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
    app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={concurrency}", "-Q", QUEUE,
                     "--without-gossip", "--without-mingle"])
    return 0


def run_beat(settings: Settings) -> int:
    _log_as_configured(settings)
    app = create_worker_app(settings)
    app.set_current()
    schedule = os.path.join(tempfile.gettempdir(), f"stockade-beat-{os.getpid()}")
    app.Beat(loglevel="INFO", schedule=schedule).run()
    return 0
