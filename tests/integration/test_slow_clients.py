"""`stockade serve` (embedded SQLite default) under slow clients, and refusals from the server layer.

These start real `stockade serve` processes. All but the distributed-mode test need neither
MySQL nor Redis (that one takes them from conftest.py, like the other integration tests).

A slow client here sends a request's headers, with Content-Length: 100, and 10 bytes of its
body, then nothing more. With gunicorn's gthread worker each such connection held one of
the 8 threads of a worker, so 16 of them starved every other client. The gevent worker
parks each on a greenlet; the tests keep 200 open while other clients are served.
"""

from __future__ import annotations

import http.client
import json
import socket
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from stockade.adapters.sql import migrate
from tests.integration.distributed_helpers import (  # noqa: F401 - broker_url is a fixture
    broker_url,
    queue_length,
    stockade_env,
    stockade_servers,
    wait_for,
)

HOST = "127.0.0.1"
#: How many stalled connections are held open during the probes.
STALLED = 200
#: The probes that must all be answered while the stalled connections are open.
PROBES = 20
#: Generous: the probes take milliseconds when nothing blocks them.
PROBES_DEADLINE_SECONDS = 10.0
#: Timeout of each ordinary request (creating a product, a purchase, a poll).
REQUEST_TIMEOUT_SECONDS = 10.0
#: process_order's simulated work: longer than the probes may take, so they run during it.
PROCESSING_SECONDS = PROBES_DEADLINE_SECONDS + 2


@dataclass
class Server:
    port: int
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace") if self.log_path.exists() else ""

    def request(
        self, method: str, path: str, body: dict | None = None, timeout: float = REQUEST_TIMEOUT_SECONDS
    ) -> tuple[int, dict | None]:
        """(status, parsed JSON body or None) of one request on a fresh connection."""
        conn = http.client.HTTPConnection(HOST, self.port, timeout=timeout)
        try:
            payload = None if body is None else json.dumps(body).encode()
            headers = {} if body is None else {"Content-Type": "application/json"}
            conn.request(method, path, body=payload, headers=headers)
            resp = conn.getresponse()
            raw = resp.read()
            is_json = (resp.getheader("Content-Type") or "").startswith("application/json")
            return resp.status, json.loads(raw) if is_json and raw else None
        finally:
            conn.close()


@pytest.fixture
def start_server(tmp_path: Path) -> Iterator[Callable[..., Server]]:
    """Starts `stockade serve --workers N` (on a fresh SQLite file by default); stops every one started."""
    with stockade_servers(tmp_path) as serve:
        started = 0

        def start(workers: int, **variables: str) -> Server:
            nonlocal started
            env = stockade_env(
                STOCKADE_DATABASE_URL=f"sqlite:///{tmp_path / f'stockade-{started}.db'}",  # unless `variables` name one
                STOCKADE_ENV="development",
            )
            env.update(variables)
            started += 1
            _, port, log_path = serve(
                env, workers, lambda proc, port: Server(port, Path()).request("GET", "/healthz", timeout=2)[0] == 200
            )
            return Server(port, log_path)

        yield start


def stall(port: int, stack: ExitStack) -> socket.socket:
    """A connection that sent headers and 10 of its 100 body bytes, then went silent."""
    s = stack.enter_context(socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_SECONDS))
    s.sendall(
        b"POST /api/orders/purchase HTTP/1.1\r\n"
        b"Host: " + HOST.encode() + b"\r\n"
        b"Content-Type: application/json\r\n"
        b"Content-Length: 100\r\n"
        b"\r\n"
        b'{"product_'
    )
    return s


def still_waiting(s: socket.socket) -> bool:
    """True when the server neither answered nor closed this connection."""
    s.setblocking(False)
    try:
        s.recv(1)  # b"" (closed) or a response: either way, not waiting
    except BlockingIOError:
        return True
    finally:
        s.setblocking(True)
    return False


def probe_healthz(server: Server) -> list[str]:
    """GET /healthz PROBES times in a row within PROBES_DEADLINE_SECONDS; what went wrong, per probe."""
    deadline = time.monotonic() + PROBES_DEADLINE_SECONDS
    failures = []
    for i in range(PROBES):
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            failures.append(f"probe {i}: deadline passed before it was sent")
            continue
        try:
            status, _ = server.request("GET", "/healthz", timeout=remaining)
        except OSError as exc:  # socket.timeout is an OSError
            failures.append(f"probe {i}: {type(exc).__name__}: {exc}")
            continue
        if status != 200:
            failures.append(f"probe {i}: HTTP {status}")
    return failures


@contextmanager
def stalled_connections(server: Server) -> Iterator[list[socket.socket]]:
    """STALLED connections stuck mid-body; on the way out, checks the server still holds every one."""
    with ExitStack() as stack:
        stalled = [stall(server.port, stack) for _ in range(STALLED)]
        yield stalled
        still = sum(still_waiting(s) for s in stalled)
        assert still == STALLED, f"only {still} of {STALLED} stalled connections are still waiting on the server"


