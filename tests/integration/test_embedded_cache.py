"""`stockade serve` on a SQLite file: every worker answers product reads from its memory, and a
write from any process (the CLI, another worker) is seen by every worker's next read.

These start real `stockade serve` processes and a real `stockade holds release-expired`;
they need neither MySQL nor Redis. Which worker answers a request is read from /proc (the
worker process that holds the server side of the connection), so "every worker" is checked,
not hoped for.
"""

from __future__ import annotations

import http.client
import json
import socket
import sqlite3
import subprocess
import time
from collections.abc import Callable, Iterator
from contextlib import closing
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from tests.integration.distributed_helpers import (
    REPO_ROOT,
    STOCKADE_BIN,
    stockade_env,
    stockade_servers,
)

HOST = "127.0.0.1"
#: Reads per worker in each phase: "many", and every one of them must be right.
READS_PER_WORKER = 20
#: Connections tried before concluding that some worker never accepts one.
MAX_CONNECTIONS = 200
REQUEST_TIMEOUT_SECONDS = 10.0

pytestmark = pytest.mark.skipif(not Path("/proc/net/tcp").exists(), reason="needs Linux /proc to tell workers apart")


def call(conn: http.client.HTTPConnection, method: str, path: str, body: dict | None = None) -> tuple[int, dict]:
    """(status, JSON body) of one request on a kept-alive connection."""
    payload = None if body is None else json.dumps(body).encode()
    headers = {} if body is None else {"Content-Type": "application/json"}
    conn.request(method, path, body=payload, headers=headers)
    resp = conn.getresponse()
    raw = resp.read()
    return resp.status, json.loads(raw) if raw else {}


class Server:
    """A running `stockade serve --workers N` and the way to reach each of its workers."""

    def __init__(self, proc: subprocess.Popen, port: int, workers: int, log_path: Path) -> None:
        self.proc, self.port, self.workers, self.log_path = proc, port, workers, log_path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def worker_pids(self) -> set[int]:
        """The gunicorn workers: the children of the master (the console script's process)."""
        pids = set()
        for stat in Path("/proc").glob("[0-9]*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process exited meanwhile
            if int(fields[1]) == self.proc.pid:
                pids.add(int(stat.parent.name))
        return pids

    def connect(self) -> http.client.HTTPConnection:
        conn = http.client.HTTPConnection(HOST, self.port, timeout=REQUEST_TIMEOUT_SECONDS)
        conn.connect()
        return conn

    def serving_worker(self, conn: http.client.HTTPConnection, pids: set[int]) -> int | None:
        """The worker holding the server side of `conn` (after it answered a request on it)."""
        client_port = conn.sock.getsockname()[1]
        wanted = f"{HOST_HEX}:{self.port:04X} {HOST_HEX}:{client_port:04X}"
        inode = None
        for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
            fields = line.split()
            if f"{fields[1]} {fields[2]}" == wanted:
                inode = fields[9]
        if inode is None:
            return None
        link = f"socket:[{inode}]"
        for pid in pids:
            try:
                for fd in Path(f"/proc/{pid}/fd").iterdir():
                    try:
                        if str(fd.readlink()) == link:
                            return pid
                    except OSError:
                        continue
            except OSError:
                continue
        return None

    def one_connection_per_worker(self, product_id: int) -> dict[int, http.client.HTTPConnection]:
        """worker pid -> a kept-alive connection that worker serves (each connection has
        answered one read of the product already)."""
        pids = self.worker_pids()
        assert len(pids) == self.workers, (pids, self.log())
        found: dict[int, http.client.HTTPConnection] = {}
        spare: list[http.client.HTTPConnection] = []
        try:
            for _ in range(MAX_CONNECTIONS):
                if len(found) == self.workers:
                    return found
                conn = self.connect()
                status, body = call(conn, "GET", f"/api/products/{product_id}")
                assert status == 200, body
                worker = self.serving_worker(conn, pids)
                if worker is None or worker in found:
                    spare.append(conn)
                else:
                    found[worker] = conn
        finally:
            for conn in spare:
                conn.close()
        for conn in found.values():
            conn.close()
        raise AssertionError(
            f"after {MAX_CONNECTIONS} connections only workers {sorted(found)} of {sorted(pids)} answered one"
        )


HOST_HEX = socket.inet_aton(HOST)[::-1].hex().upper()  # /proc/net/tcp: little-endian hex


@pytest.fixture
def database_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'shop.db'}"


@pytest.fixture
def env(database_url: str) -> dict[str, str]:
    """Only the CLI releases expired holds (the server's sweeper waits an hour), and holds
    expire after one second."""
    return stockade_env(
        STOCKADE_DATABASE_URL=database_url,
        STOCKADE_ENV="development",
        STOCKADE_SWEEP_INTERVAL_SECONDS="3600",
        STOCKADE_HOLD_TTL_SECONDS="1",
    )


