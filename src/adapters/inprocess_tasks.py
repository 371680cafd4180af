"""The embedded task runner: a thread pool for tasks and a sweeper thread, in the API process."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

from stockade.application.ports import TaskMessage

log = logging.getLogger("stockade.tasks")

Handler = Callable[[TaskMessage], object]


class InProcessTaskRunner:
    """Runs published messages on worker threads; the outbox makes them survive a crash.

    `publish` only puts messages on a queue: it never waits, which matters under the gevent
    server, where the threads are greenlets and a pool's internal locks would make a
    request wait for them. A failing task is logged; its outbox row stays uncompleted, so
    the relay in the sweeper runs it again later.
    """

    def __init__(self, threads: int = 8) -> None:
        self._handlers: dict[str, Handler] = {}
        self._queue: queue.SimpleQueue[TaskMessage | None] = queue.SimpleQueue()
        self._closed = False
        self._threads = [threading.Thread(target=self._work, name=f"stockade-task-{n}", daemon=True)
                         for n in range(threads)]
        for thread in self._threads:
            thread.start()

    def register(self, task: str, handler: Handler) -> None:
        self._handlers[task] = handler

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        if self._closed:
            return  # shutting down: the relay picks them up after restart
        for message in messages:
            self._queue.put(message)

    def _work(self) -> None:
        while (message := self._queue.get()) is not None:
            self._run(message)

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
        """Stop taking messages; queued ones are dropped (the outbox still has them)."""
        self._closed = True
        while True:
            try:
                self._queue.get_nowait()
            except queue.Empty:
                break
        for _ in self._threads:
            self._queue.put(None)
        if wait:  # for tasks already running, within one shared bound (a task may be sleeping)
            deadline = time.monotonic() + 30
            for thread in self._threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))


class Sweeper:
    """Calls `sweep` every `interval` seconds on a daemon thread until stopped.

    `explain` gives one line for an expected failure (the database is down), logged without
    a traceback; anything it does not explain is logged with one."""

    def __init__(self, sweep: Callable[[], object], interval: float,
                 explain: Callable[[Exception], str | None] = lambda exc: None) -> None:
        self._sweep = sweep
        self._interval = interval
        self._explain = explain
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._loop, name="stockade-sweeper", daemon=True)

    def start(self) -> None:
        self._thread.start()

    def _loop(self) -> None:
        while not self._stop.is_set():
            try:
                self._sweep()
            except Exception as exc:
                reason = self._explain(exc)
                if reason is None:
                    log.exception("sweep failed; trying again in %ss", self._interval)
                else:
                    log.warning("sweep failed: %s; trying again in %ss", reason, self._interval)
            self._stop.wait(self._interval)

    def stop(self) -> None:
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(timeout=10)
