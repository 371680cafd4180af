"""The connection pool serves whoever asked first: a caller arriving while others wait queues behind them."""

from __future__ import annotations

import sqlite3
import threading
import time

import pytest
import sqlalchemy as sa

from stockade.adapters.sql.fair_pool import FairQueuePool


def _pool(timeout: float = 5) -> FairQueuePool:
    return FairQueuePool(
        lambda: sqlite3.connect(":memory:", check_same_thread=False), pool_size=1, max_overflow=0, timeout=timeout
    )


def _waiting(pool: FairQueuePool, count: int) -> None:
    deadline = time.monotonic() + 10
    while len(pool._gate._waiting) < count:
        assert time.monotonic() < deadline, "the caller did not queue"
        time.sleep(0.005)


def test_a_returned_connection_goes_to_the_caller_that_waited_not_to_the_one_that_returned_it():
    pool = _pool()
    held = pool.connect()
    served: list[str] = []

    def waiter() -> None:
        connection = pool.connect()
        served.append("waiter")
        connection.close()

    thread = threading.Thread(target=waiter)
    thread.start()
    _waiting(pool, 1)
    held.close()
    again = pool.connect()  # at once: a pool that lets it barge serves it before the waiter
    served.append("returner")
    again.close()
    thread.join(10)
    assert served == ["waiter", "returner"]


def test_callers_are_served_in_the_order_they_came():
    pool = _pool()
    held = pool.connect()
    served: list[int] = []

    def caller(n: int) -> None:
        connection = pool.connect()
        served.append(n)
        connection.close()

    threads = []
    for n in range(5):
        threads.append(threading.Thread(target=caller, args=(n,)))
        threads[-1].start()
        _waiting(pool, n + 1)
    held.close()
    for thread in threads:
        thread.join(10)
    assert served == [0, 1, 2, 3, 4]


def test_a_caller_that_waits_too_long_gets_the_pools_timeout_and_leaves_the_queue():
    pool = _pool(timeout=0.1)
    held = pool.connect()
    with pytest.raises(sa.exc.TimeoutError):
        pool.connect()
    assert len(pool._gate._waiting) == 0
    held.close()
    pool.connect().close()  # its place was not lost
