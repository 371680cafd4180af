"""The SQL unit of work: one connection, one transaction, every repository on it."""

from __future__ import annotations

import sqlalchemy as sa
from sqlalchemy.engine import Engine

from stockade.adapters.sql.engine import is_sqlite, is_transient
from stockade.adapters.sql.group_commit import GroupCommit
from stockade.adapters.sql.repositories import (
    SqlAdjustmentRepository,
    SqlClaimRepository,
    SqlEventLog,
    SqlHoldRepository,
    SqlIdempotencyRepository,
    SqlOrderRepository,
    SqlOutbox,
    SqlPaymentEventRepository,
    SqlProductRepository,
)
from stockade.adapters.sql.session import Session
from stockade.adapters.sql.writer_lock import WriterLock
from stockade.application.ports import ProductCache, TaskPublisher, TransientStorageError
from stockade.application.unit_of_work import AbstractUnitOfWork

#: What _begin makes for one transaction: its session and the repositories on it.
_PER_TRANSACTION = (
    "_session",
    "products",
    "holds",
    "orders",
    "claims",
    "payments",
    "idempotency",
    "adjustments",
    "events",
    "outbox",
)


class SqlUnitOfWork(AbstractUnitOfWork):
    """A transaction on `engine`; `read_only` ones never take SQLite's write lock. On SQLite
    a writing one queues on `writer_lock` (writer_lock.py) before its first statement, and
    releases it when its transaction ends."""

    def __init__(
        self,
        engine: Engine,
        publisher: TaskPublisher,
        cache: ProductCache,
        *,
        read_only: bool = False,
        writer_lock: WriterLock | None = None,
        group: GroupCommit | None = None,
    ) -> None:
        super().__init__(publisher, cache)
        self.engine = engine
        self.read_only = read_only
        self._sqlite = is_sqlite(engine)
        self._writer_lock = None if read_only else writer_lock
        self._group = None if read_only else group
        self._locked: WriterLock | None = None  # the writer lock while this one holds it
        self._conn: sa.Connection | None = None

    def _begin(self) -> None:
        # The connection is taken from the pool, and the writer lock taken, only when the first
        # statement goes to the database (the session holds writes back until commit, and a
        # writer whose group is led by another sends none); both go back when the transaction ends.
        self._session = session = Session(
            self._connect,
            self.engine.dialect,
            self.product_changed,
            before_first_statement=self._take_writer_lock if self._writer_lock is not None else None,
            group=self._group,
        )
        self.products = SqlProductRepository(session)
        self.holds = SqlHoldRepository(session)
        self.orders = SqlOrderRepository(session)
        self.claims = SqlClaimRepository(session)
        self.payments = SqlPaymentEventRepository(session)
        self.idempotency = SqlIdempotencyRepository(session)
        self.adjustments = SqlAdjustmentRepository(session)
        self.events = SqlEventLog(session)
        self.outbox = SqlOutbox(session, self.message_added)

    def _drop_session(self) -> None:
        """Let go of the transaction's session and repositories. They call back into this unit
        of work (a reference cycle): dropped here, they are freed as soon as the transaction
        ends, not by the garbage collector, whose collections a purchase would otherwise
        trigger several times over."""
        for name in _PER_TRANSACTION:
            self.__dict__.pop(name, None)

    def _connect(self) -> sa.Connection:
        assert self._conn is None, "one connection per unit of work"
        conn = self._conn = self.engine.connect()
        if self._sqlite:
            conn.info["stockade_begin"] = "BEGIN" if self.read_only else "BEGIN IMMEDIATE"
        return conn

    def __exit__(self, exc_type, exc, tb) -> None:
        try:
            super().__exit__(exc_type, exc, tb)
        finally:
            self._done_writing()
            if isinstance(exc, sa.exc.DBAPIError) and not is_transient(exc):
                # A driver error of unknown kind can leave the connection mid-protocol or
                # inside a transaction; the pool does not reset connections on return
                # (engine.py), so this one must not go back to it.
                self._discard()
            self._release()
            self._drop_session()
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
        # Committed: the next writer may go, and the connection goes back to the pool, before
        # the cache bumps and task publishing that follow (under load they wait for a Redis
        # round trip and a turn of the event loop, and a connection held meanwhile kept other
        # requests waiting for the pool). A failed commit keeps both until the rollback
        # (__exit__) ends it.
        self._done_writing()
        self._release()

    def _rollback(self) -> None:
        try:
            if self._conn is not None:  # else nothing reached the database
                self._conn.rollback()
        except sa.exc.DBAPIError:
            self._discard()  # closing the socket makes the server roll the transaction back
        finally:
            self._done_writing()

    def _take_writer_lock(self) -> None:
        assert self._writer_lock is not None
        self._writer_lock.acquire()
        self._locked = self._writer_lock

    def _done_writing(self) -> None:
        if self._locked is not None:
            lock, self._locked = self._locked, None
            lock.release()

    def _release(self) -> None:
        """Give the connection back to the pool (none was taken: nothing to give)."""
        if self._conn is not None:
            conn, self._conn = self._conn, None
            conn.close()

    def _discard(self) -> None:
        """Drop the DBAPI connection instead of returning it to the pool (a writer whose group
        another led took none)."""
        if self._conn is None:
            return
        try:
            self._conn.invalidate()
        except sa.exc.SQLAlchemyError:
            pass


def sql_uow_factory(
    engine: Engine,
    publisher: TaskPublisher,
    cache: ProductCache,
    *,
    read_only: bool = False,
    writer_lock: WriterLock | None = None,
    group: GroupCommit | None = None,
):
    return lambda: SqlUnitOfWork(engine, publisher, cache, read_only=read_only, writer_lock=writer_lock, group=group)
