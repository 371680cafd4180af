"""Helpers for the SQL integration tests: Services on MariaDB, raw-SQL reads, racing threads."""

from __future__ import annotations

import threading
import traceback
from collections import Counter
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import sqlalchemy as sa

from stockade.adapters.clock import FixedClock
from stockade.application.facade import Shop
from stockade.entrypoints.bootstrap import Services, build_services
from stockade.entrypoints.settings import Settings

#: The repository root: spawned processes need it on sys.path to import this module.
REPO_ROOT = Path(__file__).resolve().parents[2]

MICROSECOND = timedelta(microseconds=1)

#: The longest any racing thread may take before the test calls it hung.
RACE_TIMEOUT_SECONDS = 60.0


def settings_for(url: str, **overrides: Any) -> Settings:
    """Settings for a test database: no simulated processing delay, no broker, no Redis."""
    values: dict[str, Any] = {"database_url": url, "order_processing_seconds": 0}
    values.update(overrides)
    return Settings(**values)


@contextmanager
def open_services(
    url: str,
    *,
    clock: FixedClock | None = None,
    migrate_schema: bool = False,
    background: bool = True,
    **overrides: Any,
) -> Iterator[Services]:
    """Services on `url`, closed afterwards.

    background=False closes the in-process task runner at once, so no `process_order` or
    deferred-payment task runs behind the test's back: the outbox keeps the messages, and
    the test drives background work itself (as a dead worker would leave it).
    """
    services = build_services(settings_for(url, **overrides), clock=clock, migrate_schema=migrate_schema)
    try:
        if not background:
            services.publisher.close()  # type: ignore[attr-defined]
        yield services
    finally:
        services.close()


def with_sweep_batch(shop: Shop, sweep_batch: int) -> Shop:
    """The same shop with a smaller sweep batch, so concurrent sweeps interleave over many batches."""
    deps = shop.deps
    return Shop(attrs.evolve(deps, policy=attrs.evolve(deps.policy, sweep_batch=sweep_batch)))


