"""The composition root: the only module that knows every adapter."""

from __future__ import annotations

import logging
import os
from collections.abc import Callable
from datetime import timedelta

import attrs
import sqlalchemy as sa
from sqlalchemy.engine import make_url

from stockade.adapters.clock import SystemClock
from stockade.adapters.inprocess_tasks import InProcessTaskRunner, PeriodicJob, PeriodicRunner
from stockade.adapters.memory_cache import LocalVersions, NullProductCache, SharedFileVersions, VersionedProductCache
from stockade.adapters.sql import make_engine, make_read_engine, migrate
from stockade.adapters.sql.engine import storage_problem
from stockade.adapters.sql.group_commit import GroupCommit
from stockade.adapters.sql.migrate import RUN_MIGRATE, schema_is_current
from stockade.adapters.sql.uow import sql_uow_factory
from stockade.adapters.sql.writer_lock import WriterLock
from stockade.application.facade import Shop
from stockade.application.ports import Clock, ProductCache, TaskMessage, TaskPublisher
from stockade.application.services import APPLY_DEFERRED_PAYMENTS, PROCESS_ORDER, Deps, Policy
from stockade.application.tracing import serving
from stockade.entrypoints.settings import Settings

log = logging.getLogger("stockade")


def policy_from(settings: Settings) -> Policy:
    return Policy(
        hold_ttl=timedelta(seconds=settings.hold_ttl_seconds),
        hold_max_lifetime=timedelta(seconds=settings.hold_max_seconds),
        payment_ttl=timedelta(seconds=settings.order_payment_ttl_seconds),
        max_quantity=settings.max_quantity,
        processing_seconds=settings.order_processing_seconds,
        outbox_retry=timedelta(seconds=settings.outbox_retry_seconds),
    )


def task_handlers(shop: Shop) -> dict[str, Callable[[TaskMessage], object]]:
    """Task name -> what runs it, its log lines carrying the id of the request that caused it;
    shared by the in-process runner and the Celery worker."""
    runs: dict[str, Callable[[TaskMessage], object]] = {
        PROCESS_ORDER: lambda m: shop.process_order(int(m.payload["order_id"]), _published_id(m)),
        APPLY_DEFERRED_PAYMENTS: lambda m: shop.apply_deferred_payments(int(m.payload["order_id"]), _published_id(m)),
    }
    return {task: _serving_its_request(run) for task, run in runs.items()}


def _serving_its_request(run: Callable[[TaskMessage], object]) -> Callable[[TaskMessage], object]:
    def run_traced(message: TaskMessage) -> object:
        with serving(message.payload.get("request_id")):
            return run(message)

    return run_traced


def _published_id(message: TaskMessage) -> int:
    """The id of a message that was published: its Ref was resolved at commit, before."""
    assert isinstance(message.id, int), message
    return message.id


#: Idempotency-Key records are purged this often (they are kept 48 hours).
KEY_PURGE_SECONDS = 3600.0


def periodic_jobs(shop: Shop, sweep_interval: float) -> list[PeriodicJob]:
    """What `stockade beat` and the embedded server run periodically, each on its own thread."""
    return [
        PeriodicJob("release-expired", shop.release_expired, sweep_interval),
        PeriodicJob("deferred-payments", shop.apply_deferred_payments, sweep_interval),
        PeriodicJob("outbox-relay", shop.relay_outbox, sweep_interval),
        PeriodicJob("purge-keys", shop.purge_idempotency_keys, KEY_PURGE_SECONDS),
    ]


