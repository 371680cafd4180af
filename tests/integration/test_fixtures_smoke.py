"""Prove the integration fixtures: real servers, one empty database / Redis db per test."""

import pytest
import redis
import sqlalchemy as sa


def _tables(engine: sa.Engine) -> list[str]:
    """Table names in the engine's database."""
    return sa.inspect(engine).get_table_names()


@pytest.mark.parametrize("run", ["first", "second"])
def test_mysql_url_is_a_fresh_empty_database(mysql_url: str, run: str) -> None:
    """Each run starts with no tables, although the other run left one behind."""
    assert mysql_url.startswith("mysql+pymysql://")
    assert "charset=utf8mb4" in mysql_url
    engine = sa.create_engine(mysql_url)
    try:
        assert _tables(engine) == []
        with engine.begin() as conn:
            conn.execute(sa.text("CREATE TABLE probe (id INT PRIMARY KEY, name VARCHAR(50)) ENGINE=InnoDB"))
            # A 4-byte character proves the connection and database really are utf8mb4.
            conn.execute(sa.text("INSERT INTO probe VALUES (1, :n)"), {"n": f"{run} \N{SHOPPING TROLLEY}"})
        with engine.connect() as conn:
            rows = conn.execute(sa.text("SELECT id, name FROM probe")).all()
        assert [tuple(r) for r in rows] == [(1, f"{run} \N{SHOPPING TROLLEY}")]
        assert _tables(engine) == ["probe"]
    finally:
        engine.dispose()


def test_mysql_databases_are_distinct(mysql_url: str, mysql_server_url: str) -> None:
    """The per-test database is not the server's default database."""
    assert sa.make_url(mysql_url).database.startswith("stockade_t_")
    assert sa.make_url(mysql_url).database != sa.make_url(mysql_server_url).database


@pytest.mark.parametrize("run", ["first", "second"])
def test_redis_url_is_an_empty_db(redis_url: str, run: str) -> None:
    """Each run starts with an empty db, although the other run left keys behind."""
    client = redis.Redis.from_url(redis_url)
    try:
        assert client.dbsize() == 0
        client.set("stockade:smoke", run)
        client.set(f"stockade:smoke:{run}", "1")
        assert client.get("stockade:smoke") == run.encode()
        assert client.dbsize() == 2
    finally:
        client.close()


def test_tests_here_are_marked_integration(request: pytest.FixtureRequest) -> None:
    """The conftest hook marks this directory's tests, so `-m 'not integration'` excludes them."""
    assert request.node.get_closest_marker("integration") is not None
