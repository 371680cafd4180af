"""Product snapshots in this process's memory, kept current by a version store every writer bumps."""

from __future__ import annotations

import fcntl
import mmap
import os
import threading
import time
from collections.abc import Callable, Sequence
from typing import Protocol

from stockade.domain.model import ProductSnapshot

#: The safety TTL of an entry. A version store that failed to hear a bump (a Redis partition
#: seen by the writer only, Redis losing its keys or failing over to a lagging replica) can
#: then leave a stale entry for 5 s at most, the bound the old Redis value cache had; for a
#: hot product it costs one database read per process every 5 s.
DEFAULT_TTL_SECONDS = 5.0
DEFAULT_MAX_ENTRIES = 10_000


class VersionStore(Protocol):
    """Per-product version tokens that every writing process bumps after its commit.

    A token is any value comparable with ==; it changes on every bump of its product and
    never returns to a value it had (no ABA), so an entry filled under a token is current
    exactly as long as the store still answers that token. Several products may share a
    token (a bump of one then costs the others a miss, never a stale read). Stores are
    thread-safe.
    """

    def current(self, product_id: int) -> object | None:
        """The product's token now, or None when the store cannot answer."""

    def bump(self, product_ids: Sequence[int]) -> None:
        """Change these products' tokens; visible to every `current` that starts after it
        returns. A remote store that cannot be reached does not raise: it remembers the
        bump and applies it as soon as it answers again."""


_BYPASS = object()
#: the token of an entry this process outdated itself: it matches no version
_OUTDATED = object()


