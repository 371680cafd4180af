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
            uow.products.s.conn.exec_driver_sql("SELECT * FROM no_such_table")
    assert len(invalidated) == 1


def test_a_failed_commit_discards_its_connection(engine, invalidated, monkeypatch):
    uow = SqlUnitOfWork(engine, _NoPublisher(), NullProductCache())
    with pytest.raises(sa.exc.DBAPIError):
        with uow:
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