def assert_probes_answered(server: Server) -> None:
    failures = probe_healthz(server)
    assert not failures, (
        f"{len(failures)} of {PROBES} /healthz probes failed with {STALLED} stalled bodies "
        f"open:\n" + "\n".join(failures)
    )


def create_product(server: Server, stock: int = 1000) -> int:
    status, created = server.request("POST", "/api/products", {"name": "Flash", "price": "10.00", "stock": stock})
    assert status == 201, created
    return created["data"]["id"]


def purchase(server: Server, product_id: int) -> int:
    status, order = server.request("POST", "/api/orders/purchase", {"product_id": product_id, "quantity": 1})
    assert status == 201, order
    return order["data"]["id"]


def assert_clean_log(server: Server) -> None:
    """No gevent monkey-patching warning, no traceback: patching after fork went unnoticed."""
    log = server.log()
    assert "MonkeyPatchWarning" not in log, log
    assert "Traceback" not in log, log


@pytest.mark.parametrize("workers", [1, 2])
def test_stalled_request_bodies_do_not_delay_other_clients(start_server, workers):
    """200 connections stuck mid-body: /healthz, a purchase, task processing and the sweeper all go on."""
    server = start_server(
        workers,
        STOCKADE_ORDER_PROCESSING_SECONDS=str(PROCESSING_SECONDS),
        STOCKADE_HOLD_TTL_SECONDS="1",
        STOCKADE_SWEEP_INTERVAL_SECONDS="0.2",
    )
    product_id = create_product(server)

    with stalled_connections(server):
        order_id = purchase(server, product_id)
        status, hold = server.request("POST", "/api/holds", {"product_id": product_id, "quantity": 2})
        assert status == 201, hold
        # While the in-process task runner sleeps through process_order: the probes pass only
        # if neither the stalled bodies nor that time.sleep hold the worker.
        assert_probes_answered(server)
        wait_for(
            lambda: server.request("GET", f"/api/orders/{order_id}")[1]["data"]["status"] == "processed",
            f"order {order_id} processed by the in-process task runner",
        )
        wait_for(
            lambda: server.request("GET", f"/api/products/{product_id}")[1]["data"]["reserved"] == 0,
            "the sweeper releasing the expired hold's 2 units",
        )

    status, product = server.request("GET", f"/api/products/{product_id}")
    assert status == 200
    assert (product["data"]["stock"], product["data"]["reserved"]) == (999, 0), product
    assert_clean_log(server)


def test_stalled_request_bodies_do_not_delay_other_clients_in_distributed_mode(
    start_server,
    mysql_url,
    redis_url,
    broker_url,  # noqa: F811 - broker_url is a fixture
):
    """The same on MySQL (PyMySQL), the Redis cache (redis-py) and the Celery publisher (kombu)."""
    migrate(mysql_url)
    server = start_server(
        2, STOCKADE_DATABASE_URL=mysql_url, STOCKADE_REDIS_URL=redis_url, STOCKADE_BROKER_URL=broker_url
    )
    product_id = create_product(server)

    with stalled_connections(server):
        assert_probes_answered(server)
        status, ready = server.request("GET", "/readyz")  # pings MySQL, Redis and the broker
        assert status == 200, ready
        purchase(server, product_id)
        wait_for(lambda: queue_length(broker_url) >= 1, "process_order published to the broker")
        for _ in range(2):  # a miss, then (in either worker) a Redis hit or a miss
            status, product = server.request("GET", f"/api/products/{product_id}")
            assert status == 200
            assert product["data"]["stock"] == 999, product
    assert_clean_log(server)


# ---------------------------------------------------------------- refusals by the server layer


@pytest.fixture
def server(start_server) -> Server:
    return start_server(1)


def raw_exchange(port: int, data: bytes) -> tuple[int, dict[str, str], bytes]:
    """Send raw bytes, read until the server closes; (status, headers, body)."""
    with socket.create_connection((HOST, port), timeout=REQUEST_TIMEOUT_SECONDS) as s:
        s.sendall(data)
        chunks = []
        while chunk := s.recv(65536):
            chunks.append(chunk)
    head, _, body = b"".join(chunks).partition(b"\r\n\r\n")
    status_line, *header_lines = head.decode("latin-1").split("\r\n")
    headers = {}
    for line in header_lines:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(status_line.split()[1]), headers, body


