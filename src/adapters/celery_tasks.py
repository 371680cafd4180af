"""Celery: the app factory and config, and the TaskPublisher that sends outbox messages."""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Sequence

from celery import Celery

from stockade.application.ports import TaskMessage

log = logging.getLogger("stockade.tasks")

QUEUE = "stockade"


class CeleryConfig:
    """At-least-once delivery: ack after the task ran, redeliver if the worker died."""

    task_acks_late = True
    task_reject_on_worker_lost = True
    worker_prefetch_multiplier = 1
    task_ignore_result = True
    task_serializer = "json"
    accept_content = ["json"]
    task_default_queue = QUEUE
    broker_connection_retry_on_startup = True
    broker_connection_timeout = 2
    worker_hijack_root_logger = False
    worker_cancel_long_running_tasks_on_connection_loss = False

    def __init__(self, broker_url: str, visibility_timeout: int) -> None:
        self.broker_url = broker_url
        self.broker_transport_options = {
            # Longer than the longest task, or Redis hands a running task to a second worker.
            "visibility_timeout": visibility_timeout,
            "socket_timeout": 2,
            "socket_connect_timeout": 2,
            "max_retries": 1,
        }


def make_celery(broker_url: str, visibility_timeout: int = 3600) -> Celery:
    # Not the current app: a publisher built inside a worker must not shadow the worker's
    # own app, whose registry holds the tasks.
    app = Celery("stockade", set_as_current=False)
    app.config_from_object(CeleryConfig(broker_url, visibility_timeout))
    return app


class CeleryTaskPublisher:
    """Sends messages on a background thread, so a dead broker never delays a response.

    A message that cannot be sent stays uncompleted in the outbox; the relay sends it
    again once the broker answers. The queue is bounded: under a long outage the
    relay, not memory, carries the backlog.
    """

    def __init__(self, app: Celery, max_pending: int = 10_000) -> None:
        self.app = app
        self._pending: queue.Queue[TaskMessage | None] = queue.Queue(max_pending)
        self._thread = threading.Thread(target=self._run, name="stockade-publisher", daemon=True)
        self._thread.start()

    @classmethod
    def from_url(cls, broker_url: str, visibility_timeout: int = 3600) -> CeleryTaskPublisher:
        return cls(make_celery(broker_url, visibility_timeout))

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        for message in messages:
            try:
                self._pending.put_nowait(message)
            except queue.Full:
                log.warning("publish queue full; outbox message %s waits for the relay", message.id)

    def send_now(self, message: TaskMessage) -> None:
        self.app.send_task(
            message.task,
            kwargs={**message.payload, "message_id": message.id},
            queue=QUEUE,
            retry=False,
        )

    def _run(self) -> None:
        while True:
            message = self._pending.get()
            if message is None:
                return
            try:
                self.send_now(message)
            except Exception as exc:  # broker down: the relay retries from the outbox
                log.warning("could not publish %s #%s (%s); the outbox relay will retry", message.task, message.id, exc)

    def ping(self) -> str | None:
        try:
            with self.app.connection_for_write() as conn:
                conn.ensure_connection(max_retries=1, timeout=1)
            return None
        except Exception as exc:
            return type(exc).__name__

    def close(self) -> None:
        try:
            self._pending.put_nowait(None)
        except queue.Full:
            pass
        self._thread.join(timeout=2)
