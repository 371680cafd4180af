"""One SQLite writer at a time across this host's processes, handed over the moment it is free."""

from __future__ import annotations

import fcntl
import os
import threading

from stockade.adapters.forks import call_in_forked_children
from stockade.adapters.off_the_loop import off_the_loop


class WriterLock:
    """Queues a SQLite database's writers before they ask SQLite for its write lock.

    SQLite makes a writer that finds the database locked poll: its busy handler sleeps 1,
    2, 5, 10 ... up to 100 ms between tries, while the writer that holds the lock may take it
    again at once, so a second `stockade serve` worker could wait tens of milliseconds for
    a transaction of less than one, and under a gevent worker that sleep stalls every
    request of its process. Writers that queue here wait in the kernel instead (a blocking
    `lockf` on `path`, after a thread lock, since POSIX record locks belong to a process)
    and are woken as soon as the holder releases it (under a gevent worker in a native
    thread, so that the worker's other requests go on meanwhile); SQLite's own lock is then
    always free when one of ours asks for it. Other programs writing the database still meet SQLite's
    lock and its busy timeout.

    The kernel drops a process's record locks when it exits, however it exits. A process
    that stops (SIGSTOP, a debugger) while it holds the lock holds up every writer until
    it runs again, as it would hold SQLite's lock. `path` None: one process only (an
    in-memory database).
    """

    def __init__(self, path: str | os.PathLike[str] | None) -> None:
        self.path = None if path is None else os.fspath(path)
        self._fd = -1 if self.path is None else os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        self._thread_lock = threading.Lock()
        # A child inherits the thread lock in whatever state it was; record locks it has none.
        call_in_forked_children(self._renew_thread_lock)

    def _renew_thread_lock(self) -> None:
        self._thread_lock = threading.Lock()

    def acquire(self) -> None:
        self._thread_lock.acquire()
        if self._fd < 0:
            return
        try:
            try:
                fcntl.lockf(self._fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except (BlockingIOError, PermissionError):  # another process writes: wait for it
                off_the_loop(fcntl.lockf, self._fd, fcntl.LOCK_EX)
        except BaseException:
            self._thread_lock.release()
            raise

    def release(self) -> None:
        if self._fd >= 0:
            fcntl.lockf(self._fd, fcntl.LOCK_UN)
        self._thread_lock.release()

    def close(self) -> None:
        if self._fd >= 0:
            os.close(self._fd)
            self._fd = -1
