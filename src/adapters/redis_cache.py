"""Product versions on Redis: the version store that every process on every host bumps.

The snapshots themselves stay in each process's memory (VersionedProductCache); Redis holds
one generation counter per product, read with one GET per cache lookup and INCRed by every
committed write. Redis failing or hanging costs one short timeout, then the cache is
bypassed for a few seconds (a breaker); bumps that could not be sent are kept and sent as
soon as Redis answers again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Sequence

import redis

log = logging.getLogger("stockade.cache")

#: Generation keys outlive every cache entry by far: a key that expired and is INCRed
#: again restarts at 1, a value only an entry older than the cache's TTL could hold.
GENERATION_EXPIRY_MS = 7 * 86_400_000


#: Connections per process: about as many requests as a gevent worker serves at once can
#: each hold one while the worker's CPU is busy with the others.
MAX_CONNECTIONS = 512


class RedisVersions:
    """VersionStore on Redis; answers None (cache bypassed) while Redis misbehaves."""

    def __init__(self, client: redis.Redis, *, prefix: str = "stockade:product:", breaker_seconds: float = 2.0) -> None:
        self.client = client
        self.prefix = prefix
        self.breaker_seconds = breaker_seconds
        self._open_until = 0.0
        self._healthy = True
        self._lock = threading.Lock()
        self._missed_bumps: set[int] = set()

    @classmethod
    def from_url(cls, url: str, *, socket_timeout_seconds: float = 0.25, max_connections: int = MAX_CONNECTIONS,
                 **kwargs) -> RedisVersions:
        """Versions on the Redis at `url`; a call waits at most `socket_timeout_seconds`
        (short: a hanging Redis must cost a request little before the breaker opens)."""
        # A blocking pool: beyond its connections a request waits (at most the same short
        # timeout) for one to come back. The default pool raised "Too many connections" under
        # a gevent worker's hundreds of concurrent requests, which opened the breaker and sent
        # every read of the process to the database at once (a flash sale's p99 was 6 s).
        pool = redis.BlockingConnectionPool.from_url(
            url, max_connections=max_connections, timeout=socket_timeout_seconds, socket_timeout=socket_timeout_seconds,
            socket_connect_timeout=socket_timeout_seconds, retry_on_timeout=False, health_check_interval=0,
        )
        return cls(redis.Redis(connection_pool=pool, retry=None), **kwargs)  # type: ignore[arg-type]  # None: no retries

    def _key(self, product_id: int) -> str:
        return f"{self.prefix}{product_id}:gen"

    def _available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, action: str, exc: Exception) -> None:
        with self._lock:
            self._open_until = time.monotonic() + self.breaker_seconds
            first, self._healthy = self._healthy, False
        if first:
            log.warning("Redis cache unavailable during %s (%s); serving from the database, retrying every %ss",
                        action, exc, self.breaker_seconds)

    def _answered(self) -> None:
        if not self._healthy:
            self._healthy = True
            log.info("Redis cache answers again")

    def current(self, product_id: int) -> bytes | None:
        if not self._available():
            return None
        try:
            if self._missed_bumps:
                # Until they are sent, other processes may trust entries our writes outdated;
                # our own answers must not, so they wait for the flush.
                self._send_bumps(())
            generation = self.client.get(self._key(product_id))
        except (redis.RedisError, OSError) as exc:
            self._failed("get", exc)
            return None
        self._answered()
        return b"" if generation is None else generation  # type: ignore[return-value]  # bytes: no decoding

    def bump(self, product_ids: Sequence[int]) -> None:
        if not product_ids:
            return
        if not self._available():
            with self._lock:
                self._missed_bumps.update(product_ids)
            return
        try:
            self._send_bumps(product_ids)
        except (redis.RedisError, OSError) as exc:
            self._failed("invalidate", exc)
            return
        self._answered()

    def _send_bumps(self, product_ids: Sequence[int]) -> None:
        """INCR the given and every missed product in one pipeline; on failure all of them
        are kept as missed and the error propagates."""
        with self._lock:
            pending, self._missed_bumps = self._missed_bumps | set(product_ids), set()
        try:
            pipe = self.client.pipeline(transaction=False)
            for product_id in sorted(pending):
                key = self._key(product_id)
                pipe.incr(key)
                pipe.pexpire(key, GENERATION_EXPIRY_MS)
            pipe.execute()
        except BaseException:
            with self._lock:
                self._missed_bumps |= pending
            raise

    def ping(self) -> str | None:
        try:
            self.client.ping()
            return None
        except (redis.RedisError, OSError) as exc:
            return type(exc).__name__

    def close(self) -> None:
        self.client.close()
