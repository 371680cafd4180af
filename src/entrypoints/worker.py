"""The Celery worker and beat: tasks are a few lines that call a use case."""

from __future__ import annotations

import logging
import os
from typing import TYPE_CHECKING

from celery import Celery
from celery.signals import worker_process_shutdown

from stockade.adapters.celery_tasks import QUEUE, make_celery
from stockade.application.background import purge_idempotency_keys as purge_keys
from stockade.application.ports import TransientStorageError
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER
from stockade.entrypoints.settings import Settings

if TYPE_CHECKING:
    from stockade.entrypoints.bootstrap import Services

log = logging.getLogger("stockade.worker")


class _ServicesHolder:
    """Services of one worker app, built lazily in the process that runs its tasks.

    Keyed by pid: a forked child never reuses its parent's connections.
    """

    def __init__(self, settings: Settings) -> None:
        self.settings = settings
        self.services: Services | None = None
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
    if settings.broker_url is None:
        raise ValueError("the worker and beat need STOCKADE_BROKER_URL")
    app = make_celery(settings.broker_url, settings.task_visibility_timeout_seconds)
    holder = _ServicesHolder(settings)
    _holders.append(holder)
    app.stockade_services = holder
    # shared=False: each app runs its own closures, with its own settings.
    opts = {"autoretry_for": (TransientStorageError, OSError), "retry_backoff": True, "max_retries": 10,
            "shared": False}

    @app.task(name=PROCESS_ORDER, **opts)
    def process_order(order_id: int, message_id: int | None = None) -> None:
        holder.shop().process_order(int(order_id), message_id)

    @app.task(name=APPLY_DEFERRED_PAYMENTS, **opts)
    def apply_deferred_payments(order_id: int | None = None, message_id: int | None = None) -> None:
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


def run_worker(settings: Settings, concurrency: int) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    app = create_worker_app(settings)
    app.set_current()
    app.worker_main(["worker", "--loglevel=INFO", f"--concurrency={concurrency}", "-Q", QUEUE,
                     "--without-gossip", "--without-mingle"])
    return 0


def run_beat(settings: Settings, schedule: str) -> int:
    """Run beat; `schedule` is the file of each periodic task's last run, kept across restarts."""
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s [%(name)s] %(message)s")
    app = create_worker_app(settings)
    app.set_current()
    app.Beat(loglevel="INFO", schedule=schedule).run()
    return 0
