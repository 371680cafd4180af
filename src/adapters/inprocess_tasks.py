"""In-process background work: the embedded task runner, and the periodic runner of sweeps and the relay."""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections.abc import Callable, Sequence

import attrs

from stockade.application.ports import TaskMessage

log = logging.getLogger("stockade.tasks")

Handler = Callable[[TaskMessage], object]


class InProcessTaskRunner:
    """Runs published messages on up to `threads` worker threads; the outbox makes them
    survive a crash.

    A task mostly waits (order processing stands for calls to other systems), so the pool
    is large and each thread costs only its stack; threads are started as messages wait
    for one, never more than `threads`. `publish` only puts messages on a queue: it never
    waits, which matters under the gevent server, where the threads are greenlets and a
    pool's internal locks would make a request wait for them. A failing task is logged;
    its outbox row stays uncompleted, so the relay runs it again later.
    """

    def __init__(self, threads: int) -> None:
        self._handlers: dict[str, Handler] = {}
        self._queue: queue.SimpleQueue[TaskMessage | None] = queue.SimpleQueue()
        self._closed = False
        self._size = threads
        self._threads: list[threading.Thread] = []
        self._idle = 0
        self._lock = threading.Lock()  # held for a few instructions only, never while waiting

    def register(self, task: str, handler: Handler) -> None:
        self._handlers[task] = handler

    def publish(self, messages: Sequence[TaskMessage]) -> None:
        if self._closed:
            return  # shutting down: the relay picks them up after restart
        for message in messages:
            with self._lock:  # each message takes an idle thread, or a new one while the pool is not full
                if self._idle:
                    self._idle -= 1
                elif len(self._threads) < self._size:
                    thread = threading.Thread(
                        target=self._work, name=f"stockade-task-{len(self._threads)}", daemon=True
                    )
                    self._threads.append(thread)
                    thread.start()
            self._queue.put(message)

    def _work(self) -> None:
        message = self._queue.get()
        while message is not None:
            self._run(message)
            with self._lock:
                self._idle += 1
            message = self._queue.get()

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
        with self._lock:
            threads = list(self._threads)
        for _ in threads:
            self._queue.put(None)
        if wait:  # for tasks already running, within one shared bound (a task may be sleeping)
            deadline = time.monotonic() + 30
            for thread in threads:
                thread.join(timeout=max(0.0, deadline - time.monotonic()))


@attrs.frozen
class PeriodicJob:
    """Work to run every `interval` seconds."""

    name: str
    run: Callable[[], object]
    interval: float


class PeriodicRunner:
    """Runs each periodic job on a daemon thread of its own until stopped.

    A job starts every `interval` seconds, counted from the start of its previous run (at
    once again when a run took longer), so a slow job (a long relay after a broker outage)
    never delays another (the expiry sweep), and a run's own length does not add to the
    interval. Threads only wait: nothing here competes with the task runner's pool.
    `explain` gives one line for an expected failure (the database is down), logged without
    a traceback; anything it does not explain is logged with one.
    """

    def __init__(
        self, jobs: Sequence[PeriodicJob], explain: Callable[[Exception], str | None] = lambda exc: None
    ) -> None:
        self._explain = explain
        self._started: dict[str, float] = {}
        self._stop = threading.Event()
        self._jobs = list(jobs)
        self._threads = [
            threading.Thread(target=self._loop, args=(job,), name=f"stockade-{job.name}", daemon=True) for job in jobs
        ]

    def start(self) -> None:
        for thread in self._threads:
            thread.start()

    def _loop(self, job: PeriodicJob) -> None:
        while not self._stop.is_set():
            started = self._started[job.name] = time.monotonic()
            try:
                job.run()
            except Exception as exc:
                reason = self._explain(exc)
                if reason is None:
                    log.exception("%s failed; trying again in %ss", job.name, job.interval)
                else:
                    log.warning("%s failed: %s; trying again in %ss", job.name, reason, job.interval)
            self._stop.wait(max(0.0, started + job.interval - time.monotonic()))

    def on_time(self) -> bool:
        """Every job has started within twice its interval (plus a minute for a slow run)."""
        now = time.monotonic()
        return all(now - self._started.get(job.name, -1e18) <= 2 * job.interval + 60 for job in self._jobs)

    def stop(self) -> None:
        self._stop.set()
        for thread in self._threads:
            if thread.is_alive():
                thread.join(timeout=10)
