"""SharedFileVersions: a bump in one process outdates every other process's cached snapshot."""

from __future__ import annotations

import os
import struct
import subprocess
import sys
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import pytest

from stockade.adapters.memory_cache import SharedFileVersions, VersionedProductCache
from stockade.domain.model import Product, ProductSnapshot

AT = datetime(2026, 1, 7, 8, 0, tzinfo=timezone.utc)
PHONE = ProductSnapshot(Product(7, "Phone", Decimal("100.00"), 10, 0, 1, AT, AT), None)
SRC_ROOT = Path(__file__).resolve().parents[2]

PROCESSES = 6
BUMPS_PER_PROCESS = 5000


@pytest.fixture
def path(tmp_path: Path) -> Path:
    return tmp_path / "shop.db-versions"


def run_child(code: str) -> None:
    """Run `code` in a fresh interpreter (another process, as the CLI or a second worker is)."""
    done = subprocess.run([sys.executable, "-c", code], cwd=SRC_ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr


def test_a_bump_in_another_process_makes_this_processes_cache_miss(path):
    versions = SharedFileVersions(path)
    try:
        cache = VersionedProductCache(versions)
        cache.fill(PHONE, cache.get(7)[1])
        assert cache.get(7)[0] == PHONE

        run_child(
            "from stockade.adapters.memory_cache import SharedFileVersions, VersionedProductCache\n"
            f"versions = SharedFileVersions({str(path)!r})\n"
            "VersionedProductCache(versions).invalidate([7])\n"
            "versions.close()\n"
        )

        found, ticket = cache.get(7)
        assert found is None
        cache.fill(PHONE, ticket)  # refilled after the write: a hit again
        assert cache.get(7)[0] == PHONE
    finally:
        versions.close()


def test_a_fill_under_a_ticket_taken_before_another_processes_bump_is_never_served(path):
    versions = SharedFileVersions(path)
    try:
        cache = VersionedProductCache(versions)
        _, ticket = cache.get(7)  # a slow reader takes its ticket and reads the database...
        run_child(  # ...a CLI sweep in another process commits and bumps...
            "from stockade.adapters.memory_cache import SharedFileVersions\n"
            f"SharedFileVersions({str(path)!r}).bump([7])\n"
        )
        cache.fill(PHONE, ticket)  # ...and the reader keeps the row it read before
        assert cache.get(7)[0] is None
    finally:
        versions.close()


def test_processes_creating_the_file_together_share_one_counter_and_lose_no_bump(path):
    """All start at once on a missing file: nobody resizes or zeroes another's counters,
    and concurrent increments all count."""
    code = (
        "import sys\n"
        "from stockade.adapters.memory_cache import SharedFileVersions\n"
        "print('ready', flush=True)\n"
        "sys.stdin.read()\n"  # the start line: the parent closes every child's stdin at once
        f"versions = SharedFileVersions({str(path)!r})\n"
        f"for _ in range({BUMPS_PER_PROCESS}):\n"
        "    versions.bump([7])\n"
        "versions.close()\n"
    )
    children = [
        subprocess.Popen(
            [sys.executable, "-c", code],
            cwd=SRC_ROOT,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(PROCESSES)
    ]
    try:
        for child in children:
            assert child.stdout.readline() == "ready\n", child.stderr.read()
        for child in children:
            child.stdin.close()
        errors = [child.stderr.read() for child in children]
        for child in children:
            child.wait(120)
    finally:
        for child in children:
            child.kill()
            child.wait()
    assert [child.returncode for child in children] == [0] * PROCESSES, errors

    raw = path.read_bytes()
    assert len(raw) == 4096 * 8
    assert struct.unpack_from("Q", raw, 7 * 8)[0] == PROCESSES * BUMPS_PER_PROCESS
    assert sum(struct.unpack(f"{4096}Q", raw)) == PROCESSES * BUMPS_PER_PROCESS


def test_the_file_that_exists_decides_the_number_of_slots(path):
    """A process configured with other slots must still read the slots every writer bumps."""
    first = SharedFileVersions(path, slots=16)
    second = SharedFileVersions(path, slots=4096)
    try:
        before = second.current(7 + 16)
        first.bump([7])
        assert second.current(7 + 16) != before  # same slot as 7 in a 16-slot file
        assert os.path.getsize(path) == 16 * 8
    finally:
        first.close()
        second.close()


def test_a_file_that_is_not_a_version_file_is_refused(path):
    path.write_bytes(b"not a version file")
    with pytest.raises(ValueError, match="not a version file"):
        SharedFileVersions(path)
