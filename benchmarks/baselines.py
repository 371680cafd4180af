"""The baselines benchmarks/bench.py measures Stockade against: a tiny Falcon app on the same stack.

Served by the same `stockade.entrypoints.gunicorn_app.serve` that `stockade serve` uses, so
the HTTP server, its worker class and its worker count are Stockade's own:

    GET  /hello                 200 {"status": "ok"}: hello-world on this stack
    POST /raw/purchase          MySQL/MariaDB, ONE round trip (a multi-statement transaction)
    POST /naive/purchase        MySQL/MariaDB, SELECT ... FOR UPDATE, check, UPDATE, INSERT, COMMIT
    POST /raw-sqlite/purchase   SQLite (WAL, synchronous=FULL), BEGIN IMMEDIATE; UPDATE; INSERT; COMMIT

A purchase takes {"product_id", "quantity"} and answers 201 when it inserted an order, 409
when the stock was short. The tables (bench_products, bench_orders) are the baselines' own;
bench.py creates them with `prepare` before it starts this server:

    python benchmarks/baselines.py --port 8001 --workers 2 --mysql-url URL --sqlite PATH
"""

from __future__ import annotations

import argparse
import json
import queue
import sqlite3
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from urllib.parse import unquote, urlsplit

import falcon
import pymysql
from pymysql.constants import CLIENT

from stockade.entrypoints.gunicorn_app import serve

#: Connections a worker process may open per database (threads or greenlets beyond it wait).
POOL_SIZE = 16

MYSQL_SCHEMA = (
    "DROP TABLE IF EXISTS bench_orders, bench_products",
    "CREATE TABLE bench_products (id BIGINT AUTO_INCREMENT PRIMARY KEY, name VARCHAR(255) NOT NULL,"
    " stock BIGINT NOT NULL, CONSTRAINT ck_bench_stock CHECK (stock >= 0)) ENGINE=InnoDB",
    "CREATE TABLE bench_orders (id BIGINT AUTO_INCREMENT PRIMARY KEY, product_id BIGINT NOT NULL,"
    " quantity INT NOT NULL, created_at DATETIME(6) NOT NULL, KEY ix_bench_orders_product (product_id))"
    " ENGINE=InnoDB",
)
SQLITE_SCHEMA = (
    "CREATE TABLE bench_products (id INTEGER PRIMARY KEY, name TEXT NOT NULL,"
    " stock INTEGER NOT NULL CHECK (stock >= 0))",
    "CREATE TABLE bench_orders (id INTEGER PRIMARY KEY, product_id INTEGER NOT NULL,"
    " quantity INTEGER NOT NULL, created_at TEXT NOT NULL)",
    "CREATE INDEX ix_bench_orders_product ON bench_orders (product_id)",
)

#: The whole purchase in one round trip: the INSERT happens only when the UPDATE took the stock.
RAW_PURCHASE = (
    "START TRANSACTION;"
    " UPDATE bench_products SET stock = stock - %(q)s WHERE id = %(id)s AND stock >= %(q)s;"
    " INSERT INTO bench_orders (product_id, quantity, created_at)"
    " SELECT %(id)s, %(q)s, NOW(6) FROM DUAL WHERE ROW_COUNT() > 0;"
    " COMMIT"
)


def mysql_server(url: str) -> dict:
    """PyMySQL's host, port, user and password for a mysql+pymysql://user:pw@host:port/db URL."""
    parts = urlsplit(url)
    return {
        "host": parts.hostname or "127.0.0.1",
        "port": parts.port or 3306,
        "user": unquote(parts.username or "root"),
        "password": unquote(parts.password or ""),
    }


def mysql_connector(url: str) -> Callable[[], pymysql.Connection]:
    """A function opening a connection to the database of `url`: autocommit off, READ COMMITTED,
    multi-statements allowed."""
    database = urlsplit(url).path.lstrip("/")

    def connect() -> pymysql.Connection:
        return pymysql.connect(
            **mysql_server(url),
            database=database,
            charset="utf8mb4",
            autocommit=False,
            client_flag=CLIENT.MULTI_STATEMENTS,
            init_command="SET SESSION TRANSACTION ISOLATION LEVEL READ COMMITTED",
        )

    return connect


def sqlite_connector(path: str) -> Callable[[], sqlite3.Connection]:
    """A function opening `path` the way Stockade's embedded engine does: WAL, synchronous=FULL."""

    def connect() -> sqlite3.Connection:
        conn = sqlite3.connect(path, isolation_level=None, check_same_thread=False, timeout=30)
        conn.execute("PRAGMA journal_mode=WAL")
        conn.execute("PRAGMA synchronous=FULL")
        conn.execute("PRAGMA busy_timeout=30000")
        return conn

    return connect


class Pool:
    """One connection per concurrent request (thread or greenlet), kept for the next one.

    Built in each worker after the fork (and after gevent's monkey-patching, if the worker
    class is gevent), so the semaphore and queue are the right kind for the worker.
    """

    def __init__(self, connect: Callable[[], object], size: int = POOL_SIZE) -> None:
        self.connect = connect
        self.idle: queue.LifoQueue = queue.LifoQueue()
        self.slots = threading.BoundedSemaphore(size)

    @contextmanager
    def connection(self) -> Iterator:
        with self.slots:
            try:
                conn = self.idle.get_nowait()
            except queue.Empty:
                conn = self.connect()
            try:
                yield conn
            except BaseException:
                try:
                    conn.close()  # its state is unknown: never reuse it
                except Exception:
                    pass
                raise
            self.idle.put(conn)


