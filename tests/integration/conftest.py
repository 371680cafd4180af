"""Fixtures for integration tests: a real MySQL-compatible server and a real Redis.

Each server is found in this order: the URL in STOCKADE_TEST_MYSQL_URL /
STOCKADE_TEST_REDIS_URL; a testcontainers container when a Docker engine answers;
the local server on 127.0.0.1. When none answers the fixture fails under CI=true
and skips otherwise. Every test gets its own empty database / Redis db number;
a Redis db is leased first (a key in db 0), so concurrent runs on one server never
share or flush each other's dbs.
The schema is not created here: tests call stockade.adapters.sql.migrate(url).
"""

from __future__ import annotations

import itertools
import os
import socket
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import pymysql
import pytest
import redis
from sqlalchemy.engine import make_url

MYSQL_ENV = "STOCKADE_TEST_MYSQL_URL"
REDIS_ENV = "STOCKADE_TEST_REDIS_URL"
LOCAL_MYSQL_URL = "mysql+pymysql://root:@127.0.0.1:3306/test"
LOCAL_REDIS_URL = "redis://127.0.0.1:6379"
MYSQL_IMAGE = "mysql:8.0.36"
REDIS_IMAGE = "redis:7.2-alpine"

_HERE = Path(__file__).resolve().parent


def _in_ci() -> bool:
    """True under CI, where a missing server must fail rather than skip."""
    return os.environ.get("CI", "").strip().lower() in ("true", "1", "yes")


def _unavailable(what: str, why: str, how: str) -> None:
    """Fail under CI, skip locally; the message says how to provide the server."""
    msg = f"{what} unavailable: {why}. To provide one: {how}"
    if _in_ci():
        pytest.fail(f"CI=true: {msg}", pytrace=False)
    pytest.skip(msg)


def _docker_answers() -> bool:
    """True when a Docker engine answers a ping through the docker SDK."""
    try:
        import docker

        client = docker.from_env(timeout=5)
        try:
            return bool(client.ping())
        finally:
            client.close()
    except Exception:  # no SDK, no socket, daemon down: all mean "no Docker"
        return False


def _mysql_connect(url: str, database: str | None = None) -> pymysql.connections.Connection:
    """A pymysql connection to the server named by a SQLAlchemy URL (autocommit)."""
    u = make_url(url)
    return pymysql.connect(
        host=u.host or "127.0.0.1",
        port=u.port or 3306,
        user=u.username or "root",
        password=u.password or "",
        database=database,
        charset="utf8mb4",
        autocommit=True,
        connect_timeout=5,
        read_timeout=30,
        write_timeout=30,
    )


def _mysql_problem(url: str) -> str | None:
    """None when a login to the URL works, else the error."""
    try:
        conn = _mysql_connect(url, database=make_url(url).database or None)
    except Exception as exc:  # pymysql raises OperationalError, but sockets can raise OSError
        return f"{type(exc).__name__}: {exc}"
    conn.close()
    return None


def _redis_problem(url: str) -> str | None:
    """None when the Redis at url answers PING, else the error."""
    try:
        client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=5)
        try:
            client.ping()
        finally:
            client.close()
    except Exception as exc:
        return f"{type(exc).__name__}: {exc}"
    return None


def _redacted(url: str) -> str:
    """URL without its password, for messages."""
    try:
        return make_url(url).render_as_string(hide_password=True)
    except Exception:
        return url


def _mysql_container_class():
    """MySqlContainer from wherever this testcontainers version keeps it."""
    try:  # testcontainers >= 4.10 moved it and deprecated the old path
        from testcontainers.community.mysql import MySqlContainer
    except ImportError:
        from testcontainers.mysql import MySqlContainer
    return MySqlContainer


def _redis_container_class():
    """RedisContainer from wherever this testcontainers version keeps it."""
    try:
        from testcontainers.community.redis import RedisContainer
    except ImportError:
        from testcontainers.redis import RedisContainer
    return RedisContainer


# ---------------------------------------------------------------- markers


