"""In-process product cache (one process only) and the null cache."""

from __future__ import annotations

import threading
import time
from collections.abc import Sequence

from stockade.domain.model import Product


class InProcessProductCache:
    """A dict with a TTL and per-key generations, so a fill never resurrects a stale row."""

    def __init__(self, ttl_seconds: float = 30.0, max_entries: int = 10_000) -> None:
        self._ttl = ttl_seconds
        self._max = max_entries
        self._entries: dict[int, tuple[float, Product]] = {}
        self._generations: dict[int, int] = {}
        self._lock = threading.Lock()

    def get(self, product_id: int) -> tuple[Product | None, object]:
        with self._lock:
            ticket = self._generations.get(product_id, 0)
            entry = self._entries.get(product_id)
            if entry is not None and entry[0] > time.monotonic():
                return entry[1], ticket
            return None, ticket

    def fill(self, product: Product, ticket: object) -> None:
        with self._lock:
            if self._generations.get(product.id, 0) != ticket:
                return
            if len(self._entries) >= self._max:
                self._entries.clear()  # crude but bounded; the database is the truth
            self._entries[product.id] = (time.monotonic() + self._ttl, product)

    def invalidate(self, product_ids: Sequence[int]) -> None:
        with self._lock:
            for pid in product_ids:
                self._entries.pop(pid, None)
                self._generations[pid] = self._generations.get(pid, 0) + 1


class NullProductCache:
    """No cache: every read goes to the database (several processes without Redis)."""

    def get(self, product_id: int) -> tuple[Product | None, object]:
        return None, None

    def fill(self, product: Product, ticket: object) -> None:
        pass

    def invalidate(self, product_ids: Sequence[int]) -> None:
        pass
