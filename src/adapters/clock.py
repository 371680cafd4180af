"""Clocks: the system clock, and a fixed, steppable one for tests and simulations."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone


class SystemClock:
    """UTC now, to the microsecond."""

    def now(self) -> datetime:
        return datetime.now(timezone.utc)


class FixedClock:
    """Stands still until told to move; thread-safe."""

    def __init__(self, start: datetime | None = None) -> None:
        self._now = start or datetime(2026, 1, 7, 8, 0, 0, tzinfo=timezone.utc)
        self._lock = threading.Lock()

    def now(self) -> datetime:
        with self._lock:
            return self._now

    def advance(self, seconds: float = 0, **delta: float) -> datetime:
        with self._lock:
            self._now += timedelta(seconds=seconds, **delta)
            return self._now