def _order(req: falcon.Request) -> tuple[int, int]:
    body = req.get_media()
    try:
        return int(body["product_id"]), int(body["quantity"])
    except (KeyError, TypeError, ValueError):
        raise falcon.HTTPUnprocessableEntity(description="need integer product_id and quantity") from None


def _answer(resp: falcon.Response, order_id: int | None, product_id: int, quantity: int) -> None:
    resp.content_type = falcon.MEDIA_JSON
    if order_id is None:
        resp.status = 409
        resp.text = json.dumps({"title": "409 Conflict", "description": "out of stock"})
    else:
        resp.status = 201
        resp.text = json.dumps({"data": {"id": order_id, "product_id": product_id, "quantity": quantity}})


class Hello:
    def on_get(self, req, resp) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"status": "ok"})


class RawPurchase:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def on_post(self, req, resp) -> None:
        product_id, quantity = _order(req)
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute(RAW_PURCHASE, {"id": product_id, "q": quantity})
            results = []  # (rows, insert id) of START TRANSACTION, UPDATE, INSERT, COMMIT
            while True:
                results.append((cur.rowcount, cur.lastrowid))
                if not cur.nextset():
                    break
        inserted, order_id = results[2]
        _answer(resp, order_id if inserted == 1 else None, product_id, quantity)


class NaivePurchase:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def on_post(self, req, resp) -> None:
        product_id, quantity = _order(req)
        order_id = None
        with self.pool.connection() as conn, conn.cursor() as cur:
            cur.execute("START TRANSACTION")
            cur.execute("SELECT stock FROM bench_products WHERE id = %s FOR UPDATE", (product_id,))
            row = cur.fetchone()
            if row is not None and row[0] >= quantity:
                cur.execute("UPDATE bench_products SET stock = stock - %s WHERE id = %s", (quantity, product_id))
                cur.execute(
                    "INSERT INTO bench_orders (product_id, quantity, created_at) VALUES (%s, %s, NOW(6))",
                    (product_id, quantity),
                )
                order_id = cur.lastrowid
                conn.commit()
            else:
                conn.rollback()
        _answer(resp, order_id, product_id, quantity)


class SqlitePurchase:
    def __init__(self, pool: Pool) -> None:
        self.pool = pool

    def on_post(self, req, resp) -> None:
        product_id, quantity = _order(req)
        with self.pool.connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                conn.execute(
                    "UPDATE bench_products SET stock = stock - ? WHERE id = ? AND stock >= ?",
                    (quantity, product_id, quantity),
                )
                cur = conn.execute(
                    "INSERT INTO bench_orders (product_id, quantity, created_at)"
                    " SELECT ?, ?, strftime('%Y-%m-%d %H:%M:%f', 'now') WHERE changes() > 0",
                    (product_id, quantity),
                )
                conn.execute("COMMIT")
            except BaseException:
                conn.execute("ROLLBACK")
                raise
        _answer(resp, cur.lastrowid if cur.rowcount == 1 else None, product_id, quantity)


def create_app(mysql_url: str | None, sqlite_path: str | None) -> falcon.App:
    app = falcon.App()
    app.add_route("/hello", Hello())
    if mysql_url:
        pool = Pool(mysql_connector(mysql_url))
        app.add_route("/raw/purchase", RawPurchase(pool))
        app.add_route("/naive/purchase", NaivePurchase(pool))
    if sqlite_path:
        app.add_route("/raw-sqlite/purchase", SqlitePurchase(Pool(sqlite_connector(sqlite_path))))
    return app


def prepare(mysql_url: str, sqlite_path: str, stocks: dict[str, int]) -> dict[str, dict[str, int]]:
    """Create the baseline tables in both databases and one product per `stocks` entry;
    returns {"mysql": {name: id}, "sqlite": {name: id}}."""
    ids: dict[str, dict[str, int]] = {"mysql": {}, "sqlite": {}}
    conn = mysql_connector(mysql_url)()
    with conn.cursor() as cur:
        for ddl in MYSQL_SCHEMA:
            cur.execute(ddl)
        for name, stock in stocks.items():
            cur.execute("INSERT INTO bench_products (name, stock) VALUES (%s, %s)", (name, stock))
            ids["mysql"][name] = cur.lastrowid
    conn.commit()
    conn.close()
    lite = sqlite_connector(sqlite_path)()
    for ddl in SQLITE_SCHEMA:
        lite.execute(ddl)
    for name, stock in stocks.items():
        ids["sqlite"][name] = lite.execute(
            "INSERT INTO bench_products (name, stock) VALUES (?, ?)", (name, stock)
        ).lastrowid
    lite.close()
    return ids


def mysql_sales(mysql_url: str, product_id: int) -> tuple[int, int]:
    """(stock left, orders placed) of a MySQL baseline product."""
    conn = mysql_connector(mysql_url)()
    with conn.cursor() as cur:
        cur.execute("SELECT stock FROM bench_products WHERE id = %s", (product_id,))
        (stock,) = cur.fetchone()
        cur.execute("SELECT COALESCE(SUM(quantity), 0) FROM bench_orders WHERE product_id = %s", (product_id,))
        (orders,) = cur.fetchone()
    conn.close()
    return int(stock), int(orders)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=8001)
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--mysql-url", help="mysql+pymysql://user:password@host:port/database")
    parser.add_argument("--sqlite", help="path of the SQLite file")
    args = parser.parse_args()
    serve(
        lambda: create_app(args.mysql_url, args.sqlite),
        args.host,
        args.port,
        args.workers,
        banner=f"baselines: serving http://{args.host}:{args.port}",
    )


if __name__ == "__main__":
    main()
