"""The embedded adapters: the versioned product cache and the in-process task runner."""

from __future__ import annotations

import threading
import time
from datetime import datetime, timedelta, timezone
from decimal import Decimal

import attrs
import pytest

from stockade.adapters.inprocess_tasks import InProcessTaskRunner, PeriodicJob, PeriodicRunner
from stockade.adapters.memory_cache import LocalVersions, NullProductCache, VersionedProductCache
from stockade.application.ports import TaskMessage
from stockade.domain.model import Product, ProductSnapshot

AT = datetime(2026, 1, 7, 8, 0, tzinfo=timezone.utc)
PHONE = Product(1, "Phone", Decimal("100.00"), 10, 0, 1, AT, AT)


def snapshot(product: Product = PHONE, next_lapse_at: datetime | None = None) -> ProductSnapshot:
    return ProductSnapshot(product, next_lapse_at)


class SteppedTime:
    """A monotonic clock the test moves by hand."""

    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class UnreachableVersions:
    """A version store that cannot answer (Redis down), recording the bumps it was asked for."""

    def __init__(self) -> None:
        self.bumped: list[int] = []

    def current(self, product_id: int) -> None:
        return None

    def bump(self, product_ids) -> None:
        self.bumped.extend(product_ids)


def test_cache_serves_a_filled_snapshot_until_it_is_invalidated():
    cache = VersionedProductCache(LocalVersions())
    _, ticket = cache.get(1)
    cache.fill(snapshot(), ticket)
    assert cache.get(1)[0] == snapshot()
    cache.invalidate([1])
    assert cache.get(1)[0] is None


def test_cache_keeps_the_claims_deadline_of_a_snapshot():
    cache = VersionedProductCache(LocalVersions())
    lapse = AT + timedelta(minutes=2)
    cache.fill(snapshot(next_lapse_at=lapse), cache.get(1)[1])
    assert cache.get(1)[0].next_lapse_at == lapse


def test_cache_refuses_a_fill_with_a_ticket_taken_before_an_invalidation():
    cache = VersionedProductCache(LocalVersions())
    _, ticket = cache.get(1)  # a slow reader misses and goes to the database...
    cache.invalidate([1])  # ...while a write commits...
    cache.fill(snapshot(), ticket)  # ...then it tries to keep the row it read before the write
    assert cache.get(1)[0] is None
    _, fresh = cache.get(1)
    cache.fill(snapshot(attrs.evolve(PHONE, stock=9)), fresh)
    assert cache.get(1)[0].product.stock == 9


def test_a_write_seen_through_another_cache_on_the_same_versions_outdates_this_one():
    """Two caches sharing one version store (as processes share a file or Redis)."""
    versions = LocalVersions()
    reader, writer = VersionedProductCache(versions), VersionedProductCache(versions)
    reader.fill(snapshot(), reader.get(1)[1])
    writer.invalidate([1])
    assert reader.get(1)[0] is None


def test_cache_invalidation_of_one_product_keeps_the_others():
    cache = VersionedProductCache(LocalVersions())
    other = snapshot(attrs.evolve(PHONE, id=2))
    for snap in (snapshot(), other):
        cache.fill(snap, cache.get(snap.product.id)[1])
    cache.invalidate([1])
    assert cache.get(2)[0] == other


def test_products_sharing_a_version_slot_only_cost_each_other_a_miss():
    cache = VersionedProductCache(LocalVersions(slots=4))
    neighbour = attrs.evolve(PHONE, id=5)  # 5 % 4 == 1 % 4
    cache.fill(snapshot(neighbour), cache.get(5)[1])
    cache.invalidate([1])
    assert cache.get(5)[0] is None
    cache.fill(snapshot(neighbour), cache.get(5)[1])
    assert cache.get(5)[0] == snapshot(neighbour)


def test_cache_entry_past_its_ttl_is_a_miss():
    time = SteppedTime()
    cache = VersionedProductCache(LocalVersions(), ttl_seconds=5, monotonic=time)
    cache.fill(snapshot(), cache.get(1)[1])
    time.now += 4.9
    assert cache.get(1)[0] == snapshot()
    time.now += 0.2
    assert cache.get(1)[0] is None


def test_cache_stays_bounded_and_evicts_the_least_recently_filled():
    cache = VersionedProductCache(LocalVersions(), max_entries=2)
    for pid in (1, 2, 1, 3):  # 1 is filled again after 2, so 2 is the oldest when 3 comes
        cache.fill(snapshot(attrs.evolve(PHONE, id=pid)), cache.get(pid)[1])
    assert [cache.get(pid)[0] is not None for pid in (1, 2, 3)] == [True, False, True]


def test_with_the_version_store_unreachable_every_read_misses_and_nothing_is_kept():
    versions = UnreachableVersions()
    cache = VersionedProductCache(versions)
    found, ticket = cache.get(1)
    cache.fill(snapshot(), ticket)
    assert found is None
    assert cache.get(1)[0] is None
    cache.invalidate([1])
    assert versions.bumped == [1]  # the store keeps it to replay when it answers again


class DeafVersions(LocalVersions):
    """Versions whose bumps are lost on their way to the store (a writer partitioned from it)."""

    def bump(self, product_ids) -> None:
        pass


