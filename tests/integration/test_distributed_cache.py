"""The Redis product cache in distributed mode: it caches, writes invalidate, Redis down or hanging is survived."""
from __future__ import annotations

import functools
import logging
import socket
import threading
from collections.abc import Iterator

import pytest
import redis
from falcon import testing

from stockade.adapters.redis_cache import RedisProductCache
from stockade.adapters.sql import migrate
from stockade.entrypoints.bootstrap import Services
from stockade.entrypoints.http.app import create_app
from tests.integration.distributed_helpers import DEAD_REDIS_URL, execute, open_services


@pytest.fixture
def database(mysql_url: str) -> str:
    migrate(mysql_url)
    return mysql_url


@pytest.fixture
def patient_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services built now get a Redis cache whose entries outlive the test and whose calls wait seconds.

    The defaults (5 s TTL, 250 ms socket timeouts) are wall-clock limits: on a loaded
    machine an entry could expire, or a slow answer open the breaker, between two reads,
    and a test about what the cache holds would then read the database instead.
    """
    monkeypatch.setattr(RedisProductCache, "from_url", functools.partial(
        RedisProductCache.from_url, ttl_seconds=3600, socket_timeout_seconds=10))


def client_for(services: Services) -> testing.TestClient:
    return testing.TestClient(create_app(services.shop.deps, readiness=services.readiness))


def get_product(client: testing.TestClient, product_id: int) -> dict:
    response = client.simulate_get(f"/api/products/{product_id}")
    assert response.status_code == 200, response.text
    return response.json["data"]


def test_product_reads_come_from_redis_and_a_purchase_invalidates_them(database, redis_url, patient_cache):
    """A cached read survives a change made behind the cache's back; a purchase through the API clears it."""
    with open_services(database, redis_url=redis_url) as services:
        client = client_for(services)
        product = services.shop.create_product("Original", "5.00", 10)

        assert get_product(client, product.id)["name"] == "Original"
        raw = redis.Redis.from_url(redis_url)
        try:
            assert raw.exists(f"stockade:product:{product.id}") == 1
        finally:
            raw.close()

        # Behind the cache's back: no invalidation, so a cached read still shows the old name.
        assert execute(services.engine, "UPDATE products SET name = 'Renamed' WHERE id = :id", id=product.id) == 1
        assert get_product(client, product.id)["name"] == "Original"

        bought = client.simulate_post("/api/orders/purchase", json={"product_id": product.id, "quantity": 3})
        assert bought.status_code == 201, bought.text

        after = get_product(client, product.id)
        assert (after["stock"], after["available"]) == (7, 7)
        assert after["name"] == "Renamed"  # re-read from the database


def test_with_redis_down_reads_and_writes_work_and_readyz_names_redis(database, caplog):
    """Redis refusing connections: every request still succeeds from the database; /readyz says redis."""
    caplog.set_level(logging.WARNING, logger="stockade.cache")
    with open_services(database, redis_url=DEAD_REDIS_URL) as services:
        client = client_for(services)

        created = client.simulate_post("/api/products", json={"name": "Lamp", "price": "12.50", "stock": 4})
        assert created.status_code == 201, created.text
        product_id = created.json["data"]["id"]
        assert get_product(client, product_id)["stock"] == 4

        bought = client.simulate_post("/api/orders/purchase", json={"product_id": product_id, "quantity": 1})
        assert bought.status_code == 201, bought.text
        assert get_product(client, product_id)["stock"] == 3
        assert client.simulate_get("/api/products").status_code == 200

        ready = client.simulate_get("/readyz")
        assert ready.status_code == 503, ready.text
        assert "redis" in ready.json["message"]
        assert ready.json["checks"]["database"] == "ok"
        assert ready.json["checks"]["redis"] != "ok"
    assert any("Redis cache unavailable" in r.getMessage() for r in caplog.records), caplog.text


class HangingServer:
    """A TCP server that accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self.accepted: list[socket.socket] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name="hanging-redis", daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the 0.1 s accept timeout, or the listener closed
                continue
            self.accepted.append(conn)

    def __enter__(self) -> HangingServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()
        for conn in self.accepted:
            conn.close()


@pytest.fixture
def hanging_redis() -> Iterator[HangingServer]:
    with HangingServer() as server:
        yield server


def test_with_redis_hanging_reads_succeed_and_the_breaker_stops_retrying_it(database, hanging_redis):
    """Redis that never answers: 20 reads all succeed with the right data, and Redis is not asked each time."""
    with open_services(database, redis_url=hanging_redis.url) as services:
        client = client_for(services)
        product = services.shop.create_product("Kettle", "30.00", 6)
        services.shop.purchase(product.id, 2)

        for _ in range(20):
            data = get_product(client, product.id)
            assert (data["name"], data["stock"], data["price"]) == ("Kettle", 4, "30.00")

        # The first timeout opens the breaker; without it each of the 20 reads would dial Redis again.
        assert 1 <= len(hanging_redis.accepted) <= 10, len(hanging_redis.accepted)
