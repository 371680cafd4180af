"""The Redis-versioned product cache in distributed mode: snapshots in each process's memory,
a write from any process outdates them all, Redis down or hanging is survived."""

from __future__ import annotations

import functools
import logging
import os
import socket
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from urllib.parse import urlsplit

import pytest
import redis
from falcon import testing

from stockade.adapters.memory_cache import VersionedProductCache
from stockade.adapters.redis_cache import RedisVersions, RoundTrips
from stockade.adapters.sql import migrate
from stockade.entrypoints import bootstrap
from stockade.entrypoints.bootstrap import Services
from stockade.entrypoints.http.app import create_app
from tests.integration.distributed_helpers import DEAD_REDIS_URL, execute, open_services


@pytest.fixture
def database(mysql_url: str) -> str:
    migrate(mysql_url)
    return mysql_url


@pytest.fixture
def patient_cache(monkeypatch: pytest.MonkeyPatch) -> None:
    """Services built now keep snapshots for the whole test and wait seconds for Redis.

    The defaults (5 s TTL, 250 ms socket timeouts) are wall-clock limits: on a loaded
    machine an entry could lapse, or a slow answer open the breaker, between two reads,
    and a test about what the cache holds would then read the database instead.
    """
    monkeypatch.setattr(bootstrap, "VersionedProductCache", functools.partial(VersionedProductCache, ttl_seconds=3600))
    monkeypatch.setattr(RedisVersions, "from_url", functools.partial(RedisVersions.from_url, socket_timeout_seconds=10))


def client_for(services: Services) -> testing.TestClient:
    return testing.TestClient(create_app(services.shop, readiness=services.readiness))


def get_product(client: testing.TestClient, product_id: int) -> dict:
    response = client.simulate_get(f"/api/products/{product_id}")
    assert response.status_code == 200, response.text
    return response.json["data"]


def generation(redis_url: str, product_id: int) -> bytes | None:
    raw = redis.Redis.from_url(redis_url)
    try:
        return raw.get(f"stockade:product:{product_id}:gen")
    finally:
        raw.close()


def test_product_reads_come_from_memory_and_a_purchase_bumps_the_redis_generation(database, redis_url, patient_cache):
    """A cached read survives a change made behind the cache's back; a purchase through the API outdates it."""
    with open_services(database, redis_url=redis_url) as services:
        client = client_for(services)
        product = services.shop.create_product("Original", "5.00", 10)

        assert get_product(client, product.id)["name"] == "Original"
        # Behind the cache's back: no version bump, so a cached read still shows the old name.
        assert execute(services.engine, "UPDATE products SET name = 'Renamed' WHERE id = :id", id=product.id) == 1
        assert get_product(client, product.id)["name"] == "Original"
        before = generation(redis_url, product.id)

        bought = client.simulate_post("/api/orders/purchase", json={"product_id": product.id, "quantity": 3})
        assert bought.status_code == 201, bought.text

        assert generation(redis_url, product.id) != before
        after = get_product(client, product.id)
        assert (after["stock"], after["available"]) == (7, 7)
        assert after["name"] == "Renamed"  # re-read from the database


def test_a_write_through_one_process_outdates_every_other_processes_memory(database, redis_url, patient_cache):
    """Two Services (two API processes, each with its own memory) on one Redis: a purchase
    through one is seen by the other's very next read."""
    with open_services(database, redis_url=redis_url) as reader, open_services(database, redis_url=redis_url) as writer:
        reading = client_for(reader)
        product = writer.shop.create_product("Original", "5.00", 10)
        assert get_product(reading, product.id)["stock"] == 10
        assert execute(reader.engine, "UPDATE products SET name = 'Renamed' WHERE id = :id", id=product.id) == 1
        assert get_product(reading, product.id)["name"] == "Original"  # from the reader's memory

        bought = client_for(writer).simulate_post(
            "/api/orders/purchase", json={"product_id": product.id, "quantity": 4}
        )
        assert bought.status_code == 201, bought.text

        after = get_product(reading, product.id)
        assert (after["name"], after["stock"], after["available"]) == ("Renamed", 6, 6)


