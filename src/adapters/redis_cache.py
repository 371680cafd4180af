"""Product versions on Redis: the version store that every process on every host bumps.

The snapshots themselves stay in each process's memory (VersionedProductCache); Redis holds
one generation counter per product, read by every cache lookup and INCRed by every
committed write.

A process talks to Redis through one sender (`RoundTrips`) on a connection of its own: the
reads and bumps asked for while a round trip is out wait for the next one and go together,
as one script call. Under load a round trip thus serves every request that arrived during
the previous one, and a version check costs a request a share of a round trip instead of a
whole one. Joining only the *next* round trip, never the one already out, is what keeps the
rule "a write is seen by every read that starts after its response": a read's answer comes
from a round trip sent after the read began, so after the bump of every write that had
answered by then.

Redis failing or hanging costs one short timeout, then the cache is bypassed for a few
seconds (a breaker); bumps that could not be sent are kept and go with the first round trip
that succeeds, ahead of its reads.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis

from stockade.adapters.forks import call_in_forked_children
from stockade.adapters.off_the_loop import brief_lock

log = logging.getLogger("stockade.cache")

#: Generation keys outlive every cache entry by far: a key that expired and is INCRed
#: again restarts at 1, a value only an entry older than the cache's TTL could hold.
GENERATION_EXPIRY_MS = 7 * 86_400_000

#: Bumps first (so the reads of the same round trip see them), then the reads.
#: KEYS: the keys to bump, then the keys to read; ARGV: the number of keys to bump, the expiry.
_ROUND_TRIP_SCRIPT = """
local bumps = tonumber(ARGV[1])
for i = 1, bumps do
  redis.call('INCR', KEYS[i])
  redis.call('PEXPIRE', KEYS[i], ARGV[2])
end
if #KEYS > bumps then
  return redis.call('MGET', unpack(KEYS, bumps + 1))
