"""Helpers for the distributed-mode tests: a broker db, a real Celery worker, polling, raw SQL."""

from __future__ import annotations

import inspect
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import closing, contextmanager
from pathlib import Path
from typing import Any

import pytest
import redis
import sqlalchemy as sa
from celery import _state as celery_state
from celery.contrib.testing.worker import start_worker

from stockade.adapters.celery_tasks import QUEUE
from stockade.adapters.clock import FixedClock
from stockade.application.services import PROCESS_ORDER
from stockade.entrypoints.bootstrap import Services, build_services
from stockade.entrypoints.settings import Settings

#: The longest any condition is waited for before the test fails.
DEADLINE_SECONDS = 30.0
POLL_SECONDS = 0.1

#: The `stockade` console script of the interpreter running the tests.
STOCKADE_BIN = str(Path(sys.executable).with_name("stockade"))
REPO_ROOT = Path(__file__).resolve().parents[2]

#: Ports nothing listens on: the broker or Redis is "down".
DEAD_REDIS_URL = "redis://127.0.0.1:1/0"


# ---------------------------------------------------------------- Redis dbs


def flushdb(url: str) -> None:
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.flushdb()
    finally:
        client.close()


def queue_length(broker_url: str) -> int:
    """Messages waiting in the stockade queue of a Redis broker."""
    client = redis.Redis.from_url(broker_url, socket_connect_timeout=3, socket_timeout=10)
    try:
        return int(client.llen(QUEUE))
    finally:
        client.close()


@pytest.fixture
def broker_url(redis_dbs) -> Iterator[str]:
    """A flushed Redis db for the Celery broker, apart from `redis_url` (the cache's db).

    Leased like `redis_url` (see RedisDbLeases in conftest.py): a fixed neighbour of the
    cache's db could be another concurrent run's cache or broker.
    """
    with redis_dbs.lease() as url:
        yield url


# ---------------------------------------------------------------- services


def settings_for(mysql_url: str, **overrides: Any) -> Settings:
    values: dict[str, Any] = {"database_url": mysql_url, "order_processing_seconds": 0}
    values.update(overrides)
    return Settings(**values)


@contextmanager
def open_services(mysql_url: str, *, clock: FixedClock | None = None, **overrides: Any) -> Iterator[Services]:
    """Services on an already migrated database, closed afterwards."""
    services = build_services(settings_for(mysql_url, **overrides), clock=clock, migrate_schema=False)
    try:
        yield services
    finally:
        services.close()


def forget_shared_worker_tasks() -> None:
    """Drop the task constructors every earlier `create_worker_app` left in Celery's global registry.

    `@app.task` defaults to shared=True: each task is also registered on every Celery app
    finalized later in the process, ahead of that app's own tasks. A second worker app
    would then run the first one's closures (the first test's settings and database).
    See test_each_worker_app_runs_its_own_tasks_and_settings, which keeps that visible.
    """
    for cons in list(celery_state._on_app_finalizers):
        fun = inspect.getclosurevars(cons).nonlocals.get("fun")
        if getattr(fun, "__qualname__", "").startswith("create_worker_app.<locals>."):
            celery_state._on_app_finalizers.discard(cons)


@contextmanager
def celery_worker(settings: Settings) -> Iterator[Any]:
    """A real Celery worker (solo pool, in a thread) consuming the stockade queue of settings.broker_url."""
    from stockade.entrypoints import worker as worker_module

    app = worker_module.create_worker_app(settings)
    try:
        with start_worker(
            app,
            pool="solo",
            concurrency=1,
            perform_ping_check=False,
            queues=[QUEUE],
            loglevel="WARNING",
            shutdown_timeout=30,
        ):
            yield app
    finally:
        app.stockade_services.close()


# ---------------------------------------------------------------- waiting


