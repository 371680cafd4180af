"""What a command checks before it starts: the database answers, and has the latest schema."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

import sqlalchemy as sa

from stockade.adapters.sql.migrate import RUN_MIGRATE, schema_is_current

log = logging.getLogger("stockade")

#: Pause between two attempts to reach the database.
RETRY_PAUSE_SECONDS = 1.0
#: The longest one attempt waits for a MySQL server (one that drops packets never refuses),
#: so that the last attempt ends close to the startup timeout.
CONNECT_TIMEOUT_SECONDS = 5


class StartupFailure(RuntimeError):
    """A command cannot start; the message is one line that says why and what to do."""


def redacted(url: str) -> str:
    return sa.engine.make_url(url).render_as_string(hide_password=True)


def wait_for_database(url: str, timeout: float, *, sleep: Callable[[float], None] = time.sleep) -> bool:
    """Connect to `url` until it answers or `timeout` seconds have passed, one log line per failed
    attempt; then return whether the schema is current. Raises StartupFailure at the deadline."""
    mysql = sa.engine.make_url(url).get_backend_name() != "sqlite"
    engine = sa.create_engine(
        url,
        poolclass=sa.pool.NullPool,
        connect_args={"connect_timeout": CONNECT_TIMEOUT_SECONDS, "read_timeout": CONNECT_TIMEOUT_SECONDS}
        if mysql
        else {},
    )
    deadline = time.monotonic() + timeout
    attempt = 0
    try:
        while True:
            attempt += 1
            try:
                with engine.connect() as connection:
                    return schema_is_current(connection)
            except sa.exc.DBAPIError as exc:
                reason = _one_line(exc)
                left = deadline - time.monotonic()
                if left <= 0:
                    raise StartupFailure(
                        f"the database {redacted(url)} did not answer within {timeout:g} s "
                        f"({attempt} attempt(s); last: {reason}); check that it runs and that "
                        "STOCKADE_DATABASE_URL is right, or raise STOCKADE_STARTUP_TIMEOUT_SECONDS"
                    ) from None
                log.warning(
                    "database %s did not answer (attempt %d: %s); retrying for %.0f s more",
                    redacted(url),
                    attempt,
                    reason,
                    left,
                )
                sleep(min(RETRY_PAUSE_SECONDS, left))
    finally:
        engine.dispose()


def require_current_schema(url: str, current: bool) -> None:
    if not current:
        raise StartupFailure(f"the database {redacted(url)} has no schema or an older one: {RUN_MIGRATE}")


def _one_line(exc: sa.exc.DBAPIError) -> str:
    return " ".join(str(exc.orig).split()) or type(exc.orig).__name__
