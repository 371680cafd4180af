"""The SQL unit of work never returns a connection in an unknown state to the pool."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stockade.adapters.memory_cache import NullProductCache
from stockade.adapters.sql import make_engine, migrate
from stockade.adapters.sql.uow import SqlUnitOfWork


class _NoPublisher:
    def publish(self, messages) -> None:
        pass


@pytest.fixture
def engine(tmp_path):
    url = f"sqlite:///{tmp_path}/uow.db"
    migrate(url)
    engine = make_engine(url)
    yield engine
    engine.dispose()


@pytest.fixture
def invalidated(engine) -> list[object]:
    seen: list[object] = []
    sa.event.listen(engine, "invalidate", lambda dbapi_conn, record, exc: seen.append(exc))
    return seen


def test_a_unit_of_work_ending_on_a_driver_error_discards_its_connection(engine, invalidated):
    with pytest.raises(sa.exc.DBAPIError):
        with SqlUnitOfWork(engine, _NoPublisher(), NullProductCache()) as uow:
            uow.products.s.connection().exec_driver_sql("SELECT * FROM no_such_table")
    assert len(invalidated) == 1


def test_a_failed_commit_discards_its_connection(engine, invalidated, monkeypatch):
    uow = SqlUnitOfWork(engine, _NoPublisher(), NullProductCache())
    with pytest.raises(sa.exc.DBAPIError):
        with uow:
            uow.products.get(1)  # a statement reached the database: the connection is out

            def broken_commit():
                raise sa.exc.OperationalError("COMMIT", {}, Exception("server went away mid-commit"))

            monkeypatch.setattr(uow._session, "commit", broken_commit)
            uow.commit()
    assert len(invalidated) == 1


def test_a_unit_of_work_ending_normally_keeps_its_connection_pooled(engine, invalidated):
    for _ in range(3):
        with SqlUnitOfWork(engine, _NoPublisher(), NullProductCache()) as uow:
            uow.products.get(1)
            uow.commit()
    with SqlUnitOfWork(engine, _NoPublisher(), NullProductCache(), read_only=True) as uow:
        uow.products.get(1)
    assert invalidated == []


class _RecordingLock:
    """A WriterLock stand-in that records when it is taken and given back."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def acquire(self) -> None:
        self.log.append("lock")

    def release(self) -> None:
        self.log.append("unlock")


@pytest.fixture
def statements(engine) -> list[str]:
    seen: list[str] = []
    sa.event.listen(
        engine,
        "before_cursor_execute",
        lambda conn, cursor, sql, params, context, many: seen.append(sql.split()[0].upper()),
    )
    return seen


def test_on_sqlite_writes_wait_for_commit_and_the_connection_and_writer_lock_are_taken_only_then(engine, statements):
    """The use case builds its statements outside the write lock: the lock, BEGIN IMMEDIATE,
    the statements and the COMMIT come together, at commit."""
    from datetime import datetime, timezone
    from decimal import Decimal

    now = datetime.now(timezone.utc)
    with SqlUnitOfWork(engine, _NoPublisher(), NullProductCache()) as setup:
        product = setup.products.add("Lamp", Decimal("5.00"), 10, None, now)
        setup.commit()
    log: list[str] = []
    statements.clear()
    with SqlUnitOfWork(engine, _NoPublisher(), NullProductCache(), writer_lock=_RecordingLock(log)) as uow:
        stock_after = uow.products.take(product, 3, now)
        uow.events.record("purchase_created", {"product_id": product.id}, now)
        assert (log, statements) == ([], []), "nothing reaches SQLite before commit"
        assert engine.pool.checkedout() == 0, "nor is a connection taken from the pool"
        uow.commit()
        log.append("committed")
    assert log == ["lock", "unlock", "committed"]
    assert statements == ["BEGIN", "UPDATE", "INSERT"]  # BEGIN IMMEDIATE, then in the order issued
    assert stock_after.value == 7


def test_on_sqlite_a_lost_condition_at_commit_rolls_back_before_the_writer_lock_is_given_back(engine):
    from datetime import datetime, timezone
    from decimal import Decimal

    from stockade.application.ports import ConditionFailed
    from stockade.domain.model import Product

    now = datetime.now(timezone.utc)
    log: list[str] = []
    uow = SqlUnitOfWork(engine, _NoPublisher(), NullProductCache(), writer_lock=_RecordingLock(log))
    rollback = uow._rollback

    def recording_rollback() -> None:
        log.append("rollback")
        rollback()

    uow._rollback = recording_rollback  # type: ignore[method-assign]
    with pytest.raises(ConditionFailed):
        with uow:
            uow.events.record("before", {}, now)
            missing = Product(404, "Missing", Decimal("1.00"), 1, 0, 1, now, now)
            uow.products.take(missing, 1, now)  # no such product: the condition fails
            uow.commit()
    assert log == ["lock", "rollback", "unlock"]
    with SqlUnitOfWork(engine, _NoPublisher(), NullProductCache(), read_only=True) as check:
        assert check.events.list(10) == []  # the event held before it was rolled back


class _CheckedOutAtPublish:
    """A publisher that notes how many of the engine's connections are out when it publishes."""

    def __init__(self, engine) -> None:
        self.engine = engine
        self.seen: list[int] = []

    def publish(self, messages) -> None:
        self.seen.append(self.engine.pool.checkedout())


def test_a_committed_unit_of_work_gives_its_connection_back_before_publishing_and_invalidating(engine):
    """After the COMMIT come a cache bump (a Redis round trip) and the task publishing; a connection
    held through them kept other requests waiting for the pool in a flash sale."""
    from datetime import datetime, timezone
    from decimal import Decimal

    publisher = _CheckedOutAtPublish(engine)
    with SqlUnitOfWork(engine, publisher, NullProductCache()) as uow:
        uow.outbox.add("stockade.test", {"n": 1}, datetime.now(timezone.utc), datetime.now(timezone.utc))
        uow.products.add("Lamp", Decimal("5.00"), 10, None, datetime.now(timezone.utc))
        uow.commit()
    assert publisher.seen == [0]