def wait_for(condition: Callable[[], Any], what: str, timeout: float = DEADLINE_SECONDS) -> Any:
    """Poll `condition` until it returns something truthy; fail naming `what` after `timeout`."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"after {timeout}s still waiting for: {what} (last value {value!r})")
        time.sleep(POLL_SECONDS)


# ---------------------------------------------------------------- raw SQL reads


def scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar()


def execute(engine: sa.Engine, sql: str, **params: Any) -> int:
    with engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount


def order_status(engine: sa.Engine, order_id: int) -> str | None:
    return scalar(engine, "SELECT status FROM orders WHERE id = :id", id=order_id)


def count_events(engine: sa.Engine, event: str, order_id: int | None = None) -> int:
    """How many `event` rows the event log holds (for one order when order_id is given)."""
    with engine.connect() as conn:
        data = conn.execute(sa.text("SELECT data FROM event_log WHERE event = :e"), {"e": event}).scalars().all()
    if order_id is None:
        return len(data)
    return sum(1 for raw in data if json.loads(raw).get("order_id") == order_id)


def outbox_rows(engine: sa.Engine, task: str, order_id: int) -> list[sa.Row]:
    """Outbox rows of `task` for one order (id, completed_at, attempts)."""
    with engine.connect() as conn:
        found = conn.execute(
            sa.text("SELECT id, payload, completed_at, attempts FROM outbox WHERE task = :t ORDER BY id"), {"t": task}
        ).all()
    return [r for r in found if json.loads(r.payload).get("order_id") == order_id]


def process_order_rows(engine: sa.Engine, order_id: int) -> list[sa.Row]:
    return outbox_rows(engine, PROCESS_ORDER, order_id)


# ---------------------------------------------------------------- subprocesses


def stockade_env(**variables: str) -> dict[str, str]:
    """The environment of a `stockade` subprocess: ours minus every STOCKADE_*, plus `variables`."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("STOCKADE_")}
    env.update(variables)
    env["PYTHONUNBUFFERED"] = "1"
    return env


def spawn_stockade(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`stockade ARGS` in its own session (so killpg reaches its children), output to log_path."""
    log = open(log_path, "wb")  # noqa: SIM115 - the child holds it; closed with the Popen below
    try:
        return subprocess.Popen(
            [STOCKADE_BIN, *args], env=env, cwd=REPO_ROOT, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
        )
    finally:
        log.close()


def read_log(path: Path) -> str:
    return path.read_text(errors="replace") if path.exists() else ""


#: Starting a worker process imports Celery and the app; slow on a loaded machine.
WORKER_START_SECONDS = 120.0


def spawn_ready_worker(args: list[str], env: dict[str, str], log_path: Path) -> subprocess.Popen:
    """`stockade worker ARGS`, once it says it is ready to take tasks."""
    proc = spawn_stockade(["worker", *args], env, log_path)
    wait_for(
        lambda: "ready" in read_log(log_path) or proc.poll() is not None,
        "the worker ready",
        timeout=WORKER_START_SECONDS,
    )
    assert proc.poll() is None, read_log(log_path)
    return proc


def stop_process_group(proc: subprocess.Popen, grace: float = 10.0) -> None:
    """SIGTERM the process group, then SIGKILL whatever is left after `grace` seconds."""
    if proc.poll() is None:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
        except ProcessLookupError:
            pass
        try:
            proc.wait(grace)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # children of a dead leader may outlive it
    except ProcessLookupError:
        pass
    try:
        proc.wait(grace)
    except subprocess.TimeoutExpired:
        pass


#: Starting gunicorn, migrating SQLite and importing the app, on a loaded machine.
SERVE_START_SECONDS = 60.0


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@contextmanager
def stockade_servers(tmp_path: Path) -> Iterator[Callable[..., tuple[subprocess.Popen, int, Path]]]:
    """Yields `start(env, workers, ready)`: runs `stockade serve --workers N` on a free port of
    127.0.0.1 and returns (process, port, log path) once `ready(process, port)` holds (an
    OSError from it means "not yet"). Every server started is stopped on exit."""
    procs: list[subprocess.Popen] = []

    def start(
        env: dict[str, str], workers: int, ready: Callable[[subprocess.Popen, int], bool]
    ) -> tuple[subprocess.Popen, int, Path]:
        port = free_port()
        log_path = tmp_path / f"serve-{len(procs)}.log"
        proc = spawn_stockade(
            ["serve", "--host", "127.0.0.1", "--port", str(port), "--workers", str(workers)], env, log_path
        )
        procs.append(proc)

        def up() -> bool:
            if proc.poll() is not None:
                log = log_path.read_text(errors="replace")
                raise AssertionError(f"stockade serve exited with {proc.returncode}:\n{log}")
            try:
                return ready(proc, port)
            except OSError:
                return False

        wait_for(up, f"stockade serve --workers {workers} answering", timeout=SERVE_START_SECONDS)
        return proc, port, log_path

    try:
        yield start
    finally:
        for proc in procs:
            stop_process_group(proc)