def pytest_collection_modifyitems(config, items):
    """Mark every test under tests/integration with `integration` (so -m 'not integration' works)."""
    for item in items:
        if _HERE in Path(str(item.path)).resolve().parents:
            item.add_marker(pytest.mark.integration)


# ---------------------------------------------------------------- MySQL


@pytest.fixture(scope="session")
def mysql_server_url() -> Iterator[str]:
    """SQLAlchemy URL (mysql+pymysql) of a MySQL-compatible server on which databases may be created."""
    env_url = os.environ.get(MYSQL_ENV)
    if env_url:
        problem = _mysql_problem(env_url)
        if problem:
            _unavailable(
                "MySQL", f"{MYSQL_ENV}={_redacted(env_url)} does not answer ({problem})", f"fix {MYSQL_ENV} or unset it"
            )
        yield env_url
        return

    if _docker_answers():
        # Log in as root: the container's ordinary user may not CREATE DATABASE.
        container = _mysql_container_class()(
            MYSQL_IMAGE, username="root", password="test", root_password="test", dbname="test"
        )
        container.start()
        try:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(3306)
            yield f"mysql+pymysql://root:test@{host}:{port}/test"
        finally:
            container.stop()
        return

    problem = _mysql_problem(LOCAL_MYSQL_URL)
    if problem:
        _unavailable(
            "MySQL",
            f"no {MYSQL_ENV}, no Docker engine, and the local server does not answer ({problem})",
            f"set {MYSQL_ENV}=mysql+pymysql://USER:PW@HOST:3306/DB, or run "
            "`python scripts/ensure_services.py` (starts a local MariaDB), or start Docker",
        )
    yield LOCAL_MYSQL_URL