@pytest.fixture
def start_server(tmp_path: Path, env: dict[str, str]) -> Iterator[Callable[[int], Server]]:
    with stockade_servers(tmp_path) as serve:

        def start(workers: int) -> Server:
            def ready(proc: subprocess.Popen, port: int) -> bool:
                server = Server(proc, port, workers, Path())
                with closing(server.connect()) as conn:
                    healthy = call(conn, "GET", "/healthz")[0] == 200
                return healthy and len(server.worker_pids()) == workers

            proc, port, log_path = serve(env, workers, ready)
            return Server(proc, port, workers, log_path)

        yield start


def rename_behind_the_caches_back(database_url: str, product_id: int, name: str) -> None:
    """A write that bumps no version: a read that still sees the old name came from memory."""
    with closing(sqlite3.connect(database_url.removeprefix("sqlite:///"), timeout=30)) as db:
        with db:
            assert db.execute("UPDATE products SET name = ? WHERE id = ?", (name, product_id)).rowcount == 1


def reads(conns: dict[int, http.client.HTTPConnection], product_id: int) -> dict[int, list[dict]]:
    """READS_PER_WORKER reads of the product through each worker: worker -> the products read."""
    seen: dict[int, list[dict]] = {}
    for worker, conn in conns.items():
        for _ in range(READS_PER_WORKER):
            status, body = call(conn, "GET", f"/api/products/{product_id}")
            assert status == 200, body
            seen.setdefault(worker, []).append(body["data"])
    return seen


def distinct(seen: dict[int, list[dict]], *fields: str) -> dict[int, set[tuple]]:
    """worker -> the distinct values of `fields` its reads returned."""
    return {worker: {tuple(p[f] for f in fields) for p in products} for worker, products in seen.items()}


def close_all(conns: dict[int, http.client.HTTPConnection]) -> None:
    for conn in conns.values():
        conn.close()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_cli_sweep_in_another_process_is_seen_at_once_by_every_worker(start_server, env, database_url, workers):
    """Every worker serves the held product from memory; after `stockade holds release-expired`
    every read on every worker shows nothing reserved."""
    server = start_server(workers)
    with closing(server.connect()) as conn:
        status, created = call(conn, "POST", "/api/products", {"name": "Lamp", "price": "12.50", "stock": 10})
        assert status == 201, created
        product_id = created["data"]["id"]
        status, hold = call(conn, "POST", "/api/holds", {"product_id": product_id, "quantity": 3})
        assert status == 201, hold
    expires_at = datetime.fromisoformat(hold["expires_at"])

    conns = server.one_connection_per_worker(product_id)
    try:
        assert distinct(reads(conns, product_id), "name", "reserved") == {w: {("Lamp", 3)} for w in conns}
        rename_behind_the_caches_back(database_url, product_id, "Desk lamp")
        # Every worker answers from its memory: none of them saw the rename.
        assert distinct(reads(conns, product_id), "name", "reserved") == {w: {("Lamp", 3)} for w in conns}
    finally:
        close_all(conns)

    while datetime.now(timezone.utc) <= expires_at + timedelta(milliseconds=100):
        time.sleep(0.05)
    swept = subprocess.run(
        [STOCKADE_BIN, "holds", "release-expired"], env=env, cwd=REPO_ROOT, capture_output=True, text=True, timeout=120
    )
    assert swept.returncode == 0, swept.stderr
    assert "released 1 expired hold" in swept.stdout, swept.stdout

    conns = server.one_connection_per_worker(product_id)
    try:
        seen = reads(conns, product_id)
        assert distinct(seen, "reserved", "available") == {w: {(0, 10)} for w in conns}
        assert distinct(seen, "name") == {w: {("Desk lamp",)} for w in conns}  # re-read from the database
    finally:
        close_all(conns)
    assert "Traceback" not in server.log(), server.log()


@pytest.mark.parametrize("workers", [1, 2])
def test_a_stock_change_through_one_worker_is_seen_by_every_following_read_on_every_worker(
    start_server, database_url, workers
):
    """Each worker in turn changes the stock; right after each change every read on every worker shows it."""
    server = start_server(workers)
    with closing(server.connect()) as conn:
        status, created = call(conn, "POST", "/api/products", {"name": "Kettle", "price": "30.00", "stock": 6})
        assert status == 201, created
        product_id = created["data"]["id"]

    conns = server.one_connection_per_worker(product_id)
    try:
        assert distinct(reads(conns, product_id), "name", "stock") == {w: {("Kettle", 6)} for w in conns}
        rename_behind_the_caches_back(database_url, product_id, "Steel kettle")
        assert distinct(reads(conns, product_id), "name", "stock") == {w: {("Kettle", 6)} for w in conns}
        for i, writer in enumerate(conns):
            stock = 20 + i
            status, body = call(conns[writer], "PUT", f"/api/products/{product_id}", {"stock": stock})
            assert status == 200, body
            assert distinct(reads(conns, product_id), "name", "stock", "available") == {
                w: {("Steel kettle", stock, stock)} for w in conns
            }
    finally:
        close_all(conns)
    assert "Traceback" not in server.log(), server.log()
