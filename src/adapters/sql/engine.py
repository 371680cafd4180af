"""Engines for SQLite (embedded) and MySQL/MariaDB, and what their errors mean to us."""

from __future__ import annotations

import sqlalchemy as sa
from pymysql.constants import CLIENT
from sqlalchemy import event
from sqlalchemy.engine import Engine, make_url

from stockade.adapters.sql.fair_pool import FairQueuePool
from stockade.adapters.sql.migrate import RUN_MIGRATE

#: MySQL error codes a retry cures: deadlock, lock wait timeout.
_MYSQL_TRANSIENT = {1213, 1205}
#: MySQL error codes of a schema that is missing or older than the code: no such table, unknown column.
_MYSQL_SCHEMA_BEHIND = {1146, 1054, 1305}  # no such table, column, procedure
MYSQL_DUPLICATE = 1062

#: Connections per pool and process. A fixed pool without overflow: a request holds a
#: connection only while it talks to the database, so under a gevent worker's hundreds of
#: concurrent requests the rest queue for one briefly, first come first served
#: (fair_pool.py). Overflow connections, closed again on return, cost a new connection
#: (TCP, auth, TLS setup) per request under such load and made a purchase several times
#: slower.
POOL_SIZE = 16
#: How long a request waits for a pooled connection before it fails (503).
POOL_TIMEOUT_SECONDS = 30


def make_engine(url: str, *, pool_size: int = POOL_SIZE) -> Engine:
    """An engine tuned for the hot path: no pre-ping round trip, READ COMMITTED on MySQL.

    pool_reset_on_return=None: every connection is used through a SQLAlchemy Connection,
    which itself rolls back a transaction left open when it closes; the pool's own reset
    only added a second ROLLBACK round trip to every unit of work. A unit of work whose
    COMMIT or ROLLBACK fails, or that ends on an unknown driver error, invalidates its
    connection instead of returning it (uow.py).

    Pools open connections lazily: a process holds about as many as its peak number of
    concurrent units of work, at most POOL_SIZE per engine.
    """
    parsed = make_url(url)
    if parsed.get_backend_name() == "sqlite":
        engine = sa.create_engine(
            url,
            connect_args={"check_same_thread": False, "timeout": 30},
            poolclass=FairQueuePool,
            pool_size=pool_size,
            max_overflow=0,
            pool_timeout=POOL_TIMEOUT_SECONDS,
        )
        _sqlite_setup(engine)
        return engine
    pool = _mysql_pool(pool_size)
    # Multi-statements let a unit of work send its held statements with the COMMIT in one
    # round trip (session.py). Every statement we send is rendered with the driver's own
    # escaping, so it widens nothing for values; FOUND_ROWS is SQLAlchemy's default flag.
    pool["connect_args"]["client_flag"] = CLIENT.MULTI_STATEMENTS | CLIENT.FOUND_ROWS
    return sa.create_engine(url, isolation_level="READ COMMITTED", **pool)


def make_read_engine(url: str, write_engine: Engine, *, pool_size: int = POOL_SIZE) -> Engine:
    """The engine for read-only units of work.

    MySQL/MariaDB: a pool of AUTOCOMMIT connections, so a read is its one statement, with
    no COMMIT or ROLLBACK round trip (skip_autocommit_rollback). At READ COMMITTED every
    statement of a transaction reads its own fresh snapshot anyway, so a multi-statement
    read loses no consistency it had. SQLite: the write engine (its BEGIN costs nothing).
    """
    if write_engine.dialect.name == "sqlite":
        return write_engine
    return sa.create_engine(url, isolation_level="AUTOCOMMIT", skip_autocommit_rollback=True, **_mysql_pool(pool_size))


def _mysql_pool(pool_size: int) -> dict:
    return {
        "poolclass": FairQueuePool,
        "pool_size": pool_size,
        "max_overflow": 0,
        "pool_recycle": 1800,
        "pool_timeout": POOL_TIMEOUT_SECONDS,
        "pool_reset_on_return": None,
        "connect_args": {"connect_timeout": 5, "read_timeout": 30, "write_timeout": 30},
    }


def _sqlite_setup(engine: Engine) -> None:
    @event.listens_for(engine, "connect")
    def on_connect(dbapi_connection, _record):
        # The driver must not open transactions itself: we emit BEGIN or BEGIN IMMEDIATE.
        dbapi_connection.isolation_level = None
        cur = dbapi_connection.cursor()
        cur.execute("PRAGMA journal_mode=WAL")  # readers never wait for the writer
        cur.execute("PRAGMA synchronous=FULL")  # an acknowledged commit survives power loss
        cur.execute("PRAGMA foreign_keys=ON")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.close()

    @event.listens_for(engine, "begin")
    def on_begin(conn):
        # Writers take the write lock up front, so two writers never deadlock on upgrade.
        conn.exec_driver_sql(conn.info.get("stockade_begin", "BEGIN"))


def is_sqlite(engine: Engine) -> bool:
    return engine.dialect.name == "sqlite"


def _mysql_code(exc: BaseException) -> int | None:
    orig = getattr(exc, "orig", None)
    args = getattr(orig, "args", ())
    return args[0] if args and isinstance(args[0], int) else None


def is_duplicate_key(exc: sa.exc.IntegrityError) -> bool:
    code = _mysql_code(exc)
    if code is not None:
        return code == MYSQL_DUPLICATE
    return "UNIQUE constraint failed" in str(exc.orig) or "PRIMARY KEY" in str(exc.orig)


def is_schema_behind(exc: BaseException) -> bool:
    """The statement failed because the database lacks a table or column: it needs `stockade migrate`."""
    if not isinstance(exc, sa.exc.DBAPIError):
        return False
    code = _mysql_code(exc)
    if code is not None:
        return code in _MYSQL_SCHEMA_BEHIND
    return str(exc.orig).startswith(("no such table", "no such column"))


def storage_problem(exc: BaseException) -> str | None:
    """One line for a database that did not answer or lacks the schema; None for any other error."""
    if is_schema_behind(exc):
        return f"the database has no schema or an older one: {RUN_MIGRATE}"
    if isinstance(exc, sa.exc.OperationalError | sa.exc.InterfaceError) or (
        isinstance(exc, sa.exc.DBAPIError) and exc.connection_invalidated
    ):
        return "the database did not answer: " + (" ".join(str(exc.orig).split()) or type(exc.orig).__name__)
    if isinstance(exc, sa.exc.TimeoutError):
        return f"no database connection came free in time: {exc}"
    return None


def is_transient(exc: sa.exc.StatementError) -> bool:
    code = _mysql_code(exc)
    if code is not None:
        return code in _MYSQL_TRANSIENT
    return "database is locked" in str(getattr(exc, "orig", ""))