REFUSALS = {
    "malformed request line": (b"GARBAGE\r\n\r\n", 400),
    "request line too long": (b"GET /" + b"a" * 8000 + b" HTTP/1.1\r\nHost: x\r\n\r\n", 414),
    "header too large": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Big: " + b"b" * 9000 + b"\r\n\r\n", 431),
    "too many headers": (
        b"GET /healthz HTTP/1.1\r\nHost: x\r\n" + b"".join(b"X-H%d: v\r\n" % i for i in range(150)) + b"\r\n",
        431,
    ),
    "bad HTTP version": (b"GET /healthz HTTP/9.9\r\nHost: x\r\n\r\n", 400),
    "invalid header name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBad Header: v\r\n\r\n", 400),
    "NUL in a header name": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nBa\x00d: v\r\n\r\n", 400),
    "control character in a header value": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\x01b\r\n\r\n", 400),
    "header without a colon": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nNoColon\r\n\r\n", 400),
    "obsolete line folding": (b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-A: a\r\n b\r\n\r\n", 400),
    "bare LF line ends": (b"GET /healthz HTTP/1.1\nHost: x\n\n", 400),
    "lower-case method": (b"get /healthz HTTP/1.1\r\nHost: x\r\n\r\n", 400),
    "malformed HTTP version": (b"GET /healthz HTTP/1.1x\r\nHost: x\r\n\r\n", 400),
    "Content-Length -1": (b"POST /api/holds HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400),
    "Content-Length not a number": (b"POST /api/holds HTTP/1.1\r\nHost: x\r\nContent-Length: abc\r\n\r\n", 400),
    "two Content-Lengths": (
        b"POST /api/holds HTTP/1.1\r\nHost: x\r\nContent-Length: 2\r\nContent-Length: 3\r\n\r\n{}",
        400,
    ),
    "Content-Length with chunked": (
        b"POST /api/holds HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
        400,
    ),
    "unknown transfer coding": (b"POST /api/holds HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: gzip\r\n\r\n", 400),
    "broken chunked body": (
        b"POST /api/holds HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
        b'Transfer-Encoding: chunked\r\n\r\n5\r\n{"product_id": 1}\r\n0\r\n\r\n',
        400,
    ),
}


def test_server_layer_refusals_are_json_with_a_message(server):
    """What gunicorn refuses before the app sees it comes back as JSON, with gunicorn's status."""
    for name, (data, expected) in REFUSALS.items():
        status, headers, body = raw_exchange(server.port, data)
        assert status == expected, (name, status, body)
        assert headers.get("content-type") == "application/json", (name, headers)
        assert int(headers["content-length"]) == len(body), (name, headers, body)
        document = json.loads(body)
        assert isinstance(document.get("message"), str) and document["message"], (name, document)
        assert "Traceback" not in document["message"], (name, document)
    # The server still serves after refusing all of that.
    assert server.request("GET", "/healthz")[0] == 200
    assert "Traceback" not in server.log(), server.log()


def test_a_chunked_body_is_read_through_the_real_server(server):
    created = server.request("POST", "/api/products", {"name": "Chunked", "price": "1.00", "stock": 5})
    assert created[0] == 201, created
    product_id = created[1]["data"]["id"]
    body = json.dumps({"product_id": product_id, "quantity": 2}).encode()
    chunks = b"".join(b"%x\r\n%s\r\n" % (len(part), part) for part in (body[:7], body[7:19], body[19:]))
    status, headers, answer = raw_exchange(
        server.port,
        (
            b"POST /api/orders/purchase HTTP/1.1\r\nHost: x\r\nConnection: close\r\n"
            b"Content-Type: application/json\r\nTransfer-Encoding: chunked\r\n\r\n" + chunks + b"0\r\n\r\n"
        ),
    )
    assert status == 201, answer
    assert json.loads(answer)["data"]["product"]["stock"] == 3


def test_with_json_logs_every_line_of_the_server_is_a_json_object(start_server):
    server = start_server(1, STOCKADE_LOG_FORMAT="json", STOCKADE_ORDER_PROCESSING_SECONDS="0")
    product = server.request("POST", "/api/products", {"name": "Logged", "price": "1.00", "stock": 5})[1]
    conn = http.client.HTTPConnection(HOST, server.port, timeout=REQUEST_TIMEOUT_SECONDS)
    conn.request(
        "POST",
        "/api/orders/purchase",
        body=json.dumps({"product_id": product["data"]["id"], "quantity": 1}),
        headers={"Content-Type": "application/json", "X-Request-ID": "follow-me"},
    )
    resp = conn.getresponse()
    resp.read()
    assert resp.status == 201 and resp.getheader("X-Request-ID") == "follow-me"
    raw_exchange(server.port, REFUSALS["bad HTTP version"][0])
    wait_for(lambda: "Processed" in server.log(), "the order's processing log line", REQUEST_TIMEOUT_SECONDS)
    lines = server.log().splitlines()
    records = [json.loads(line) for line in lines if line.strip() and not line.startswith("stockade: serving")]
    assert all({"time", "level", "logger", "message"} <= set(r) for r in records), records
    access = [r for r in records if r["logger"] == "stockade.access" and r["route"] == "/api/orders/purchase"]
    assert [(a["method"], a["status"], a["request_id"]) for a in access] == [("POST", 201, "follow-me")]
    assert access[0]["duration_ms"] >= 0
    processed = [r for r in records if r["message"].startswith("Order #") and "Processed" in r["message"]]
    assert [r["request_id"] for r in processed] == ["follow-me"]  # the background task's line carries it
    assert any(r["logger"] == "gunicorn.error" for r in records)