@attrs.define
class Services:
    """A ready Shop and what it holds open; `close()` releases all of it."""

    settings: Settings
    shop: Shop
    engine: sa.Engine
    cache: ProductCache
    publisher: TaskPublisher
    closers: list[Callable[[], None]] = attrs.field(factory=list)
    periodic: PeriodicRunner | None = None

    def start_background(self) -> None:
        """Embedded mode: sweep expiries, relay the outbox, apply deferred webhooks."""
        if self.settings.embedded:
            self.start_periodic()

    def start_periodic(self) -> None:
        """Run the periodic work in this process, once; `close()` stops it. A failure the
        database explains (it is down) is logged in one line, without a traceback."""
        if self.periodic is None:
            self.periodic = PeriodicRunner(
                periodic_jobs(self.shop, self.settings.sweep_interval_seconds), storage_problem
            )
            self.periodic.start()
            self.closers.insert(0, self.periodic.stop)

    def readiness(self) -> dict[str, str | None]:
        """Component -> None when it answers, else why not."""
        checks: dict[str, str | None] = {}
        try:
            with self.engine.connect() as conn:
                current = schema_is_current(conn)
            if current:
                with self.shop.deps.read() as uow:  # the read pool (its own engine on MySQL)
                    uow.products.get(0)
            checks["database"] = None if current else f"no schema or an older one: {RUN_MIGRATE}"
        except Exception as exc:  # any failure means not ready
            checks["database"] = f"did not answer ({type(exc).__name__})"
        for name, probe in (
            ("redis", getattr(self.cache, "ping", None)),
            ("broker", getattr(self.publisher, "ping", None)),
        ):
            if probe is not None:
                checks[name] = probe()
        return checks

    def close(self) -> None:
        for closer in self.closers:
            try:
                closer()
            except Exception:
                log.warning("error while closing", exc_info=True)
        self.closers.clear()

    def __enter__(self) -> Services:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _product_cache(settings: Settings, sqlite_path: str | None) -> tuple[ProductCache, Callable[[], None] | None]:
    """Snapshots in this process's memory, checked against versions that every writer bumps
    (and what closes them): Redis reaches every host; a file next to a SQLite database every
    process on this host (API workers, the CLI); an in-memory SQLite database has no other
    process. MySQL without Redis has writers on other hosts that nothing here would hear,
    so no cache."""
    if settings.redis_url:
        from stockade.adapters.redis_cache import RedisVersions

        versions = RedisVersions.from_url(settings.redis_url)
        return VersionedProductCache(versions), versions.close
    if settings.is_sqlite:
        if sqlite_path is None:
            return VersionedProductCache(LocalVersions()), None
        shared = SharedFileVersions(f"{sqlite_path}-versions")
        return VersionedProductCache(shared), shared.close
    return NullProductCache(), None


def _sqlite_file(url: str) -> str | None:
    """The absolute path of a SQLite database file, None for an in-memory database."""
    parsed = make_url(url)
    database = parsed.database or ""
    if database in ("", ":memory:") or parsed.query.get("mode") == "memory":
        return None
    if database.startswith("file:") and parsed.query.get("uri") in ("true", "1"):
        database = database[len("file:") :]
    return os.path.abspath(database)


def build_services(
    settings: Settings,
    *,
    clock: Clock | None = None,
    migrate_schema: bool | None = None,
    sleep: Callable[[float], None] | None = None,
    publisher: TaskPublisher | None = None,
) -> Services:
    """Wire adapters for `settings`. Nothing connects at import time; this connects now.

    SQLite (the embedded default) is migrated on start; other databases need
    `stockade migrate` (run once per deploy, not by every API process).
    """
    if migrate_schema if migrate_schema is not None else settings.is_sqlite:
        migrate(settings.database_url)
    engine = make_engine(settings.database_url)
    read_engine = make_read_engine(settings.database_url, engine)
    closers: list[Callable[[], None]] = []

    # The SQLite file's neighbours: the version file (cache) and the writer lock.
    sqlite_path = _sqlite_file(settings.database_url) if settings.is_sqlite else None
    cache, close_cache = _product_cache(settings, sqlite_path)

    runner: InProcessTaskRunner | None = None
    if publisher is not None:
        pass  # injected (tests, benchmarks)
    elif settings.broker_url:
        from stockade.adapters.celery_tasks import CeleryTaskPublisher

        publisher = CeleryTaskPublisher.from_url(settings.broker_url, settings.task_visibility_timeout_seconds)
        closers.append(publisher.close)
    else:
        runner = InProcessTaskRunner(settings.task_concurrency)
        publisher = runner

    deps_kwargs = {} if sleep is None else {"sleep": sleep}
    writer_lock = None
    if settings.is_sqlite:
        writer_lock = WriterLock(None if sqlite_path is None else f"{sqlite_path}-writers")
    group: GroupCommit = GroupCommit()
    deps = Deps(
        uow=sql_uow_factory(engine, publisher, cache, writer_lock=writer_lock, group=group),
        read=sql_uow_factory(read_engine, publisher, cache, read_only=True),
        clock=clock or SystemClock(),
        cache=cache,
        policy=policy_from(settings),
        **deps_kwargs,
    )
    shop = Shop(deps)
    if runner is not None:
        for task, handler in task_handlers(shop).items():
            runner.register(task, handler)
        closers.append(runner.close)
    closers.append(engine.dispose)
    if read_engine is not engine:
        closers.append(read_engine.dispose)
    if close_cache is not None:
        closers.append(close_cache)  # late: the runner's last tasks still invalidate
    if writer_lock is not None:
        closers.append(writer_lock.close)
    return Services(settings, shop, engine, cache, publisher, closers)
