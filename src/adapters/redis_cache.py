"""Redis product cache: cache-aside, invalidated after commit, never on the critical path.

Every key carries a generation counter. A reader takes the generation before it reads
the database and may only store its copy if no writer bumped the generation meanwhile
(a Lua compare-and-set), so a slow reader cannot resurrect a row older than a write it
raced. Redis failing or hanging costs one short timeout, then the cache is bypassed
for a few seconds (a breaker); entries expire after a short TTL whatever happens.
"""

from __future__ import annotations

import json
import logging
import threading
import time
from collections.abc import Sequence
from datetime import datetime
from decimal import Decimal

import redis

from stockade.domain.model import Product

log = logging.getLogger("stockade.cache")

_FILL = """
if (redis.call('GET', KEYS[2]) or '') == ARGV[1] then
  redis.call('SET', KEYS[1], ARGV[2], 'PX', ARGV[3])
  return 1
end
return 0
"""


def _encode(p: Product) -> str:
    return json.dumps([p.id, p.name, str(p.price), p.stock, p.reserved, p.version,
                       p.created_at.isoformat(), p.updated_at.isoformat()])


def _decode(raw: bytes) -> Product:
    pid, name, price, stock, reserved, version, created, updated = json.loads(raw)
    return Product(pid, name, Decimal(price), stock, reserved, version,
                   datetime.fromisoformat(created), datetime.fromisoformat(updated))


class RedisProductCache:
    """ProductCache on Redis; degrades to 'no cache' while Redis misbehaves."""

    def __init__(self, client: redis.Redis, *, prefix: str = "stockade:product:", ttl_seconds: float = 5.0,
                 breaker_seconds: float = 2.0) -> None:
        self.client = client
        self.prefix = prefix
        self.ttl_ms = int(ttl_seconds * 1000)
        self.breaker_seconds = breaker_seconds
        self._open_until = 0.0
        self._lock = threading.Lock()
        self._missed_invalidations: set[int] = set()
        self._fill = client.register_script(_FILL)

    @classmethod
    def from_url(cls, url: str, *, socket_timeout_seconds: float = 0.25, **kwargs) -> RedisProductCache:
        """A cache on the Redis at `url`; a call waits at most `socket_timeout_seconds`
        (short: a hanging Redis must cost a request little before the breaker opens)."""
        client = redis.Redis.from_url(
            url, socket_timeout=socket_timeout_seconds, socket_connect_timeout=socket_timeout_seconds,
            retry_on_timeout=False, health_check_interval=0, max_connections=64,
        )
        return cls(client, **kwargs)

    def _keys(self, product_id: int) -> tuple[str, str]:
        return f"{self.prefix}{product_id}", f"{self.prefix}{product_id}:gen"

    def _available(self) -> bool:
        return time.monotonic() >= self._open_until

    def _failed(self, action: str, exc: Exception) -> None:
        with self._lock:
            first = self._available()
            self._open_until = time.monotonic() + self.breaker_seconds
        if first:
            log.warning("Redis cache unavailable during %s (%s); serving from the database for %ss",
                        action, exc, self.breaker_seconds)

    def _flush_missed(self) -> None:
        with self._lock:
            missed, self._missed_invalidations = self._missed_invalidations, set()
        if missed:
            self.invalidate(sorted(missed))

    def get(self, product_id: int) -> tuple[Product | None, object]:
        if not self._available():
            return None, _BYPASS
        try:
            if self._missed_invalidations:
                self._flush_missed()
                # Flushing may have just failed and opened the breaker: dialling a hanging
                # Redis again for the read would cost a second timeout on this request.
                if not self._available():
                    return None, _BYPASS
            value, gen = self.client.mget(self._keys(product_id))
        except (redis.RedisError, OSError) as exc:
            self._failed("get", exc)
            return None, _BYPASS
        ticket = gen.decode() if gen is not None else ""
        if value is None:
            return None, ticket
        try:
            return _decode(value), ticket
        except (ValueError, TypeError):
            return None, ticket

    def fill(self, product: Product, ticket: object) -> None:
        if ticket is _BYPASS or not self._available():
            return
        value_key, gen_key = self._keys(product.id)
        try:
            self._fill(keys=[value_key, gen_key], args=[ticket, _encode(product), self.ttl_ms])
        except (redis.RedisError, OSError) as exc:
            self._failed("fill", exc)

    def invalidate(self, product_ids: Sequence[int]) -> None:
        if not product_ids:
            return
        if not self._available():
            with self._lock:
                self._missed_invalidations.update(product_ids)
            return
        try:
            pipe = self.client.pipeline(transaction=False)
            for pid in product_ids:
                value_key, gen_key = self._keys(pid)
                pipe.incr(gen_key)
                pipe.pexpire(gen_key, 86_400_000)
                pipe.delete(value_key)
            pipe.execute()
        except (redis.RedisError, OSError) as exc:
            with self._lock:
                self._missed_invalidations.update(product_ids)
            self._failed("invalidate", exc)

    def ping(self) -> str | None:
        try:
            self.client.ping()
            return None
        except (redis.RedisError, OSError) as exc:
            return type(exc).__name__

    def close(self) -> None:
        self.client.close()


_BYPASS = object()
