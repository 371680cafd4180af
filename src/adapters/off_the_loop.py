"""Blocking calls that must block only their caller, also under a gevent worker."""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TypeVar

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
