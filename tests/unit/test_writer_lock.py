"""WriterLock: one SQLite writer at a time across processes, and waiting for it never stops a
gevent worker's loop."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

from stockade.adapters.sql.writer_lock import WriterLock

SRC_ROOT = Path(__file__).resolve().parents[2]
PROCESSES = 4
TURNS = 200


def run_children(codes: list[str]) -> list[str]:
    """Run each code in a fresh interpreter at once; their outputs, after all succeeded."""
    children = [
        subprocess.Popen(
            [sys.executable, "-c", textwrap.dedent(code)],
            cwd=SRC_ROOT,
            text=True,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
        )
        for code in codes
    ]
    outputs = []
    for child in children:
        out, err = child.communicate(timeout=120)
        assert child.returncode == 0, err
        outputs.append(out)
    return outputs


def test_writers_of_several_processes_never_overlap(tmp_path):
    """Each writer reads a counter, yields the CPU, writes it back plus one: no increment is lost."""
    counter = tmp_path / "counter"
    counter.write_text("0")
    code = f"""
        import os, time
        from stockade.adapters.sql.writer_lock import WriterLock
        lock = WriterLock({str(tmp_path / "db-writers")!r})
        for _ in range({TURNS}):
            lock.acquire()
            try:
                value = int(open({str(counter)!r}).read())
                time.sleep(0)
                with open({str(counter)!r}, "w") as f:
                    f.write(str(value + 1))
            finally:
                lock.release()
    """
    run_children([code] * PROCESSES)
    assert int(counter.read_text()) == PROCESSES * TURNS


def test_under_gevent_a_writer_waiting_for_another_process_lets_other_requests_run(tmp_path):
    """While another process holds the lock, a greenlet waits for it in a native thread: the
    loop keeps running other greenlets, and the waiter gets the lock once it is released."""
    lock_path = tmp_path / "db-writers"
    holder = WriterLock(lock_path)
    holder.acquire()
    code = f"""
        from gevent import monkey; monkey.patch_all()
        import gevent
        from stockade.adapters.sql.writer_lock import WriterLock
        lock = WriterLock({str(lock_path)!r})
        ticks = []
        def ticker():
            while True:
                ticks.append(1)
                gevent.sleep(0.01)
        gevent.spawn(ticker)
        waiter = gevent.spawn(lock.acquire)
        gevent.sleep(0.5)
        print("ticks while waiting:", len(ticks), "got it:", waiter.dead, flush=True)
        waiter.join(30)
        print("got it after release:", waiter.dead and waiter.successful())
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=SRC_ROOT,
        text=True,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    lines: list[str] = []
    reader = threading.Thread(target=lambda: lines.append(child.stdout.readline()), daemon=True)
    reader.start()
    reader.join(30)  # a loop stopped by the wait would print nothing until the release
    holder.release()
    reader.join(30)
    first = lines[0] if lines else ""
    out, err = child.communicate(timeout=60)
    holder.close()
    assert child.returncode == 0, err
    assert first.startswith("ticks while waiting:"), (first, out)
    ticks = int(first.split()[3])
    assert ticks >= 10, first  # the loop ran the ticker while the other greenlet waited
    assert "got it: False" in first
    assert "got it after release: True" in out


def test_in_one_process_threads_take_turns(tmp_path):
    """The thread lock in front of the record lock (which a process holds only once)."""
    lock = WriterLock(tmp_path / "db-writers")
    inside: list[int] = []
    overlaps: list[int] = []

    def writer(n: int) -> None:
        for _ in range(50):
            lock.acquire()
            try:
                if inside:
                    overlaps.append(n)
                inside.append(n)
                time.sleep(0.0001)  # let the other threads run, and try to enter
                inside.pop()
            finally:
                lock.release()

    threads = [threading.Thread(target=writer, args=(n,)) for n in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    lock.close()
    assert overlaps == []


def test_off_the_loop_runs_a_blocking_call_in_a_native_thread_only_under_gevent():
    code = """
        import threading
        from stockade.adapters.off_the_loop import off_the_loop
        before = off_the_loop(threading.get_native_id) == threading.get_native_id()
        from gevent import monkey; monkey.patch_all()
        after = off_the_loop(threading.get_native_id) == threading.get_native_id()
        print(before, after)
    """
    assert run_children([code]) == ["True False\n"]


def test_a_brief_lock_is_the_native_lock_even_under_gevent():
    """gevent's patched lock costs a request thousands of instructions an acquire; a lock
    that is never held across a switch can be the native one."""
    code = """
        import _thread
        from stockade.adapters.off_the_loop import brief_lock
        native = type(_thread.allocate_lock())
        before = type(brief_lock()) is native
        from gevent import monkey; monkey.patch_all()
        import threading
        patched = type(threading.Lock()) is not native
        after = type(brief_lock()) is native
        print(before, patched, after)
    """
    assert run_children([code]) == ["True True True\n"]


def test_a_bump_never_fails_while_another_process_waits_for_the_writer_lock(tmp_path):
    """Record locks belong to a process. Here this process holds the writer lock and bumps a
    product's version while another process holds the version file's lock for a bump of its
    own, and one of its threads waits for the writer lock. A blocking request for the version
    lock would look like a deadlock to the kernel and fail with EDEADLK (a 500 for a write
    that had committed); the bump waits its turn instead."""
    from stockade.adapters.memory_cache import SharedFileVersions

    writers, version_file = tmp_path / "db-writers", tmp_path / "versions"
    lock = WriterLock(writers)
    versions = SharedFileVersions(version_file)
    lock.acquire()
    code = f"""
        import fcntl, os, threading, time
        from stockade.adapters.sql.writer_lock import WriterLock
        lock = WriterLock({str(writers)!r})
        fd = os.open({str(version_file)!r}, os.O_RDWR)
        fcntl.lockf(fd, fcntl.LOCK_EX)  # a bump under way
        waiting = threading.Thread(target=lock.acquire)
        waiting.start()
        time.sleep(0.3)  # the thread now waits for the writer lock
        print("ready", flush=True)
        time.sleep(0.7)
        fcntl.lockf(fd, fcntl.LOCK_UN)  # the bump is done
        waiting.join()
        lock.release()
        print("done", flush=True)
    """
    child = subprocess.Popen(
        [sys.executable, "-c", textwrap.dedent(code)], cwd=SRC_ROOT, text=True, stdout=subprocess.PIPE
    )
    try:
        assert child.stdout is not None and child.stdout.readline().strip() == "ready"
        versions.bump([1])  # waits for the other process's bump
        assert versions.current(1) == 1
    finally:
        lock.release()
        out, _ = child.communicate(timeout=30)
        versions.close()
    assert child.returncode == 0 and out.strip() == "done"
