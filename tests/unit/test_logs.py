"""Log lines are written in batches: a warning at once after what waits, the rest soon after."""

from __future__ import annotations

import contextlib
import io
import logging
import os
import threading
import time
from collections.abc import Iterator

import pytest

from stockade.entrypoints import logs
from stockade.entrypoints.logs import (
    ACCESS_MESSAGE,
    BatchingStreamHandler,
    JsonFormatter,
    RequestIdFilter,
    TextFormatter,
    access_log,
    access_record,
    log_access,
)


class _Stream(io.StringIO):
    """A stream that counts its writes and signals each one."""

    def __init__(self) -> None:
        super().__init__()
        self.writes = 0
        self.written = threading.Event()

    def write(self, text: str) -> int:
        self.writes += 1
        self.written.set()
        return super().write(text)


@pytest.fixture
def logger() -> logging.Logger:
    found = logging.getLogger("stockade.test.batching")
    found.propagate = False
    found.setLevel(logging.INFO)
    yield found
    for handler in list(found.handlers):
        found.removeHandler(handler)
        handler.close()


def _handler(logger: logging.Logger, stream: io.StringIO) -> BatchingStreamHandler:
    handler = BatchingStreamHandler(stream)
    handler.setFormatter(logging.Formatter("%(levelname)s %(message)s"))
    logger.addHandler(handler)
    return handler


def test_info_lines_wait_and_go_out_together_in_one_write(logger):
    stream = _Stream()
    handler = _handler(logger, stream)
    logger.info("one")
    logger.info("two")
    assert stream.getvalue() == ""
    handler.flush()
    assert stream.getvalue() == "INFO one\nINFO two\n"
    assert stream.writes == 1


def test_a_warning_is_written_at_once_after_the_lines_that_wait(logger):
    stream = _Stream()
    _handler(logger, stream)
    logger.info("before")
    logger.warning("trouble")
    assert stream.getvalue() == "INFO before\nWARNING trouble\n"


def test_waiting_lines_are_written_within_the_flush_interval_without_more_logging(logger):
    stream = _Stream()
    _handler(logger, stream)
    logger.info("alone")
    assert stream.written.wait(10 * logs.FLUSH_SECONDS), "the waiting line was never written"
    assert stream.getvalue() == "INFO alone\n"