def set_clock(clock: FixedClock, moment: datetime) -> None:
    """Move a FixedClock to exactly `moment` (forwards or backwards), to the microsecond."""
    clock.advance(microseconds=(moment - clock.now()) // MICROSECOND)


# ---------------------------------------------------------------- raw SQL reads


def scalar(engine: sa.Engine, sql: str, **params: Any) -> Any:
    """One value from raw SQL, read outside every cache."""
    with engine.connect() as conn:
        return conn.execute(sa.text(sql), params).scalar_one()


def rows(engine: sa.Engine, sql: str, **params: Any) -> list[sa.Row]:
    """All rows of raw SQL, read outside every cache."""
    with engine.connect() as conn:
        return list(conn.execute(sa.text(sql), params))


def execute(engine: sa.Engine, sql: str, **params: Any) -> int:
    """Run one raw statement in its own transaction; the affected-row count."""
    with engine.begin() as conn:
        return conn.execute(sa.text(sql), params).rowcount


@attrs.frozen
class ProductRow:
    """A product's counters as the database holds them."""

    stock: int
    reserved: int
    version: int

    @property
    def available(self) -> int:
        return self.stock - self.reserved


def product_row(engine: sa.Engine, product_id: int) -> ProductRow:
    """The product's counters straight from the table (deleted or not)."""
    with engine.connect() as conn:
        row = conn.execute(
            sa.text("SELECT stock, reserved, version FROM products WHERE id = :id"), {"id": product_id}
        ).one()
    return ProductRow(int(row.stock), int(row.reserved), int(row.version))


def count_events(engine: sa.Engine, event: str) -> int:
    """How many times `event` was recorded in the event log."""
    return int(scalar(engine, "SELECT COUNT(*) FROM event_log WHERE event = :e", e=event))


# ---------------------------------------------------------------- racing threads


@attrs.frozen
class Outcome:
    """What one racing call did: returned `value`, or raised `error`."""

    thread: int
    call: int
    value: Any = None
    error: BaseException | None = None
    trace: str | None = None

    @property
    def ok(self) -> bool:
        return self.error is None


def race(threads: int, calls_per_thread: int, fn: Callable[[int, int], Any]) -> list[Outcome]:
    """Run fn(thread, call) `calls_per_thread` times on each of `threads` threads.

    The threads start together (a Barrier); every call's result or exception is kept.
    Fails (AssertionError) if a thread is still running after RACE_TIMEOUT_SECONDS.
    """
    barrier = threading.Barrier(threads)
    results: list[list[Outcome]] = [[] for _ in range(threads)]

    def run(t: int) -> None:
        barrier.wait(timeout=RACE_TIMEOUT_SECONDS)
        for c in range(calls_per_thread):
            try:
                results[t].append(Outcome(t, c, value=fn(t, c)))
            except BaseException as exc:  # noqa: BLE001 - the test judges every exception
                results[t].append(Outcome(t, c, error=exc, trace=traceback.format_exc()))

    workers = [threading.Thread(target=run, args=(t,), name=f"racer-{t}", daemon=True) for t in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join(RACE_TIMEOUT_SECONDS)
    hung = [w.name for w in workers if w.is_alive()]
    assert not hung, f"racing threads still running after {RACE_TIMEOUT_SECONDS}s: {hung}"
    return [o for per_thread in results for o in per_thread]


def race_once(*actors: Callable[[], Any]) -> list[Outcome]:
    """Run each actor once, each on its own thread, all started together."""
    return race(len(actors), 1, lambda t, _c: actors[t]())


def unexpected(outcomes: list[Outcome], *allowed: type[BaseException]) -> list[str]:
    """Tracebacks of the calls that raised anything but the allowed errors."""
    return [o.trace or repr(o.error) for o in outcomes if o.error is not None and not isinstance(o.error, allowed)]


def summary(tracebacks: list[str]) -> str:
    """An assert message for unexpected errors: each distinct last line with its count, then one traceback."""
    if not tracebacks:
        return ""
    last_lines = Counter(t.strip().splitlines()[-1] for t in tracebacks)
    counted = "\n".join(f"  {n} x {line}" for line, n in last_lines.most_common())
    return f"{len(tracebacks)} unexpected errors:\n{counted}\nfirst traceback:\n{tracebacks[0]}"


# ---------------------------------------------------------------- racing processes


def purchases_in_processes(
    url: str, product_id: int, processes: int, purchases: int, customer_id: str | None = None
) -> list[tuple[int, int, list[str]]]:
    """`processes` spawned processes, started together, each making `purchases` purchases of
    one unit (for `customer_id`, when given); each one's (sold, refused, unexpected errors)."""
    import multiprocessing
    import queue

    import pytest

    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(processes)
    results = ctx.Queue()
    workers = [
        ctx.Process(target=purchase_in_process, args=(url, product_id, purchases, barrier, results, customer_id))
        for _ in range(processes)
    ]
    # Spawned children import the racer from this repository by module name.
    with pytest.MonkeyPatch.context() as patch:
        patch.syspath_prepend(str(REPO_ROOT))
        for w in workers:
            w.start()
    try:
        return [results.get(timeout=RACE_TIMEOUT_SECONDS) for _ in workers]
    except queue.Empty:
        pytest.fail("a purchasing process did not report in time")
    finally:
        for w in workers:
            w.join(RACE_TIMEOUT_SECONDS)
            if w.is_alive():
                w.kill()


def purchase_in_process(
    url: str, product_id: int, purchases: int, barrier, results, customer_id: str | None = None
) -> None:
    """Body of one spawned process: its own Services, then `purchases` purchases of one unit
    (for `customer_id`, when given).

    Puts (sold, refused: out of stock or limit reached, [unexpected error reprs]) on `results`.
    """
    from stockade.domain.errors import LimitPerCustomerReached, OutOfStock

    sold = refused = 0
    errors: list[str] = []
    try:
        with open_services(url, migrate_schema=False) as services:
            shop = services.shop
            shop.get_product(product_id)  # connect before the start line, not after it
            barrier.wait(timeout=RACE_TIMEOUT_SECONDS)
            for _ in range(purchases):
                try:
                    shop.purchase(product_id, 1, customer_id)
                    sold += 1
                except (OutOfStock, LimitPerCustomerReached):
                    refused += 1
                except Exception:  # noqa: BLE001 - reported to the parent, which fails the test
                    errors.append(traceback.format_exc())
    except BaseException:  # noqa: BLE001
        errors.append(traceback.format_exc())
    results.put((sold, refused, errors))
