"""The SQL unit of work: one connection, one transaction, every repository on it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stockade.adapters.sql.engine import is_sqlite, is_transient
from stockade.adapters.sql.repositories import (
    SqlEventLog,
    SqlHoldRepository,
    SqlIdempotencyRepository,
    SqlOrderRepository,
    SqlOutbox,
    SqlPaymentEventRepository,
    SqlProductRepository,
)
from stockade.adapters.sql.session import Session
from stockade.application.ports import ProductCache, TaskPublisher, TransientStorageError
from stockade.application.unit_of_work import AbstractUnitOfWork


class SqlUnitOfWork(AbstractUnitOfWork):
    """A transaction on `engine`; `read_only` ones never take SQLite's write lock."""

    def __init__(self, engine: Engine, publisher: TaskPublisher, cache: ProductCache, *, read_only: bool = False) -> None:
        super().__init__(publisher, cache)
        self.engine = engine
        self.read_only = read_only
        self._sqlite = is_sqlite(engine)
        self._conn: sa.Connection | None = None

    def _begin(self) -> None:
        conn = self.engine.connect()
        if self._sqlite:
            conn.info["stockade_begin"] = "BEGIN" if self.read_only else "BEGIN IMMEDIATE"
        self._conn = conn
        self._session = session = Session(conn, self.product_changed)
        self.products = SqlProductRepository(session)
        self.holds = SqlHoldRepository(session)
        self.orders = SqlOrderRepository(session)
        self.payments = SqlPaymentEventRepository(session)
        self.idempotency = SqlIdempotencyRepository(session)
        self.events = SqlEventLog(session)
        self.outbox = SqlOutbox(session, self.message_added)

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            if self._conn is not None:
                if isinstance(exc, sa.exc.DBAPIError) and not is_transient(exc):
                    # A driver error of unknown kind can leave the connection mid-protocol or
                    # inside a transaction; the pool does not reset connections on return
                    # (engine.py), so this one must not go back to it.
                    self._discard()
                self._conn.close()
                self._conn = None
        if isinstance(exc, sa.exc.DBAPIError) and is_transient(exc):
            raise TransientStorageError(str(exc.orig)) from exc

    def _commit(self) -> None:
        if self.read_only:
            raise RuntimeError("a read-only unit of work cannot commit")
        try:
            self._session.commit()
        except sa.exc.DBAPIError as exc:
            if is_transient(exc):
                raise TransientStorageError(str(exc.orig)) from exc
            self._discard()  # did it commit? unknown: never reuse this connection
            raise

    def _rollback(self) -> None:
        assert self._conn is not None, "rolled back outside the unit of work"
        try:
            self._conn.rollback()
        except sa.exc.DBAPIError:
            self._discard()  # closing the socket makes the server roll the transaction back

    def _discard(self) -> None:
        """Drop the DBAPI connection instead of returning it to the pool."""
        assert self._conn is not None, "discarded outside the unit of work"
        try:
            self._conn.invalidate()
        except sa.exc.SQLAlchemyError:
            pass


def sql_uow_factory(engine: Engine, publisher: TaskPublisher, cache: ProductCache, *, read_only: bool = False):
    return lambda: SqlUnitOfWork(engine, publisher, cache, read_only=read_only)