@pytest.fixture
def mysql_url(mysql_server_url: str) -> Iterator[str]:
    """URL of a fresh, empty utf8mb4 database for this test only; dropped afterwards."""
    name = f"stockade_t_{uuid.uuid4().hex[:16]}"
    admin = _mysql_connect(mysql_server_url)
    try:
        with admin.cursor() as cur:
            cur.execute(f"CREATE DATABASE `{name}` CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    finally:
        admin.close()

    url = make_url(mysql_server_url).set(drivername="mysql+pymysql", database=name, query={"charset": "utf8mb4"})
    try:
        yield url.render_as_string(hide_password=False)
    finally:
        # A fresh connection: the test may have left the server's sessions in any state.
        admin = _mysql_connect(mysql_server_url)
        try:
            with admin.cursor() as cur:
                cur.execute(f"DROP DATABASE IF EXISTS `{name}`")
        finally:
            admin.close()


# ---------------------------------------------------------------- Redis


@pytest.fixture(scope="session")
def redis_server_url() -> Iterator[str]:
    """URL (without a db number) of a Redis server whose dbs 1..15 the tests may lease and flush."""
    env_url = os.environ.get(REDIS_ENV)
    if env_url:
        problem = _redis_problem(env_url)
        if problem:
            _unavailable(
                "Redis", f"{REDIS_ENV}={_redacted(env_url)} does not answer ({problem})", f"fix {REDIS_ENV} or unset it"
            )
        yield env_url
        return

    if _docker_answers():
        container = _redis_container_class()(REDIS_IMAGE)
        container.start()
        try:
            host = container.get_container_host_ip()
            port = container.get_exposed_port(6379)
            yield f"redis://{host}:{port}"
        finally:
            container.stop()
        return

    problem = _redis_problem(LOCAL_REDIS_URL)
    if problem:
        _unavailable(
            "Redis",
            f"no {REDIS_ENV}, no Docker engine, and the local server does not answer ({problem})",
            f"set {REDIS_ENV}=redis://HOST:6379/0, or run "
            "`python scripts/ensure_services.py` (starts a local Redis), or start Docker",
        )
    yield LOCAL_REDIS_URL


# db 0 is left alone (developers' own data) apart from the lease keys; tests use 1..15.
REDIS_TEST_DBS = range(1, 16)
REDIS_LEASE_KEY = "stockade-test-lease:{db}"
#: Long enough for any test; a run that crashed frees its dbs by expiry after this.
REDIS_LEASE_SECONDS = 3600

# Delete the lease only while it still holds our run id: after an expiry another run may own it.
_RELEASE_IF_OURS = """
if redis.call('GET', KEYS[1]) == ARGV[1] then
  return redis.call('DEL', KEYS[1])
end
return 0
"""


class RedisDbLeases:
    """Hands out Redis dbs 1..15 of one server, each leased in db 0 before use.

    Another test run (a second terminal, a CI job on a shared Redis) may be using the
    same server: a db it holds is skipped, never flushed. The lease is
    `SET stockade-test-lease:<n> <run id> NX EX 3600`; it is deleted on release only
    if it still holds this run's id. Not xdist-safe within one run: workers would have
    to share one run id and one instance of this class.
    """

    def __init__(self, server_url: str) -> None:
        self.server_url = server_url
        self.run_id = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex}"
        self._leases = redis.Redis.from_url(self.db_url(0), socket_connect_timeout=3, socket_timeout=10)
        self._release = self._leases.register_script(_RELEASE_IF_OURS)
        self._next = itertools.cycle(REDIS_TEST_DBS)  # take dbs in turn, as before leasing existed
        self._held: set[int] = set()

    def db_url(self, db: int) -> str:
        """The server URL with db number `db`."""
        return urlunsplit(urlsplit(self.server_url)._replace(path=f"/{db}"))

    def _acquire(self) -> int:
        for _ in REDIS_TEST_DBS:
            db = next(self._next)
            if db in self._held:
                continue
            if self._leases.set(REDIS_LEASE_KEY.format(db=db), self.run_id, nx=True, ex=REDIS_LEASE_SECONDS):
                self._held.add(db)
                return db
        db0 = _redacted(self.db_url(0))
        pytest.fail(
            f"No free Redis test db on {_redacted(self.server_url)}: dbs {REDIS_TEST_DBS.start}.."
            f"{REDIS_TEST_DBS.stop - 1} are all leased (by this run: {sorted(self._held) or 'none'}; the rest by "
            f"other test runs, keys {REDIS_LEASE_KEY.format(db='N')} in db 0). Wait for the other runs to finish, "
            f"or set {REDIS_ENV} to a Redis server of your own. If no other run is alive, the leases are stale: "
            f"they expire within {REDIS_LEASE_SECONDS}s, or delete them with `redis-cli -u {db0} --scan "
            f"--pattern '{REDIS_LEASE_KEY.format(db='*')}' | xargs redis-cli -u {db0} DEL`.",
            pytrace=False,
        )

    def _give_back(self, db: int) -> None:
        self._held.discard(db)
        self._release(keys=[REDIS_LEASE_KEY.format(db=db)], args=[self.run_id])

    @contextmanager
    def lease(self) -> Iterator[str]:
        """URL of a leased db, empty at start, flushed and released afterwards."""
        db = self._acquire()
        try:
            client = redis.Redis.from_url(self.db_url(db), socket_connect_timeout=3, socket_timeout=10)
            try:
                client.flushdb()
                yield self.db_url(db)
                client.flushdb()
            finally:
                client.close()
        finally:
            self._give_back(db)

    def close(self) -> None:
        """Release whatever is still held (a test interrupted mid-teardown), then disconnect."""
        try:
            for db in sorted(self._held):
                self._give_back(db)
        finally:
            self._leases.close()


@pytest.fixture(scope="session")
def redis_dbs(redis_server_url: str) -> Iterator[RedisDbLeases]:
    """The leases on Redis dbs 1..15 of the test server, for `redis_url` and the broker fixture."""
    leases = RedisDbLeases(redis_server_url)
    try:
        yield leases
    finally:
        leases.close()


@pytest.fixture
def redis_url(redis_dbs: RedisDbLeases) -> Iterator[str]:
    """URL of a Redis db number for this test only, empty at start and flushed afterwards."""
    with redis_dbs.lease() as url:
        yield url