class LocalRedisStandIn:
    """A TCP server on 127.0.0.1 that a Redis client can be pointed at; subclasses say what
    it does with each connection it accepts (`accepted`)."""

    db = "/0"

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.1)
        self.port = self.listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._accept, name=type(self).__name__, daemon=True)

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}{self.db}"

    def _accept(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except OSError:  # the 0.1 s accept timeout, or the listener closed
                continue
            self.accepted(conn)

    def accepted(self, conn: socket.socket) -> None:
        raise NotImplementedError

    def close_connections(self) -> None:
        raise NotImplementedError

    def __enter__(self):
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(5)
        self.listener.close()
        self.close_connections()


class SwitchableProxy(LocalRedisStandIn):
    """A TCP proxy to Redis that can be cut (every connection dropped, new ones closed at
    once, as a partition looks to a client) and restored."""

    def __init__(self, target_url: str) -> None:
        target = urlsplit(target_url)
        self.target = (target.hostname or "127.0.0.1", target.port or 6379)
        self.db = target.path or "/0"
        self.up = True
        self._open: list[socket.socket] = []
        self._lock = threading.Lock()
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        if not self.up:
            conn.close()
            return
        upstream = socket.create_connection(self.target, timeout=10)
        with self._lock:
            self._open += [conn, upstream]
        for src, dst in ((conn, upstream), (upstream, conn)):
            threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        for s in (src, dst):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass

    def cut(self) -> None:
        self.up = False
        with self._lock:
            cut, self._open = self._open, []
        for s in cut:
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()

    def restore(self) -> None:
        self.up = True

    def close_connections(self) -> None:
        self.cut()


def test_invalidations_missed_while_redis_was_unreachable_are_sent_when_it_answers_again(
    database, redis_url, patient_cache, monkeypatch, caplog
):
    """The writer's Redis goes away during a purchase: the purchase succeeds, the bump is kept,
    and the first time Redis answers the writer again every other process's memory is outdated."""
    caplog.set_level(logging.WARNING, logger="stockade.cache")
    # No breaker pause: "Redis answers again" is then the proxy's restore, not a clock.
    monkeypatch.setattr(
        RedisVersions,
        "from_url",
        functools.partial(RedisVersions.from_url, socket_timeout_seconds=10, breaker_seconds=0),
    )
    with (
        SwitchableProxy(redis_url) as proxy,
        open_services(database, redis_url=redis_url) as reader,
        open_services(database, redis_url=proxy.url) as writer,
    ):
        reading, writing = client_for(reader), client_for(writer)
        product = writer.shop.create_product("Lamp", "12.50", 10)
        assert get_product(reading, product.id)["stock"] == 10  # in the reader's memory now

        proxy.cut()
        bought = writing.simulate_post("/api/orders/purchase", json={"product_id": product.id, "quantity": 1})
        assert bought.status_code == 201, bought.text
        assert any("Redis cache unavailable" in r.getMessage() for r in caplog.records), caplog.text
        assert get_product(writing, product.id)["stock"] == 9  # the writer bypasses its cache meanwhile

        proxy.restore()
        get_product(writing, product.id)  # the writer's first answer from Redis sends the missed bump first
        assert get_product(reading, product.id)["stock"] == 9


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


class HangingServer(LocalRedisStandIn):
    """A TCP server that accepts connections and never answers; counts the connections."""

    def __init__(self) -> None:
        self.accepted_connections: list[socket.socket] = []
        super().__init__()

    def accepted(self, conn: socket.socket) -> None:
        self.accepted_connections.append(conn)

    def close_connections(self) -> None:
        for conn in self.accepted_connections:
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
        assert 1 <= len(hanging_redis.accepted_connections) <= 10, len(hanging_redis.accepted_connections)


def counted_trips(monkeypatch: pytest.MonkeyPatch, before_answer=None) -> list[tuple[list[str], list[str]]]:
    """Records every round trip RoundTrips sends (its bumps and reads); `before_answer(n)`,
    if given, runs after the n-th trip reached Redis and before its callers see the answer."""
    trips: list[tuple[list[str], list[str]]] = []
    send = RoundTrips._send

    def recording_send(self: RoundTrips, trip) -> None:
        trips.append((sorted(trip.bumps), sorted(trip.reads)))
        if before_answer is None:
            send(self, trip)
            return
        done, trip.done = trip.done, threading.Event()  # hold the answer back
        send(self, trip)
        before_answer(len(trips))
        done.set()

    monkeypatch.setattr(RoundTrips, "_send", recording_send)
    return trips


def test_version_checks_asked_while_a_round_trip_is_out_share_the_next_one(redis_url, monkeypatch):
    """16 concurrent version checks: the first goes at once, the 15 asked while it is out
    all go in the one round trip after it."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    versions.bump([100 + n for n in range(16)])
    expected = {n: versions.current(100 + n) for n in range(16)}
    held = threading.Event()

    def first_trip_waits_for_the_others(trip_no: int) -> None:
        if trip_no == 1:
            held.set()
            waited = time.monotonic() + 10
            while len(versions._trips._open.reads) < 15 and time.monotonic() < waited:
                time.sleep(0.001)

    trips = counted_trips(monkeypatch, first_trip_waits_for_the_others)
    tokens: dict[int, object] = {}

    def reader(n: int) -> None:
        tokens[n] = versions.current(100 + n)

    first = threading.Thread(target=reader, args=(0,))
    first.start()
    assert held.wait(10)
    others = [threading.Thread(target=reader, args=(n,)) for n in range(1, 16)]
    for t in others:
        t.start()
    for t in [first, *others]:
        t.join(10)
    versions.close()

    assert tokens == expected
    assert [len(reads) for _, reads in trips] == [1, 15]


def test_a_check_asked_while_a_round_trip_is_out_sees_a_write_that_answered_meanwhile(redis_url, monkeypatch):
    """Reader A's round trip reaches Redis; a writer in another process then bumps the product
    and answers; reader B asks while A's trip is still coming back. B must see the bump:
    it may not take the answer of a round trip that started before it did."""
    reader_side = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    writer_side = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    before = reader_side.current(7)
    tokens: dict[str, object] = {}
    b_asked = threading.Event()

    def between_send_and_answer(trip_no: int) -> None:
        if trip_no == 1:
            writer_side.bump([7])  # the write answers after this
            threading.Thread(target=lambda: (b_asked.set(), tokens.setdefault("b", reader_side.current(7)))).start()
            assert b_asked.wait(10)
            time.sleep(0.05)  # B has joined the open trip by now

    counted_trips(monkeypatch, between_send_and_answer)
    tokens["a"] = reader_side.current(7)
    deadline = time.monotonic() + 10
    while "b" not in tokens and time.monotonic() < deadline:
        time.sleep(0.01)
    after = generation(redis_url, 7)
    reader_side.close()
    writer_side.close()

    assert tokens["a"] == before  # A's trip ran before the bump
    assert tokens["b"] == after != before


def test_a_forked_process_gets_its_own_sender(redis_url):
    """A process forked after the parent used Redis (a prefork worker) still gets answers."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    versions.bump([9])
    token = versions.current(9)
    pid = os.fork()
    if pid == 0:  # the child: exit status 0 only if its own check answers the same token
        os._exit(0 if versions.current(9) == token else 1)
    _, status = os.waitpid(pid, 0)
    versions.close()
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_flushed_script_cache_costs_no_answer(redis_url):
    """The sender calls its script by hash; after Redis forgets it (a restart, SCRIPT FLUSH)
    the next bump still lands, and the script is cached again for the ones after."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    versions.bump([11])
    token = versions.current(11)
    raw = redis.Redis.from_url(redis_url)
    try:
        raw.script_flush()
        versions.bump([11])
        assert versions.current(11) == generation(redis_url, 11) != token
        assert raw.script_exists(versions._trips._sha) == [True]
    finally:
        raw.close()
        versions.close()


def test_a_trip_that_only_reads_is_one_mget_and_one_that_bumps_is_the_script(redis_url):
    """Redis runs MGET in a twentieth of the script's time: a trip with no bump sends it."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    versions.current(12)  # the sender's connection now exists
    sent: list[str] = []
    connection = versions._trips._connection
    send_command = connection.send_command

    def recording(*args, **kwargs):
        sent.append(args[0])
        return send_command(*args, **kwargs)

    connection.send_command = recording  # type: ignore[method-assign]
    try:
        before = versions.current(12)
        versions.bump([12])
        after = versions.current(12)
    finally:
        versions.close()
    assert sent == ["MGET", "EVALSHA", "MGET"]
    assert after == generation(redis_url, 12) != before


def test_a_trip_stuck_outside_its_socket_is_failed_by_the_watchdog(redis_url, monkeypatch):
    """Callers wait with no timer of their own. When the sender is stuck where no socket
    timeout reaches (a name lookup that hangs), the watchdog fails the trip after
    `wait_seconds`: the check answers None (memory bypassed) instead of hanging."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=0.1)  # wait_seconds 0.7
    stuck = threading.Event()
    monkeypatch.setattr(RoundTrips, "_run", lambda self, bumps, reads: stuck.wait(30) and [])
    answers: list[object] = []
    checker = threading.Thread(target=lambda: answers.append(versions.current(13)))
    checker.start()
    checker.join(10)
    stuck.set()
    versions.close()
    assert not checker.is_alive()
    assert answers == [None]


def test_a_check_after_close_is_refused_at_once(redis_url):
    """Callers wait with no timer of their own: after close, with no sender left, a check
    must still answer (None: memory bypassed) rather than wait for good."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    versions.current(22)
    versions.close()
    answers: list[object] = []
    checker = threading.Thread(target=lambda: answers.append(versions.current(22)))
    checker.start()
    checker.join(10)
    assert not checker.is_alive()
    assert answers == [None]


def test_close_frees_the_callers_of_a_trip_whose_sender_is_stuck(redis_url, monkeypatch):
    """The sender is stuck where no socket timeout reaches, and the watchdog's 10.5 s are far
    off: close() itself fails the trip out, and a child forked afterwards is refused too."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    stuck = threading.Event()
    monkeypatch.setattr(RoundTrips, "_run", lambda self, bumps, reads: stuck.wait(30) and [])
    answers: list[object] = []
    checker = threading.Thread(target=lambda: answers.append(versions.current(23)))
    checker.start()
    deadline = time.monotonic() + 5
    while versions._trips._out is None and time.monotonic() < deadline:
        time.sleep(0.01)
    versions.close()
    checker.join(3)
    pid = os.fork()
    if pid == 0:
        os._exit(0 if versions.current(23) is None else 1)
    _, status = os.waitpid(pid, 0)
    stuck.set()
    assert not checker.is_alive()
    assert answers == [None]
    assert os.waitstatus_to_exitcode(status) == 0


def test_a_call_with_nothing_to_send_answers_at_once(redis_url):
    """No trip is made for it, so nothing is left waiting for a trip that is never sent."""
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5)
    answers: list[object] = []
    caller = threading.Thread(target=lambda: answers.append(versions._trips.call()))
    caller.start()
    caller.join(5)
    versions.close()
    assert not caller.is_alive()
    assert answers == [{}]


def test_a_thread_that_failed_to_start_is_started_later_and_the_sender_only_once(redis_url, monkeypatch):
    """Two senders would share one connection and could read each other's replies."""
    start = threading.Thread.start
    refused: list[str] = []

    def start_unless_first_watchdog(thread: threading.Thread) -> None:
        if thread.name == "stockade-redis-watchdog" and not refused:
            refused.append(thread.name)
            raise RuntimeError("can't start new thread")
        start(thread)

    def senders() -> set[threading.Thread]:
        return {t for t in threading.enumerate() if t.name == "stockade-redis-round-trips"}

    before = senders()
    monkeypatch.setattr(threading.Thread, "start", start_unless_first_watchdog)
    versions = RedisVersions.from_url(redis_url, socket_timeout_seconds=5, breaker_seconds=0)
    try:
        assert versions.current(24) is None  # refused: the watchdog did not start
        versions.bump([24])
        assert versions.current(24) == generation(redis_url, 24)
        started = senders() - before
    finally:
        versions.close()
    assert refused == ["stockade-redis-watchdog"]
    assert len(started) == 1


def test_under_gevent_many_first_checks_at_once_all_answer(redis_url):
    """64 greenlets ask for a version at once, before the sender exists. Every call takes the
    round trips' lock, which is the native one under gevent; the sender and watchdog are
    started outside it, since starting a thread switches greenlets and a greenlet asking for
    a native lock held across that switch would block the loop for good."""
    code = f"""
        from gevent import monkey; monkey.patch_all()
        import gevent
        from stockade.adapters.redis_cache import RedisVersions
        versions = RedisVersions.from_url({redis_url!r}, socket_timeout_seconds=5)
        checks = [gevent.spawn(versions.current, 21) for _ in range(64)]
        gevent.joinall(checks, timeout=20)
        print(sum(c.successful() for c in checks), len({{c.value for c in checks}}))
    """
    child = subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, timeout=60)
    assert child.returncode == 0, child.stderr
    assert child.stdout.split() == ["64", "1"]