def test_lines_are_written_at_once_when_enough_wait(logger):
    stream = _Stream()
    _handler(logger, stream)
    line = "x" * 1000
    for _ in range(logs.FLUSH_BYTES // 1000 + 1):
        logger.info(line)
    assert stream.writes == 1
    assert stream.getvalue().count(line) == logs.FLUSH_BYTES // 1000 + 1


def test_lines_logged_from_many_threads_at_once_are_all_written_once_and_in_order(logger):
    """Lines are queued without the handler's lock, while flushes (timed, size-driven and
    warnings) take them from the other end: none may be lost, repeated or reordered."""
    stream = _Stream()
    handler = _handler(logger, stream)
    start = threading.Barrier(8)

    def log_lines(thread_no: int) -> None:
        start.wait()
        for n in range(2000):
            (logger.warning if n % 500 == 499 else logger.info)("t%d n%d", thread_no, n)

    threads = [threading.Thread(target=log_lines, args=(t,)) for t in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    handler.flush()

    seen: dict[str, list[int]] = {}
    for line in stream.getvalue().splitlines():
        thread_tag, n = line.split()[1:]
        seen.setdefault(thread_tag, []).append(int(n[1:]))
    assert seen == {f"t{t}": list(range(2000)) for t in range(8)}


def test_closing_writes_what_waits(logger):
    stream = _Stream()
    handler = _handler(logger, stream)
    logger.info("last words")
    logger.removeHandler(handler)
    handler.close()
    assert stream.getvalue() == "INFO last words\n"


def test_a_forked_child_neither_loses_nor_repeats_the_parents_waiting_lines(logger, tmp_path):
    path = tmp_path / "log"
    with open(path, "w") as stream:
        handler = _handler(logger, stream)
        logger.info("before the fork")
        pid = os.fork()
        if pid == 0:  # the child: writes its own line and leaves through logging's exit path
            logger.info("from the child")
            handler.close()
            os._exit(0)
        _, status = os.waitpid(pid, 0)
        assert os.waitstatus_to_exitcode(status) == 0
        handler.flush()
    assert path.read_text().splitlines() == ["INFO before the fork", "INFO from the child"]


def test_text_lines_show_the_time_to_the_millisecond():
    record = logging.LogRecord("stockade", logging.INFO, "", 0, "hello", None, None)
    record.created, record.msecs = 1_767_772_800.25, 250.0
    record.request_id_suffix = ""
    local = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(record.created))
    assert TextFormatter().format(record) == f"{local},250 INFO [stockade] hello"


def test_json_lines_show_the_utc_time_to_the_microsecond():
    record = logging.LogRecord("stockade", logging.INFO, "", 0, "hello", None, None)
    record.created = 1_767_772_800.123456
    assert JsonFormatter().format(record).startswith('{"time": "2026-01-07T08:00:00.123456Z"')


#: Under gevent, logs lines from many greenlets and records every greenlet switch made while
#: the handler's lock is held: each one is a moment every other request logging waits for.
_SWITCHES_UNDER_THE_LOCK = """
from gevent import monkey; monkey.patch_all()
import io, logging, sys, time
import gevent, greenlet
from stockade.entrypoints.logs import BatchingStreamHandler

stream = io.StringIO()
handler = BatchingStreamHandler(stream)
handler.setFormatter(logging.Formatter("%(message)s"))
logger = logging.getLogger("switches")
logger.propagate = False
logger.setLevel(logging.INFO)
logger.addHandler(handler)
held = []
greenlet.settrace(lambda event, args: held.append(event) if handler.lock._owner is not None else None)
def request(n):
    for i in range(5):
        logger.info("request %d line %d", n, i)
        gevent.sleep(0)
gevent.joinall([gevent.spawn(request, n) for n in range(50)])
gevent.sleep(0.5)  # the flusher writes what waits
greenlet.settrace(None)
print(len(held), len(stream.getvalue().splitlines()))
"""


def test_under_gevent_no_greenlet_switch_happens_while_the_handlers_lock_is_held():
    """A switch under the lock (the old code started a timer thread there, and starting a thread
    waits for it) made every request's access line queue behind it: seconds in a flash sale."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", _SWITCHES_UNDER_THE_LOCK], capture_output=True, text=True, timeout=60, check=True
    )
    switches, lines = map(int, done.stdout.split())
    assert lines == 250, "every line is written"
    assert switches == 0


def test_an_access_record_is_the_record_logger_info_would_make():
    """The access line's record is built from a template, not by Logger.info: it must carry
    the same fields, and render the same text and JSON, as the record Logger.info makes."""
    extra = {"method": "POST", "route": "/api/x", "status": 409, "duration_ms": round(1.2345, 3), "request_id": "r-1"}
    made = access_log.makeRecord(
        access_log.name, logging.INFO, "", 0, ACCESS_MESSAGE, ("POST", "/api/x", 409, 1.2345), None, extra=extra
    )
    built = access_record(time.time(), ("POST", "/api/x", 409, 1.2345), "r-1")
    assert set(vars(built)) == set(vars(made))
    assert built.created >= made.created and abs(built.relativeCreated - made.relativeCreated) < 60_000
    for record in (made, built):
        record.created, record.msecs = 1_700_000_000.25, 250.0
        logs.RequestIdFilter().filter(record)
    for formatter in (TextFormatter(), JsonFormatter()):
        assert formatter.format(built) == formatter.format(made)


@pytest.mark.parametrize("formatter", [TextFormatter(), JsonFormatter()], ids=["text", "json"])
def test_an_access_line_rendered_from_its_fields_is_the_formatted_access_record(formatter):
    args = ("POST", "/api/orders/purchase", 201, 0.04999)
    for created in (1_700_000_000.0, 1_700_000_000.9995, 1_700_000_123.0451):
        record = access_record(created, args, "r-1")
        RequestIdFilter().filter(record)
        assert formatter.access_line(created, args, "r-1") == formatter.format(record)


@contextlib.contextmanager
def _root_handler_only() -> Iterator[tuple[BatchingStreamHandler, io.StringIO]]:
    """The root logger's handlers as configure_logging leaves them (and nothing else, not even
    pytest's capture, which it adds for the test's own run), on a stream the test reads."""
    root = logging.getLogger()
    saved, level = list(root.handlers), root.level
    stream = io.StringIO()
    handler = BatchingStreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(TextFormatter())
    root.handlers[:] = [handler]
    root.setLevel(logging.INFO)
    try:
        yield handler, stream
    finally:
        root.handlers[:] = saved
        root.setLevel(level)


def test_the_access_line_goes_straight_to_the_only_handler_without_a_record(monkeypatch):
    monkeypatch.setattr(access_log, "handle", lambda record: pytest.fail("a record was made"))
    with _root_handler_only() as (handler, stream):
        log_access("GET", "/healthz", 200, 1.26, "r-9")
        handler.flush()
    assert stream.getvalue().endswith(" INFO [stockade.access] GET /healthz 200 1.3ms request_id=r-9\n")


def test_with_another_handler_the_access_line_is_a_record_that_both_handlers_get():
    seen: list[logging.LogRecord] = []
    other = logging.Handler()
    other.emit = seen.append  # type: ignore[method-assign]
    with _root_handler_only() as (handler, stream):
        logging.getLogger().addHandler(other)
        log_access("GET", "/healthz", 200, 1.26, "r-9")
        handler.flush()
    assert [(r.route, r.status, r.request_id) for r in seen] == [("/healthz", 200, "r-9")]
    assert stream.getvalue().endswith("GET /healthz 200 1.3ms request_id=r-9\n")