def test_an_invalidation_the_store_cannot_hear_still_drops_this_processes_copy():
    cache = VersionedProductCache(DeafVersions())
    cache.fill(snapshot(), cache.get(1)[1])
    cache.invalidate([1])
    assert cache.get(1)[0] is None


def test_cache_readers_and_writers_on_many_threads_never_keep_a_stale_snapshot():
    """Writers bump the stock and invalidate; readers fill what they read; a hit is never older than the last write."""
    cache = VersionedProductCache(LocalVersions())
    lock = threading.Lock()
    state = {"stock": 0, "acknowledged": 0}
    stale: list[tuple[int, int]] = []
    start = threading.Barrier(8)

    def reader() -> None:
        start.wait()
        for _ in range(2000):
            with lock:
                floor = state["acknowledged"]  # every write whose response was sent before this get
            found, ticket = cache.get(1)
            if found is not None:
                if found.product.stock < floor:
                    stale.append((found.product.stock, floor))
                continue
            with lock:
                row = attrs.evolve(PHONE, stock=state["stock"])  # "the database read"
            cache.fill(snapshot(row), ticket)

    def writer() -> None:
        start.wait()
        for _ in range(500):
            with lock:
                state["stock"] += 1  # "the commit"
                mine = state["stock"]
            cache.invalidate([1])
            with lock:  # "the response"
                state["acknowledged"] = max(state["acknowledged"], mine)

    threads = [threading.Thread(target=reader) for _ in range(6)] + [threading.Thread(target=writer) for _ in range(2)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    assert stale == []


def test_null_cache_never_hits():
    cache = NullProductCache()
    found, ticket = cache.get(1)
    cache.fill(snapshot(), ticket)
    assert cache.get(1)[0] is None


@pytest.fixture
def runner():
    runner = InProcessTaskRunner(threads=1)
    yield runner
    runner.close()


def test_runner_runs_the_handler_registered_for_a_published_task(runner):
    seen, done = [], threading.Event()
    runner.register("t.ok", lambda m: (seen.append(m.payload), done.set()))
    runner.publish([TaskMessage(1, "t.ok", {"order_id": 7})])
    assert done.wait(30)  # generous: a loaded CI machine may be slow to schedule the runner thread
    assert seen == [{"order_id": 7}]


def test_runner_survives_a_failing_handler_and_an_unknown_task(runner, caplog):
    done = threading.Event()

    def explode(message):
        raise RuntimeError("boom")

    runner.register("t.fail", explode)
    runner.register("t.ok", lambda m: done.set())
    runner.publish([TaskMessage(1, "t.fail", {}), TaskMessage(2, "t.unknown", {}), TaskMessage(3, "t.ok", {})])
    assert done.wait(30)  # generous: a loaded CI machine may be slow to schedule the runner thread
    failures = [r for r in caplog.records if r.name == "stockade.tasks" and r.levelname == "ERROR"]
    assert any("t.fail" in r.getMessage() and r.exc_info for r in failures)
    assert any("t.unknown" in r.getMessage() for r in failures)


def test_publishing_to_a_closed_runner_does_not_raise():
    runner = InProcessTaskRunner(threads=1)
    runner.register("t.ok", lambda m: None)
    runner.close()
    runner.publish([TaskMessage(1, "t.ok", {})])


def test_runner_starts_threads_as_messages_wait_up_to_its_size_and_runs_them_at_once():
    """Tasks that wait run side by side: 5 waiting tasks on a runner of 5 are all running together."""
    runner = InProcessTaskRunner(threads=5)
    started, release = threading.Barrier(6), threading.Event()
    runner.register("t.wait", lambda m: (started.wait(30), release.wait(30)))
    try:
        runner.publish([TaskMessage(n, "t.wait", {}) for n in range(5)])
        started.wait(30)  # raises BrokenBarrierError unless all five run at once
    finally:
        release.set()
        runner.close()


def test_periodic_runner_runs_each_job_on_its_own_thread_so_a_slow_one_delays_no_other():
    slow_started, stop_slow, fast_ran_thrice = threading.Event(), threading.Event(), threading.Event()
    fast_runs = []

    def fast() -> None:
        fast_runs.append(slow_started.is_set())
        if fast_runs.count(True) >= 3:
            fast_ran_thrice.set()

    runner = PeriodicRunner(
        [PeriodicJob("slow", lambda: (slow_started.set(), stop_slow.wait(30)), 0.01), PeriodicJob("fast", fast, 0.01)]
    )
    runner.start()
    try:
        assert fast_ran_thrice.wait(30)  # three runs while the slow job was still inside its first
        assert not stop_slow.is_set()
    finally:
        stop_slow.set()
        runner.stop()


def test_periodic_runner_is_on_time_until_a_job_has_not_started_for_twice_its_interval_and_a_minute(monkeypatch):
    import stockade.adapters.inprocess_tasks as tasks

    ran, stuck = threading.Event(), threading.Event()
    runner = PeriodicRunner([PeriodicJob("stuck", lambda: (ran.set(), stuck.wait(30)), 1.0)])
    assert not runner.on_time()  # not started yet
    runner.start()
    try:
        assert ran.wait(30)
        assert runner.on_time()
        later = time.monotonic() + 2 * 1.0 + 61  # still inside its first run by then
        monkeypatch.setattr(tasks.time, "monotonic", lambda: later)
        assert not runner.on_time()
    finally:
        monkeypatch.undo()
        stuck.set()
        runner.stop()
