"""The embedded task runner: a thread pool for tasks and a sweeper thread, in the API process."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor

from stockade.application.ports import TaskMessage

log = logging.getLogger("stockade.tasks")

Handler = Callable[[TaskMessage], None]


class InProcessTaskRunner:
    """Runs published messages on worker threads; the outbox makes them survive a crash.

    `publish` only queues (never blocks a response). A failing task is logged; its
    outbox row stays uncompleted, so the relay in the sweeper runs it again later.
    """

    def __init__(self, threads: int = 8) -> None:
        self._handlers: dict[str, Handler] = {}
        self._pool = ThreadPoolExecutor(max_workers=threads, thread_name_prefix="stockade-task")
        self._closed = False

    def register(self, task: str, handler: Handler) -> None:
        self._handlers[task] = handler

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        if self._closed:
            return
        for message in messages:
            try:
                self._pool.submit(self._run, message)
            except RuntimeError:  # shutting down: the relay picks it up after restart
                return

    def _run(self, message: TaskMessage) -> None:
        handler = self._handlers.get(message.task)
        if handler is None:
            log.error("no handler for task %s", message.task)
            return
        try:
            handler(message)
        except Exception:
            log.exception("task %s %s failed; it will be retried from the outbox", message.task, message.payload)

    def close(self, wait: bool = True) -> None:
        self._closed = True
        self._pool.shutdown(wait=wait, cancel_futures=True)


class Sweeper:
    """Calls `sweep` every `interval` seconds on a daemon thread until stopped."""

    def __init__(self, sweep: Callable[[], object], interval: float) -> None:
        self._sweep = sweep
        self._interval = interval
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stockade-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sweep()
            except Exception:
                log.exception("sweep failed; trying again in %ss", self._interval)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
