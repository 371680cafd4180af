"""Requests over real sockets: `stockade serve` (gunicorn) against a keep-alive HTTP client.

Where run_all.py measures the server-side cost in-process, this measures what a client
sees: the TCP round trip, HTTP parsing in gunicorn, and the request itself. Two parts,
on the embedded default (SQLite) and, when one answers, on MySQL/MariaDB:

1. latency: one client, scenarios taking turns in blocks of 25 requests, median and p99
   per scenario and the ratio to hello-world (GET /healthz) measured in the same run;
2. flash sale: CLIENTS concurrent clients hammer one product of STOCK units; prints
   throughput and checks the books: exactly STOCK sold, the rest 409, no 5xx, and
   `stockade check` clean.

    .venv/bin/python benchmarks/http_bench.py [--rounds 1000] [--clients 8] [--attempts 2000]
        [--mysql-url URL | --no-mysql]
"""

from __future__ import annotations

import argparse
import http.client
import json
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from pathlib import Path

from run_all import mysql_database  # benchmarks/ is on sys.path when a script here runs

ROOT = Path(__file__).resolve().parent.parent
STOCKADE = str(Path(sys.executable).with_name("stockade"))
BLOCK = 25


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Server:
    """`stockade serve` in a subprocess, ended on exit."""

    def __init__(self, env: dict[str, str], log: Path) -> None:
        self.port = free_port()
        self.env = {**os.environ, **env, "STOCKADE_ENV": "development", "STOCKADE_ADMIN_TOKEN": "",
                    "STOCKADE_WEBHOOK_SECRET": ""}
        self.log_path = log
        self.proc: subprocess.Popen | None = None

    def __enter__(self) -> Server:
        self.log = open(self.log_path, "w")  # noqa: SIM115 - closed in __exit__
        self.proc = subprocess.Popen([STOCKADE, "serve", "--host", "127.0.0.1", "--port", str(self.port)],
                                     env=self.env, stdout=self.log, stderr=subprocess.STDOUT, cwd=ROOT)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise SystemExit(f"stockade serve exited ({self.proc.returncode}); see {self.log_path}")
            try:
                status, _ = Client(self.port).request("GET", "/healthz")
                if status == 200:
                    return self
            except OSError:
                time.sleep(0.2)
        raise SystemExit(f"stockade serve did not answer within 60 s; see {self.log_path}")

    def __exit__(self, *exc) -> None:
        if self.proc is not None:
            self.proc.terminate()
            try:
                self.proc.wait(20)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        self.log.close()


class Client:
    """One keep-alive connection."""

    def __init__(self, port: int) -> None:
        self.conn = http.client.HTTPConnection("127.0.0.1", port, timeout=30)

    def request(self, method: str, path: str, body: dict | None = None) -> tuple[int, bytes]:
        data = None if body is None else json.dumps(body).encode()
        headers = {"Content-Type": "application/json"} if data is not None else {}
        self.conn.request(method, path, body=data, headers=headers)
        response = self.conn.getresponse()
        return response.status, response.read()


def latency(port: int, rounds: int) -> list[tuple[str, float, float]]:
    client = Client(port)
    status, body = client.request("POST", "/api/products", {"name": "bench plenty", "price": "10.00",
                                                            "stock": 2**31 - 1})
    assert status == 201, body
    plenty = json.loads(body)["data"]["id"]
    status, body = client.request("POST", "/api/products", {"name": "bench gone", "price": "10.00", "stock": 0})
    assert status == 201, body
    gone = json.loads(body)["data"]["id"]
    scenarios = {
        "hello world (GET /healthz)": ("GET", "/healthz", None, 200),
        "product read (GET /api/products/{id})": ("GET", f"/api/products/{plenty}", None, 200),
        "purchase (201)": ("POST", "/api/orders/purchase", {"product_id": plenty, "quantity": 1}, 201),
        "sold-out rejection (409)": ("POST", "/api/orders/purchase", {"product_id": gone, "quantity": 1}, 409),
        "hold (201)": ("POST", "/api/holds", {"product_id": plenty, "quantity": 1}, 201),
    }
    samples: dict[str, list[float]] = {name: [] for name in scenarios}
    for name, (method, path, body, expect) in scenarios.items():  # warm up
        for _ in range(30):
            got, text = client.request(method, path, body)
            assert got == expect, f"{name}: {got} {text[:200]!r}"
    # Scenarios take turns in blocks of BLOCK requests: noise spreads over all of them,
    # while the background work a purchase queues (process_order) mostly lands in its own block.
    for i in range(0, rounds, BLOCK):
        if i and i % 250 == 0:
            print(f"  latency: {i}/{rounds} rounds", file=sys.stderr, flush=True)
        for name, (method, path, body, _) in scenarios.items():
            for _ in range(BLOCK):
                start = time.perf_counter()
                client.request(method, path, body)
                samples[name].append(time.perf_counter() - start)
    rows = []
    for name, values in samples.items():
        values.sort()
        rows.append((name, statistics.median(values) * 1e6, values[int(len(values) * 0.99)] * 1e6))
    return rows