end
return {}
"""


class RoundTripFailed(Exception):
    """The round trip a call joined failed or did not come back in time."""


class _Trip:
    """What one round trip carries and what it brought back."""

    __slots__ = ("bumps", "reads", "done", "answers", "error", "deadline")

    def __init__(self) -> None:
        self.bumps: set[str] = set()
        self.reads: set[str] = set()
        self.done = threading.Event()
        self.answers: dict[str, bytes | None] = {}
        self.error: BaseException | None = None
        self.deadline: float | None = None  # set by the trip's first caller


class RoundTrips:
    """One sender per process that carries every caller's reads and bumps to Redis.

    A caller adds its keys to the open trip and waits for it; the sender closes the open
    trip only when it sends it, so whatever a caller added goes in a round trip that
    started after the call did. The sender is a daemon thread (a greenlet under a gevent
    worker), started on first use, and again in a forked child (a prefork worker), which
    inherits neither the thread nor a trip it had out.

    A caller waits without a timer of its own: arming and cancelling one per call cost a
    request as much as the rest of the call. The sender's socket timeouts bound a trip, and
    a watchdog (a second daemon thread) fails any trip still unanswered `wait_seconds` after
    its first caller joined it, whatever the sender is stuck in (a slow name lookup, say).
    """

    def __init__(self, client: redis.Redis, *, wait_seconds: float) -> None:
        self._sha = client.register_script(_ROUND_TRIP_SCRIPT).sha
        self._pool = client.connection_pool
        self._connection: redis.Connection | None = None
        self._wait_seconds = wait_seconds
        self._closed = False
        self._start_over()
        call_in_forked_children(self._start_over)

    def _start_over(self) -> None:
        self._connection = None  # a forked child must not talk on its parent's socket
        self._lock = brief_lock()  # every call takes it: held for a few set operations only
        self._starting = threading.Lock()  # starting a thread may switch greenlets
        self._wake = threading.Event()
        self._open = _Trip()
        self._out: _Trip | None = None
        self._sender_started = self._watchdog_started = False  # the watchdog starts second

    def call(self, *, bumps: Sequence[str] = (), reads: Sequence[str] = ()) -> dict[str, bytes | None]:
        """Send these bumps and reads in the next round trip; the values read, by key.
        Raises RoundTripFailed when that trip fails or takes longer than allowed."""
        if self._closed:  # also in a child forked after close: no thread would answer
            raise RoundTripFailed("closed")
        if not (bumps or reads):
            return {}
        if not self._watchdog_started:
            self._start_threads()
        with self._lock:
            trip = self._open
            trip.bumps.update(bumps)
            trip.reads.update(reads)
            first = trip.deadline is None
            if first:
                trip.deadline = time.monotonic() + self._wait_seconds
        if first:  # the sender clears `_wake` only as it takes the open trip: one wake-up each
            self._wake.set()
        trip.done.wait()
        if trip.error is not None:
            raise RoundTripFailed(str(trip.error)) from trip.error
        return trip.answers

    def _start_threads(self) -> None:
        """Each thread once, whatever failed before: two senders would share one connection."""
        with self._starting:
            try:
                if not self._sender_started:
                    threading.Thread(target=self._send_forever, name="stockade-redis-round-trips", daemon=True).start()
                    self._sender_started = True
                if not self._watchdog_started:
                    threading.Thread(target=self._watch, name="stockade-redis-watchdog", daemon=True).start()
                    self._watchdog_started = True
            except RuntimeError as exc:  # "can't start new thread"
                raise RoundTripFailed(f"cannot start the Redis sender: {exc}") from exc

    def close(self) -> None:
        """Stop the threads. The open trip and the one out (whose sender may never return) are
        failed now, so their callers get RoundTripFailed at once; later calls are refused."""
        with self._lock:
            self._closed = True
            open_trip, out_trip = self._open, self._out
        for trip in (open_trip, out_trip):
            if trip is not None and not trip.done.is_set():
                trip.error = RoundTripFailed("closed")
                trip.done.set()
        self._wake.set()
        if self._connection is not None:
            self._connection.disconnect()

    def _send_forever(self) -> None:
        wake, lock = self._wake, self._lock  # a fork replaces them; this thread ends with its process
        while True:
            wake.wait()
            fresh = _Trip()  # made before the lock: nothing that may collect garbage under it
            with lock:
                # Cleared before the swap: a caller that adds to the new open trip sets it again.
                wake.clear()
                if self._closed:
                    return
                trip, self._open = self._open, fresh
                self._out = trip
            self._send(trip)  # never empty: a call with nothing to send makes no trip

    def _send(self, trip: _Trip) -> None:
        bumps, reads = sorted(trip.bumps), sorted(trip.reads)
        try:
            values = self._run(bumps, reads)
            trip.answers = dict(zip(reads, values, strict=True))
        except BaseException as exc:  # handed to every caller of this trip
            trip.error = exc
        finally:
            trip.done.set()

    def _watch(self) -> None:
        """Fails the trip out and the open one once their callers have waited `wait_seconds`.
        No lock: a trip swapped meanwhile is past its deadline all the same."""
        while not self._closed:
            time.sleep(self._wait_seconds / 4)
            now = time.monotonic()
            for trip in (self._out, self._open):
                if trip is not None and trip.deadline is not None and trip.deadline < now and not trip.done.is_set():
                    trip.error = RoundTripFailed(f"no answer from Redis within {self._wait_seconds}s")
                    trip.done.set()

    def _run(self, bumps: list[str], reads: list[str]) -> list[bytes | None]:
        """One command on the sender's own connection: MGET when the trip only reads (Redis
        runs it in a twentieth of the script's time), else the script. The client's command
        layer (a pool checkout with its readiness poll, retries, hooks) cost as much CPU as
        the round trip. A failed or timed-out call drops the connection (redis-py does); the
        next reconnects."""
        if self._connection is None:
            self._connection = self._pool.connection_class(**self._pool.connection_kwargs)
        connection = self._connection
        if not bumps:
            connection.send_command("MGET", *reads)
            return connection.read_response()
        keys, args = [*bumps, *reads], [len(bumps), GENERATION_EXPIRY_MS]
        try:
            connection.send_command("EVALSHA", self._sha, len(keys), *keys, *args)
            return connection.read_response()
        except redis.exceptions.NoScriptError:  # a restarted or flushed Redis: EVAL caches it again
            connection.send_command("EVAL", _ROUND_TRIP_SCRIPT, len(keys), *keys, *args)
            return connection.read_response()


class RedisVersions:
    """VersionStore on Redis; answers None (cache bypassed) while Redis misbehaves."""

    def __init__(
        self,
        client: redis.Redis,
        *,
        prefix: str = "stockade:product:",
        breaker_seconds: float = 2.0,
        wait_seconds: float = 1.0,
    ) -> None:
        self.client = client
        self.prefix = prefix
        self.breaker_seconds = breaker_seconds
        self._trips = RoundTrips(client, wait_seconds=wait_seconds)
        self._open_until = 0.0
        self._healthy = True
        self._lock = threading.Lock()
        self._missed_bumps: set[str] = set()

    @classmethod
    def from_url(cls, url: str, *, socket_timeout_seconds: float = 0.25, **kwargs) -> RedisVersions:
        """Versions on the Redis at `url`; a round trip waits at most `socket_timeout_seconds`
        (short: a hanging Redis must cost a request little before the breaker opens)."""
        # The sender opens its own connection from these settings; the pool serves ping
        # (readiness), with one spare for a reconnect.
        pool = redis.BlockingConnectionPool.from_url(
            url,
            max_connections=2,
            timeout=socket_timeout_seconds,
            socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds,
            retry_on_timeout=False,
            health_check_interval=0,
        )
        # A caller waits for the round trip out before its own, each bounded by the timeout.
        kwargs.setdefault("wait_seconds", 2 * socket_timeout_seconds + 0.5)
        return cls(redis.Redis(connection_pool=pool, retry=None), **kwargs)  # type: ignore[arg-type]  # None: no retries

    def _key(self, product_id: int) -> str:
        return f"{self.prefix}{product_id}:gen"

    def current(self, product_id: int) -> bytes | None:
        if time.monotonic() < self._open_until:
            return None
        key = self._key(product_id)
        try:
            # Until missed bumps are sent, other processes may trust entries our writes
            # outdated; our own answers must not, so they go first, in the same trip.
            generation = self._round_trip("get", reads=(key,))[key]
        except RoundTripFailed:
            return None
        return b"" if generation is None else generation

    def bump(self, product_ids: Sequence[int]) -> None:
        if not product_ids:
            return
        keys = [self._key(product_id) for product_id in product_ids]
        if time.monotonic() < self._open_until:
            with self._lock:
                self._missed_bumps.update(keys)
            return
        try:
            self._round_trip("invalidate", bumps=keys)
        except RoundTripFailed:
            pass  # kept as missed by _round_trip

    def _round_trip(self, action: str, *, bumps: Sequence[str] = (), reads: Sequence[str] = ()) -> dict:
        missed: set[str] = set()
        if self._missed_bumps:
            with self._lock:
                missed, self._missed_bumps = self._missed_bumps, set()
        try:
            answers = self._trips.call(bumps=[*missed, *bumps], reads=reads)
        except RoundTripFailed as exc:
            with self._lock:
                self._missed_bumps.update(missed, bumps)
                self._open_until = time.monotonic() + self.breaker_seconds
                first, self._healthy = self._healthy, False
            if first:
                log.warning(
                    "Redis cache unavailable during %s (%s); serving from the database, retrying every %ss",
                    action,
                    exc,
                    self.breaker_seconds,
                )
            raise
        if not self._healthy:
            self._healthy = True
            log.info("Redis cache answers again")
        return answers

    def ping(self) -> str | None:
        try:
            self.client.ping()
            return None
        except (redis.RedisError, OSError) as exc:
            return type(exc).__name__

    def close(self) -> None:
        self._trips.close()
        self.client.close()
