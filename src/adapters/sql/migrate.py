"""Bring a database to the latest schema with Alembic, configured in code (no alembic.ini).

Any number of processes may migrate one database at once (several API processes and workers
started together on a fresh database): each takes the database's migration lock first, so
they take turns, and all but the first find the schema current and do nothing.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from contextlib import contextmanager

import sqlalchemy as sa
from alembic import command
from alembic.config import Config
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory

#: The longest a migration waits for another process's migration to finish.
MIGRATION_LOCK_TIMEOUT_SECONDS = 300
#: What to tell a user whose database lacks the schema, or has an older one.
RUN_MIGRATE = "run `stockade migrate`"


class MigrationLockTimeout(RuntimeError):
    """Another process held the migration lock for longer than MIGRATION_LOCK_TIMEOUT_SECONDS."""


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", "stockade.adapters.sql:migrations")
    # Alembic's config is ConfigParser-backed: a literal % in a password must be doubled.
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    config.attributes["configure_logger"] = False
    return config


def migrate(url: str, revision: str = "head") -> None:
    """Upgrade the database at `url` to `revision`; safe to run again, and from many processes at once."""
    engine = _migration_engine(url)
    try:
        with engine.connect() as connection, _migration_lock(connection):
            config = alembic_config(url)
            config.attributes["connection"] = connection  # env.py migrates on it, under the lock
            command.upgrade(config, revision)
            connection.commit()
    finally:
        engine.dispose()


def schema_is_current(connection: sa.Connection) -> bool:
    """Whether the database's schema is at the latest migration (False for an empty database).
    One query: /readyz asks it on every probe."""
    return set(MigrationContext.configure(connection).get_current_heads()) == _latest_revisions()


@functools.cache
def _latest_revisions() -> frozenset[str]:
    """The head revisions of our migration scripts (read from disk once per process)."""
    return frozenset(ScriptDirectory.from_config(alembic_config("sqlite://")).get_heads())


def _migration_engine(url: str) -> sa.Engine:
    if sa.engine.make_url(url).get_backend_name() == "sqlite":
        # isolation_level=None: the driver opens no transaction of its own, so the one
        # _migration_lock opens holds every statement of the migration.
        return sa.create_engine(
            url,
            poolclass=sa.pool.NullPool,
            connect_args={"isolation_level": None, "timeout": MIGRATION_LOCK_TIMEOUT_SECONDS},
        )
    return sa.create_engine(url, poolclass=sa.pool.NullPool)


@contextmanager
def _migration_lock(connection: sa.Connection) -> Iterator[None]:
    """SQLite: the whole migration is one exclusive transaction (other writers wait for it,
    up to the busy timeout). MySQL/MariaDB: a named lock of this database (GET_LOCK), held
    by this connection until released; DDL commits on its own there, so no transaction could."""
    if connection.dialect.name == "sqlite":
        connection.exec_driver_sql("BEGIN EXCLUSIVE")
        yield
        return
    name = connection.exec_driver_sql("SELECT CONCAT('stockade-migrate:', DATABASE())").scalar()
    granted = connection.execute(
        sa.text("SELECT GET_LOCK(:name, :timeout)"), {"name": name, "timeout": MIGRATION_LOCK_TIMEOUT_SECONDS}
    ).scalar()
    connection.commit()
    if granted != 1:
        raise MigrationLockTimeout(
            f"another `stockade migrate` held the lock {name!r} for over "
            f"{MIGRATION_LOCK_TIMEOUT_SECONDS} s; wait for it to finish, then retry"
        )
    try:
        yield
    finally:
        connection.execute(sa.text("SELECT RELEASE_LOCK(:name)"), {"name": name})
        connection.commit()
