"""Log lines of every command: text or one JSON object per line (STOCKADE_LOG_FORMAT), each with
the request id of the work it serves.

The standard library's logging, not structlog: gunicorn, Celery, SQLAlchemy and Alembic all log
through it, so one handler and one formatter on the root logger shape every line of a process;
structlog would have to be bridged back to it for those anyway.

An access line is written for every request, so its cost is paid on every request: the
handler writes lines in batches (a WARNING or worse at once, the rest within FLUSH_SECONDS),
the time of day is formatted once a second, and no record looks up its caller, thread or
process, which no line shows.
"""

from __future__ import annotations

import json
import logging
import os
import threading
import time
import weakref
from collections import deque
from typing import Any, TextIO

from stockade.application.tracing import request_id

LOG_FORMATS = ("text", "json")
TEXT_FORMAT = "%(asctime)s %(levelname)s [%(name)s] %(message)s%(request_id_suffix)s"
#: What every LogRecord has; anything else on a record came as `extra` and goes into the JSON object.
_STANDARD = set(vars(logging.LogRecord("", 0, "", 0, "", None, None))) | {"message", "asctime", "request_id_suffix"}
#: The longest an INFO line waits in the handler before it is written.
FLUSH_SECONDS = 0.2
#: Written at once when this much waits.
FLUSH_BYTES = 64 * 1024


class RequestIdFilter(logging.Filter):
    """Gives each record the id of the request being served (None outside one), unless it has one."""

    def filter(self, record: logging.LogRecord) -> bool:
        rid = getattr(record, "request_id", None) or request_id.get()
        record.request_id = rid
        record.request_id_suffix = f" request_id={rid}" if rid else ""
        return True


class _SecondsCache:
    """`strftime(pattern)` of a timestamp's whole second, computed once per second."""

    def __init__(self, pattern: str, convert) -> None:
        self.pattern = pattern
        self.convert = convert
        self.second = -1
        self.text = ""

    def __call__(self, created: float) -> str:
        second = int(created)
        if second != self.second:
            self.text = time.strftime(self.pattern, self.convert(second))
            self.second = second
        return self.text


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with the local date and time down to milliseconds."""

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._seconds = _SecondsCache(self.default_time_format, self.converter)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return f"{self._seconds(record.created)},{int(record.msecs):03d}"


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, Z), level, logger, message, request_id, and any extra fields."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondsCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        line: dict[str, Any] = {
            "time": f"{self._seconds(record.created)}.{int(record.created % 1 * 1e6):06d}Z",
            "level": record.levelname,
            "logger": record.name,
            "message": record.getMessage(),
            "request_id": getattr(record, "request_id", None),
        }
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)


def formatter(log_format: str) -> logging.Formatter:
    return JsonFormatter() if log_format == "json" else TextFormatter()


class BatchingStreamHandler(logging.StreamHandler):
    """Writes lines to its stream in batches: a WARNING or worse at once (after what waits, so
    the order holds), the rest within FLUSH_SECONDS, or as soon as FLUSH_BYTES wait. One write
    per batch instead of one per line. What waits is written at exit (logging.shutdown flushes
    every handler) and before the process forks.

    The lines that wait are written by one flusher thread per process, started with the first
    line and before the handler's lock is taken: starting a thread waits for it to run, which
    under a gevent worker lets every other request run meanwhile, and those would all queue on
    the lock behind it (a lock held across a switch stalled a flash sale's requests for
    seconds). Nothing done under the lock waits for another greenlet or thread, and a line is
    queued without it (a deque append is atomic): only a flush takes the lock, so the requests
    that log never queue on one another."""

    def __init__(self, stream: TextIO | None = None) -> None:
        super().__init__(stream)
        self._waiting: deque[str] = deque()
        self._size = 0
        self._lines_wait = threading.Event()
        self._flusher_started = False
        _BATCHING.add(self)

    def handle(self, record: logging.LogRecord) -> bool:
        if not self._flusher_started:
            self._flusher_started = True  # before the start, which may let another caller run
            threading.Thread(target=self._flush_soon_after_each_line, name="stockade-log-flusher", daemon=True).start()
        # Handler.handle without its lock: emit only appends to a deque, which is thread-safe.
        if not self.filter(record):
            return False
        self.emit(record)
        return True

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + self.terminator
        except Exception:  # noqa: BLE001 - logging's own policy: report, never raise
            self.handleError(record)
            return
        self._waiting.append(line)
        self._size += len(line)  # not atomic across threads: a miscount only moves an early flush
        if record.levelno >= logging.WARNING or self._size >= FLUSH_BYTES:
            self.flush()
        elif not self._lines_wait.is_set():  # set after the append: the flusher's next pass takes the line
            self._lines_wait.set()

    def _flush_soon_after_each_line(self) -> None:
        lines_wait = self._lines_wait  # a fork gives the child a new one, and no such thread
        while True:
            lines_wait.wait()
            time.sleep(FLUSH_SECONDS)
            lines_wait.clear()  # before the flush: a line added after it sets it again
            self.flush()

    def flush(self) -> None:
        with self.lock:  # type: ignore[union-attr]  # created in Handler.__init__
            waiting, take = [], self._waiting.popleft
            self._size = 0
            while self._waiting:  # lines appended meanwhile go too, in order
                waiting.append(take())
            if waiting:
                try:
                    self.stream.write("".join(waiting))
                    self.stream.flush()
                except Exception:  # noqa: BLE001 - a closed or broken stream: nothing to write to
                    pass

    def close(self) -> None:
        self.flush()
        super().close()


_BATCHING: weakref.WeakSet[BatchingStreamHandler] = weakref.WeakSet()


def _flush_before_fork() -> None:
    for handler in list(_BATCHING):
        handler.flush()


def _no_flusher_in_child() -> None:
    """A forked child has none of its parent's threads: its first line starts its own flusher."""
    for handler in list(_BATCHING):
        handler._lines_wait = threading.Event()
        handler._flusher_started = False


os.register_at_fork(before=_flush_before_fork, after_in_child=_no_flusher_in_child)


def configure_logging(log_format: str = "text", level: int = logging.INFO) -> None:
    """Route every logger of this process through one stderr handler in `log_format`."""
    # No line shows the caller's file and line, thread or process: don't look them up per record.
    logging._srcfile = None  # the documented switch (logging HOWTO, "Optimization")
    logging.logThreads = False
    logging.logProcesses = False
    logging.logMultiprocessing = False
    handler = BatchingStreamHandler()
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(formatter(log_format))
    root = logging.getLogger()
    for old in list(root.handlers):
        root.removeHandler(old)
        old.flush()
    root.addHandler(handler)
    root.setLevel(level)
    logging.getLogger("alembic").setLevel(logging.WARNING)