def flash_sale(port: int, clients: int, attempts: int, stock: int) -> dict:
    status, body = Client(port).request("POST", "/api/products", {"name": "flash", "price": "99.00", "stock": stock})
    assert status == 201, body
    product = json.loads(body)["data"]["id"]
    statuses: Counter[int] = Counter()
    lock = threading.Lock()
    barrier = threading.Barrier(clients)

    def buyer(n: int) -> None:
        client = Client(port)
        barrier.wait()
        mine: Counter[int] = Counter()
        for _ in range(n):
            got, _ = client.request("POST", "/api/orders/purchase", {"product_id": product, "quantity": 1})
            mine[got] += 1
        with lock:
            statuses.update(mine)

    per_client = attempts // clients
    threads = [threading.Thread(target=buyer, args=(per_client,)) for _ in range(clients)]
    start = time.perf_counter()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    elapsed = time.perf_counter() - start
    status, body = Client(port).request("GET", f"/api/products/{product}")
    after = json.loads(body)["data"]
    return {"requests": per_client * clients, "seconds": elapsed, "statuses": dict(sorted(statuses.items())),
            "stock_after": after["stock"], "reserved_after": after["reserved"], "stock": stock}


def report(label: str, rows: list[tuple[str, float, float]], sale: dict, check_ok: bool) -> bool:
    base = rows[0][1]
    print(f"\n{label}")
    print(f"  {'scenario':42} {'median us':>10} {'p99 us':>10} {'x hello':>8}")
    for name, median, p99 in rows:
        print(f"  {name:42} {median:10.0f} {p99:10.0f} {median / base:8.2f}")
    sold = sale["statuses"].get(201, 0)
    refused = sale["statuses"].get(409, 0)
    errors = sum(n for code, n in sale["statuses"].items() if code >= 500)
    ok = (sold == sale["stock"] and refused == sale["requests"] - sold and errors == 0
          and sale["stock_after"] == 0 and sale["reserved_after"] == 0 and check_ok)
    print(f"  flash sale: {sale['requests']} purchases of a stock of {sale['stock']} in {sale['seconds']:.2f} s "
          f"({sale['requests'] / sale['seconds']:.0f} req/s): statuses {sale['statuses']}, "
          f"stock after {sale['stock_after']}, stockade check {'clean' if check_ok else 'DRIFT'} "
          f"-> {'OK' if ok else 'WRONG'}")
    return ok


def run(label: str, env: dict[str, str], args, tmp: Path) -> bool:
    print(f"{label}: starting stockade serve", file=sys.stderr, flush=True)
    with Server(env, tmp / f"{label.split()[0].split('/')[0].lower()}-serve.log") as server:
        rows = latency(server.port, args.rounds)
        print(f"  flash sale: {args.clients} clients", file=sys.stderr, flush=True)
        sale = flash_sale(server.port, args.clients, args.attempts, args.stock)
    check = subprocess.run([STOCKADE, "check"], env={**os.environ, **env}, capture_output=True, text=True, cwd=ROOT)
    return report(label, rows, sale, check.returncode == 0)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=1000)
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--attempts", type=int, default=2000)
    parser.add_argument("--stock", type=int, default=100)
    parser.add_argument("--mysql-url", default=os.environ.get("STOCKADE_BENCH_MYSQL_URL"))
    parser.add_argument("--no-mysql", action="store_true")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory() as tmp_dir:
        tmp = Path(tmp_dir)
        ok &= run("SQLite (embedded default)", {"STOCKADE_DATABASE_URL": f"sqlite:///{tmp}/http.db"}, args, tmp)
        url = None if args.no_mysql else mysql_database(args.mysql_url, "stockade_httpbench")
        if url:
            migrated = subprocess.run([STOCKADE, "migrate"], env={**os.environ, "STOCKADE_DATABASE_URL": url},
                                      capture_output=True, text=True, cwd=ROOT)
            if migrated.returncode != 0:
                raise SystemExit(f"stockade migrate failed:\n{migrated.stderr}")
            ok &= run("MySQL/MariaDB (embedded tasks)", {"STOCKADE_DATABASE_URL": url}, args, tmp)
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
