"""Log lines of every command: text or one JSON object per line (STOCKADE_LOG_FORMAT), each with
the request id of the work it serves.

The standard library's logging, not structlog: gunicorn, Celery, SQLAlchemy and Alembic all log
through it, so one handler and one formatter on the root logger shape every line of a process;
structlog would have to be bridged back to it for those anyway.

An access line is written for every request, so its cost is paid on every request: the
handler writes lines in batches (a WARNING or worse at once, the rest within FLUSH_SECONDS),
the time of day is formatted once a second, and no record looks up its caller, thread or
process, which no line shows. Where the access line's only destination is that handler (as
`configure_logging` sets it up), `log_access` renders the line straight from its fields and
queues it, with no LogRecord: the record and the logging machinery around it cost as many
instructions as the rest of a /healthz request (58k of 158k, counted with callgrind).
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

#: The logger of the one line written per HTTP request, and that line's message.
access_log = logging.getLogger("stockade.access")
ACCESS_MESSAGE = "%s %s %s %.1fms"


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


#: "000" to "999": a line's milliseconds, looked up rather than formatted.
_MILLIS = [f"{n:03d}" for n in range(1000)]


class TextFormatter(logging.Formatter):
    """TEXT_FORMAT, with the local date and time down to milliseconds."""

    #: TEXT_FORMAT with everything but an access line's time, fields and id filled in.
    ACCESS_FORMAT = TEXT_FORMAT % {
        "asctime": "%s",
        "levelname": "INFO",
        "name": access_log.name,
        "message": ACCESS_MESSAGE,
        "request_id_suffix": " request_id=%s",
    }

    def __init__(self) -> None:
        super().__init__(TEXT_FORMAT)
        self._seconds = _SecondsCache(self.default_time_format, self.converter)

    def formatTime(self, record: logging.LogRecord, datefmt: str | None = None) -> str:  # noqa: N802
        return self._stamp(record.created)

    def _stamp(self, created: float) -> str:
        # the milliseconds as LogRecord computes its msecs
        return f"{self._seconds(created)},{_MILLIS[int((created - int(created)) * 1000)]}"

    def access_line(self, created: float, args: tuple[str, str, int, float], rid: str) -> str:
        """What `format` makes of the access record of these fields (see log_access)."""
        return self.ACCESS_FORMAT % (self._stamp(created), *args, rid)


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time (UTC, Z), level, logger, message, request_id, and any extra fields."""

    def __init__(self) -> None:
        super().__init__()
        self._seconds = _SecondsCache("%Y-%m-%dT%H:%M:%S", time.gmtime)

    def format(self, record: logging.LogRecord) -> str:
        line = self._line(record.created, record.levelname, record.name, record.getMessage())
        line["request_id"] = getattr(record, "request_id", None)
        line.update({k: v for k, v in vars(record).items() if k not in _STANDARD and k not in line})
        if record.exc_info:
            line["exception"] = self.formatException(record.exc_info)
        return json.dumps(line, default=str)

    def access_line(self, created: float, args: tuple[str, str, int, float], rid: str) -> str:
        """What `format` makes of the access record of these fields (see log_access)."""
        line = self._line(created, "INFO", access_log.name, ACCESS_MESSAGE % args)
        line["request_id"] = rid
        line.update(_access_extra(args, rid))
        return json.dumps(line, default=str)

    def _line(self, created: float, level: str, logger: str, message: str) -> dict[str, Any]:
        return {
            "time": f"{self._seconds(created)}.{int(created % 1 * 1e6):06d}Z",
            "level": level,
            "logger": logger,
            "message": message,
        }


def _access_extra(args: tuple[str, str, int, float], rid: str) -> dict[str, object]:
    """The fields an access record carries besides the standard ones, in their order."""
    method, route, status, milliseconds = args
    return {
        "method": method,
        "route": route,
        "status": status,
        "duration_ms": round(milliseconds, 3),
        "request_id": rid,
    }


def _access_record_template() -> tuple[dict[str, object], float]:
    """The fields every access record shares, from a real LogRecord, and the time that
    records' relativeCreated counts from. The caller's thread and process are left out, as
    every Stockade log line leaves them out."""
    model = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, ACCESS_MESSAGE, None, None)
    fields = vars(model) | {"thread": None, "threadName": None, "process": None, "processName": None}
    return fields, model.created - model.relativeCreated / 1000


_ACCESS_FIELDS, _LOGGING_STARTED = _access_record_template()


def access_record(created: float, args: tuple[str, str, int, float], rid: str) -> logging.LogRecord:
    """The access line's record, the same fields as Logger.info(..., extra=...) would give
    it, built from the template: LogRecord.__init__ (the caller's file name, the thread,
    a copy of `extra`) cost a third of the line."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    fields = record.__dict__
    fields.update(_ACCESS_FIELDS)
    fields["created"] = created
    fields["msecs"] = int((created - int(created)) * 1000) + 0.0
    fields["relativeCreated"] = (created - _LOGGING_STARTED) * 1000
    fields["args"] = args
    fields.update(_access_extra(args, rid))
    return record


def log_access(method: str, route: str, status: int, milliseconds: float, rid: str) -> None:
    """Writes the access line of one request (INFO on `access_log`): straight to the handler
    when it is the line's only destination, else as a record through the logging machinery
    (another handler, a filter, a test's capture)."""
    if not access_log.isEnabledFor(logging.INFO):
        return
    args = (method, route, status, milliseconds)
    handler = _sole_access_handler()
    if handler is None:
        access_log.handle(access_record(time.time(), args, rid))
    else:
        handler.queue(handler.formatter.access_line(time.time(), args, rid) + handler.terminator, logging.INFO)  # type: ignore[union-attr]  # checked


def _sole_access_handler() -> BatchingStreamHandler | None:
    """The handler that configure_logging set up, when an access record would reach it and
    nothing else: no handler or filter on the way, and only the request id's own filter on it."""
    root = logging.root
    if access_log.handlers or access_log.filters or _stockade_log.handlers or len(root.handlers) != 1:
        return None
    handler = root.handlers[0]
    if (
        type(handler) is not BatchingStreamHandler
        or type(handler.formatter) not in (TextFormatter, JsonFormatter)
        or len(handler.filters) != 1
        or type(handler.filters[0]) is not RequestIdFilter
        or not access_log.propagate
        or not _stockade_log.propagate
        or handler.level > logging.INFO
    ):
        return None
    return handler


_stockade_log = logging.getLogger("stockade")


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
        self.queue(line, record.levelno)

    def queue(self, line: str, levelno: int) -> None:
        """Write a formatted line (with its terminator) at once or with the next batch, by its level."""
        if not self._flusher_started:
            self._flusher_started = True  # before the start, which may let another caller run
            threading.Thread(target=self._flush_soon_after_each_line, name="stockade-log-flusher", daemon=True).start()
        self._waiting.append(line)
        self._size += len(line)  # not atomic across threads: a miscount only moves an early flush
        if levelno >= logging.WARNING or self._size >= FLUSH_BYTES:
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