class VersionedProductCache:
    """ProductCache: snapshots in a dict, each valid while its product's version token is.

    A hit costs one `current` read of the version store (an mmap read on one host, a
    Redis GET with Redis) and no decoding. Thread-safe: `get` only reads the dict (single
    dict operations are atomic; entries are immutable tuples), `fill` and `invalidate`
    take a lock. At most `max_entries` snapshots; the least recently filled goes first.
    Entries also lapse after `ttl_seconds` (see DEFAULT_TTL_SECONDS), a net for a version
    store that missed a bump.
    """

    def __init__(
        self,
        versions: VersionStore,
        *,
        ttl_seconds: float = DEFAULT_TTL_SECONDS,
        max_entries: int = DEFAULT_MAX_ENTRIES,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        if max_entries < 1:
            raise ValueError("max_entries must be at least 1")
        self.versions = versions
        self._ttl = ttl_seconds
        self._max = max_entries
        self._monotonic = monotonic
        self._entries: dict[int, tuple[object, float, ProductSnapshot]] = {}
        self._lock = threading.Lock()
        ping = getattr(versions, "ping", None)
        if ping is not None:
            # Services.readiness probes the cache's `ping`: a remote version store is a dependency.
            self.ping = ping

    def get(self, product_id: int) -> tuple[ProductSnapshot | None, object]:
        token = self.versions.current(product_id)
        if token is None:
            return None, _BYPASS
        entry = self._entries.get(product_id)
        if entry is not None and entry[0] == token and self._monotonic() < entry[1]:
            return entry[2], token
        return None, token

    def fill(self, snapshot: ProductSnapshot, ticket: object) -> None:
        # No compare-and-set: an entry stored under a ticket some writer has since bumped
        # past simply never matches the store again, so the next `get` misses.
        if ticket is _BYPASS:
            return
        product_id = snapshot.product.id
        entry = (ticket, self._monotonic() + self._ttl, snapshot)
        with self._lock:
            if self._entries.pop(product_id, None) is None and len(self._entries) >= self._max:
                del self._entries[next(iter(self._entries))]
            self._entries[product_id] = entry

    def invalidate(self, product_ids: Sequence[int]) -> None:
        if not product_ids:
            return
        # Outdating our own copies first keeps this process current even while the store
        # cannot hear the bump (it replays it later). They stay as `recent` snapshots.
        with self._lock:
            for product_id in product_ids:
                entry = self._entries.get(product_id)
                if entry is not None:
                    self._entries[product_id] = (_OUTDATED, entry[1], entry[2])
        self.versions.bump(product_ids)

    def recent(self, product_id: int) -> ProductSnapshot | None:
        entry = self._entries.get(product_id)
        return None if entry is None else entry[2]


class LocalVersions:
    """VersionStore of one process (an in-memory SQLite database, unit tests).

    A fixed table of counters, product_id % slots, so its memory does not grow with the
    number of products; a shared slot only costs a miss.
    """

    def __init__(self, slots: int = 4096) -> None:
        self._counters = [0] * slots
        self._slots = slots
        self._lock = threading.Lock()

    def current(self, product_id: int) -> int:
        return self._counters[product_id % self._slots]

    def bump(self, product_ids: Sequence[int]) -> None:
        with self._lock:
            for slot in {pid % self._slots for pid in product_ids}:
                self._counters[slot] += 1


class SharedFileVersions:
    """VersionStore of every process on this host: counters in a shared mmap'd file.

    The file holds fixed 8-byte slots (product_id % slots; the file's size, set by whoever
    created it, decides `slots` for everyone). Readers load a slot without any lock: an
    aligned native 8-byte load is one machine instruction, so it never sees half a write.
    Writers increment under an exclusive `lockf` of the file (and a thread lock, since
    POSIX record locks are per process), so concurrent bumps never lose an increment and a
    counter never repeats a value. Creating and sizing the file happen under the same lock,
    so processes starting together agree on it and never zero each other's counters.

    The file must outlive the processes that use it: deleting it while servers run cuts
    them off from later writers (`make clean` removes it along with the database).
    """

    def __init__(self, path: str | os.PathLike[str], *, slots: int = 4096) -> None:
        if slots < 1:
            raise ValueError("slots must be at least 1")
        self.path = os.fspath(path)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o666)
        try:
            _lock_file(fd)
            try:
                size = os.fstat(fd).st_size
                if size == 0:
                    size = slots * 8
                    os.ftruncate(fd, size)  # zero-filled: every counter starts at 0
                elif size % 8:
                    raise ValueError(f"{self.path} is not a version file ({size} bytes, not a multiple of 8)")
            finally:
                fcntl.lockf(fd, fcntl.LOCK_UN)
            self._mmap = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ | mmap.PROT_WRITE)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._slots = size // 8
        # Native "Q": loads and stores of whole aligned 8-byte words (the standard "<Q"
        # format would assemble the value byte by byte).
        self._counters = memoryview(self._mmap).cast("Q")
        self._lock = threading.Lock()

    def current(self, product_id: int) -> int:
        return self._counters[product_id % self._slots]

    def bump(self, product_ids: Sequence[int]) -> None:
        slots = {pid % self._slots for pid in product_ids}
        if not slots:
            return
        with self._lock:
            _lock_file(self._fd)
            try:
                for slot in slots:
                    self._counters[slot] += 1
            finally:
                fcntl.lockf(self._fd, fcntl.LOCK_UN)

    def close(self) -> None:
        with self._lock:
            if self._fd < 0:
                return
            self._counters.release()
            self._mmap.close()
            os.close(self._fd)
            self._fd = -1


def _lock_file(fd: int) -> None:
    """An exclusive `lockf` of the version file, asked for without blocking until it is given.

    A blocking request would let the kernel fail it with EDEADLK: record locks belong to a
    process, so a process that holds this lock for a bump while another of its threads waits
    for the SQLite writer lock (writer_lock.py) looks, to the kernel, like a cycle with a
    process that holds the writer lock and asks for this one. A bump holds the lock for a
    few increments, so the retries are short; under a gevent worker they yield to the loop
    instead of stopping it."""
    while True:
        try:
            fcntl.lockf(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except (BlockingIOError, PermissionError):  # held by another process's bump
            time.sleep(0.0001)


class NullProductCache:
    """No cache: every read goes to the database (MySQL without Redis: writers on other
    hosts could not invalidate this process's memory)."""

    def get(self, product_id: int) -> tuple[ProductSnapshot | None, object]:
        return None, _BYPASS

    def fill(self, snapshot: ProductSnapshot, ticket: object) -> None:
        pass

    def invalidate(self, product_ids: Sequence[int]) -> None:
        pass

    def recent(self, product_id: int) -> ProductSnapshot | None:
        return None
