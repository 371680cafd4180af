"""Cost of a purchase and of a sold-out rejection, against hello-world, in one run.

Calls the WSGI app in-process (no socket, no client overhead), so the figures are the
server-side cost of each request: Falcon, validation, the use case and the database
round trips. The baseline is GET /healthz measured in the same run, on the same
machine, interleaved with the other scenarios to spread noise evenly.

    .venv/bin/python benchmarks/run_all.py [--requests 3000] [--mysql-url URL]

Prints median and p99 microseconds per request and the ratio to the baseline.
"""

from __future__ import annotations

import argparse
import io
import json
import logging
import os
import statistics
import sys
import tempfile
import time

from stockade.entrypoints.bootstrap import build_services
from stockade.entrypoints.http import create_app
from stockade.entrypoints.settings import Settings


def _environ(method: str, path: str, body: bytes = b"") -> dict:
    return {
        "REQUEST_METHOD": method, "PATH_INFO": path, "QUERY_STRING": "", "SERVER_NAME": "bench",
        "SERVER_PORT": "80", "SERVER_PROTOCOL": "HTTP/1.1", "wsgi.url_scheme": "http",
        "wsgi.input": io.BytesIO(body), "wsgi.errors": sys.stderr, "CONTENT_LENGTH": str(len(body)),
        "CONTENT_TYPE": "application/json", "wsgi.version": (1, 0), "wsgi.multithread": False,
        "wsgi.multiprocess": False, "wsgi.run_once": False,
    }


def _call(app, method: str, path: str, body: bytes = b"") -> str:
    status = []
    out = app(_environ(method, path, body), lambda s, h, exc_info=None: status.append(s))
    b"".join(out)
    if hasattr(out, "close"):
        out.close()
    return status[0]


class DropPublisher:
    """Publishes nothing: background processing must not compete with the measured requests."""

    def publish(self, messages) -> None:
        pass


def bench(label: str, url: str, requests: int, migrate: bool) -> list[tuple[str, float, float]]:
    services = build_services(Settings(database_url=url, order_processing_seconds=0), migrate_schema=migrate,
                              publisher=DropPublisher())
    app = create_app(services.shop.deps, readiness=services.readiness)
    shop = services.shop
    plenty = shop.create_product("bench plenty", "10.00", 2**31 - 1)
    sold_out = shop.create_product("bench sold out", "10.00", 0)
    buy = json.dumps({"product_id": plenty.id, "quantity": 1}).encode()
    refuse = json.dumps({"product_id": sold_out.id, "quantity": 1}).encode()
    scenarios = {
        "hello world (GET /healthz)": ("GET", "/healthz", b"", "200 OK"),
        "product read (GET /api/products/{id})": ("GET", f"/api/products/{plenty.id}", b"", "200 OK"),
        "purchase (201)": ("POST", "/api/orders/purchase", buy, "201 Created"),
        "sold-out rejection (409)": ("POST", "/api/orders/purchase", refuse, "409 Conflict"),
        "hold (201)": ("POST", "/api/holds", buy, "201 Created"),
    }
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    for name, (method, path, body, expect) in scenarios.items():  # warm caches and pools
        for _ in range(50):
            got = _call(app, method, path, body)
            assert got == expect, f"{name}: {got}"
    for i in range(requests):
        if i and i % 1000 == 0:
            print(f"  {label}: {i}/{requests} rounds", file=sys.stderr)
        for name, (method, path, body, _) in scenarios.items():
            start = time.perf_counter()
            _call(app, method, path, body)
            samples[name].append(time.perf_counter() - start)
    services.close()
    rows = []
    for name, values in samples.items():
        values.sort()
        rows.append((name, statistics.median(values) * 1e6, values[int(len(values) * 0.99)] * 1e6))
    return rows


def mysql_database(url: str | None, name: str) -> str | None:
    """`url` if given; else a fresh database `name` on the local server (root, no password),
    or None, said on stdout, when no server answers."""
    if url:
        return url
    try:
        import pymysql

        conn = pymysql.connect(host="127.0.0.1", user="root", password="", connect_timeout=2)
        with conn.cursor() as cur:
            cur.execute(f"DROP DATABASE IF EXISTS {name}")
            cur.execute(f"CREATE DATABASE {name} CHARACTER SET utf8mb4")
        conn.close()
    except Exception as exc:  # noqa: BLE001 - reported; the SQLite part still runs
        print(f"\nMySQL-compatible server not reachable ({exc}); pass --mysql-url to include it.")
        return None
    return f"mysql+pymysql://root:@127.0.0.1:3306/{name}?charset=utf8mb4"


def report(label: str, rows: list[tuple[str, float, float]]) -> None:
    base = rows[0][1]
    print(f"\n{label}")
    print(f"  {'scenario':42} {'median us':>10} {'p99 us':>10} {'x hello':>8}")
    for name, median, p99 in rows:
        print(f"  {name:42} {median:10.0f} {p99:10.0f} {median / base:8.2f}")


def main() -> int:
    logging.getLogger("stockade").setLevel(logging.ERROR)
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--requests", type=int, default=3000)
    parser.add_argument("--mysql-url", default=os.environ.get("STOCKADE_BENCH_MYSQL_URL"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        report("SQLite (embedded default, synchronous=FULL)",
               bench("sqlite", f"sqlite:///{tmp}/bench.db", args.requests, True))
    url = mysql_database(args.mysql_url, "stockade_bench")
    if url:
        report("MySQL/MariaDB (READ COMMITTED, PyMySQL)", bench("mysql", url, args.requests, True))
    return 0


if __name__ == "__main__":
    sys.exit(main())
