"""Blocking calls that must block only their caller, also under a gevent worker."""

from __future__ import annotations

import sys
import threading
from collections.abc import Callable
from typing import Any, TypeVar

T = TypeVar("T")


def off_the_loop(call: Callable[..., T], *args: object) -> T:
    """`call(*args)`, run so that only the calling thread or greenlet waits for it.

    Under a gevent worker (threading monkey-patched) a call that blocks in C, such as
    SQLite's fsync at COMMIT or a `lockf` that waits for another process, would stop the
    worker's event loop and every request it serves; there it runs in a native thread of
    gevent's pool while the greenlet waits cooperatively. Elsewhere it simply runs.
    """
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        from gevent import get_hub

        return get_hub().threadpool.apply(call, args)
    return call(*args)


def brief_lock() -> Any:
    """A lock for critical sections that only touch memory (a few dict or set operations).

    Under a gevent worker it is the native lock, not gevent's patched one, whose Python-level
    acquire and release cost a product read about 3,000 instructions each time. Safe only
    because nothing under it can switch greenlets: never hold it across I/O, logging, or
    starting a thread, or a greenlet that asks for it meanwhile would block the whole loop."""
    monkey = sys.modules.get("gevent.monkey")
    if monkey is not None and monkey.is_module_patched("threading"):
        return monkey.get_original("_thread", "allocate_lock")()
    return threading.Lock()
