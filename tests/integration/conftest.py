"""Fixtures for integration tests: a real MySQL-compatible server and a real Redis.

Each server is found in this order: the URL in STOCKADE_TEST_MYSQL_URL /
STOCKADE_TEST_REDIS_URL; a testcontainers container when a Docker engine answers;
the local server on 127.0.0.1. When none answers the fixture fails under CI=true
and skips otherwise. Every test gets its own empty database / Redis db number.
The schema is not created here: tests call stockade.adapters.sql.migrate(url).
"""
from __future__ import annotations

import itertools
import os
import uuid
from collections.abc import Iterator
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
        host=u.host or "127.0.0.1", port=u.port or 3306,
        user=u.username or "root", password=u.password or "",
        database=database, charset="utf8mb4", autocommit=True,
        connect_timeout=5, read_timeout=30, write_timeout=30,
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
            _unavailable("MySQL", f"{MYSQL_ENV}={_redacted(env_url)} does not answer ({problem})",
                         f"fix {MYSQL_ENV} or unset it")
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
            "MySQL", f"no {MYSQL_ENV}, no Docker engine, and the local server does not answer ({problem})",
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

    url = make_url(mysql_server_url).set(
        drivername="mysql+pymysql", database=name, query={"charset": "utf8mb4"}
    )
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
    """URL (without a db number) of a Redis server whose dbs 1..15 the tests may flush."""
    env_url = os.environ.get(REDIS_ENV)
    if env_url:
        problem = _redis_problem(env_url)
        if problem:
            _unavailable("Redis", f"{REDIS_ENV}={_redacted(env_url)} does not answer ({problem})",
                         f"fix {REDIS_ENV} or unset it")
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
            "Redis", f"no {REDIS_ENV}, no Docker engine, and the local server does not answer ({problem})",
            f"set {REDIS_ENV}=redis://HOST:6379/0, or run "
            "`python scripts/ensure_services.py` (starts a local Redis), or start Docker",
        )
    yield LOCAL_REDIS_URL


# db 0 is left alone (developers' own data); tests take 1..15 in turn. Not xdist-safe:
# parallel workers would share db numbers.
_redis_dbs = itertools.cycle(range(1, 16))


@pytest.fixture
def redis_url(redis_server_url: str) -> Iterator[str]:
    """URL of a Redis db number for this test only, empty at start and flushed afterwards."""
    parts = urlsplit(redis_server_url)
    url = urlunsplit(parts._replace(path=f"/{next(_redis_dbs)}"))
    client = redis.Redis.from_url(url, socket_connect_timeout=3, socket_timeout=10)
    try:
        client.flushdb()
        yield url
        client.flushdb()
    finally:
        client.close()
