"""Serving a Falcon app under gunicorn's gevent worker; each worker builds its own services after fork.

Why gevent: a client that sends its headers and part of a body, then stalls, holds whatever
reads that body until it gives up. gthread's 8 threads per worker were all held by 8 such
clients; a gevent worker parks each on a greenlet and serves everyone else meanwhile.

The worker monkey-patches the standard library in the worker process after fork, before the
app factory runs, so PyMySQL, redis-py, kombu, time.sleep and the in-process task runner's
threads (greenlets then) yield to the event loop while they wait. SQLite calls do not: each
runs to completion on the loop, commit fsync included. The master imports gunicorn (and
ssl), and for SQLite SQLAlchemy, Alembic and PyMySQL to migrate before forking; none of them
binds a blocking primitive at import, so patching afterwards is complete. What must not be
imported in the master is the application (stockade.application binds time.sleep as a
default): tests/integration/test_slow_clients.py fails if it is.
"""

from __future__ import annotations

import gc
import http
import json
import logging
import os
import resource
import shutil
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from gunicorn import util
from gunicorn.app.base import BaseApplication
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventWorker

from stockade.entrypoints.logs import RequestIdFilter, formatter

log = logging.getLogger("stockade")

#: Connections (one greenlet each) a worker serves at once; beyond that it stops accepting and
#: the kernel backlog holds newcomers for the other workers. Well above the 200 stalled
#: bodies the service must shrug off, below the open-files limit once the database pools
#: and log files are counted. Requests beyond the database pool wait for a connection
#: (cooperatively, up to the pool's timeout, then 503).
WORKER_CONNECTIONS = 1000
#: File descriptors a worker needs besides its client connections (pools, logs, metrics files).
SPARE_FILES = 256
#: Longest refusal message echoed back (a refused request line can be 8 KiB of anything).
MAX_MESSAGE = 200
#: gunicorn settings under which no peer sets the URL scheme (X-Forwarded-Proto and the like)
#: or SCRIPT_NAME/PATH_INFO by a header: the API builds no URL from them. gunicorn checks
#: the peer against its trusted proxies (127.0.0.1 by default) on every request, parsing its
#: address; trusting every peer with an empty set of headers skips that check and trusts
#: no header (hello-world 5% faster, side by side).
NO_FORWARDING_HEADERS = {"forwarded_allow_ips": "*", "secure_scheme_headers": {}, "forwarder_headers": ""}
#: What a client refused by the server layer can do about it, by status.
REFUSAL_ADVICE = {
    414: "shorten the request line (the path and query string)",
    431: "send fewer or smaller headers",
    501: "send the body with Content-Length or chunked encoding",
}


class _CapturedError:
    """Stands in for the client socket while gunicorn writes its HTML refusal: keeps the bytes."""

    def __init__(self) -> None:
        self.data = b""

    def gettimeout(self) -> float:
        return 0.0  # "non-blocking already": util.write_nonblock goes straight to sendall

    def sendall(self, data: bytes) -> None:
        self.data += data

    def status(self) -> int | None:
        """The status code of the captured response ("HTTP/1.1 431 Request Header ...")."""
        parts = self.data.split(b"\r\n", 1)[0].split()
        return int(parts[1]) if len(parts) > 1 and parts[1].isdigit() else None


def json_refusal(status: int, message: str) -> bytes:
    """A complete HTTP/1.1 response carrying {"message": ...}; the connection closes after it."""
    try:
        reason = http.HTTPStatus(status).phrase
    except ValueError:
        reason = "Error"
    body = json.dumps({"message": message}).encode()
    head = (
        f"HTTP/1.1 {status} {reason}\r\nConnection: close\r\nContent-Type: application/json\r\n"
        f"Content-Length: {len(body)}\r\n\r\n"
    )
    return head.encode("latin-1") + body


class _OneSendResponses:
    """A client socket on which a response's head waits for its first body bytes, so that both
    leave in one send: gunicorn sends the head, then each body chunk, with a `sendall` each,
    and a system call per response is a measurable share of a short answer's cost. Whatever
    is still held goes when the request ends (`flush`): a response without a body. A response
    gunicorn cuts off (its app failed after the head) is dropped with the connection."""

    def __init__(self, sock) -> None:
        self._sock = sock
        self._held: bytes | None = None
        self._first = True

    def sendall(self, data: bytes) -> None:
        if self._first:  # the head
            self._first = False
            self._held = bytes(data)
            return
        if self._held is not None:
            data, self._held = self._held + data, None
        self._sock.sendall(data)

    def sendfile(self, *args, **kwargs):
        self.flush()
        return self._sock.sendfile(*args, **kwargs)

    def flush(self) -> None:
        if self._held is not None:
            data, self._held = self._held, None
            self._sock.sendall(data)

    def shutdown(self, how: int) -> None:  # gunicorn's cut of a response that failed midway
        self._held = None
        self._sock.shutdown(how)

    def __getattr__(self, name: str):
        return getattr(self._sock, name)


class StockadeWorker(GeventWorker):
    """gunicorn's gevent worker whose own refusals (bad request line, huge headers...) are
    JSON, and whose long-lived objects are frozen out of garbage collection once the app is built.

    gunicorn's handle_error picks the status (400, 414, 431, 501...), logs and writes an HTML
    page; here it writes that page into a capture, and the client gets the same status with
    {"message": ...} instead. 500s say only "Internal server error": no exception text.
    """

    def load_wsgi(self) -> None:
        super().load_wsgi()
        # Modules, the app and its services live as long as the worker: out of the collector's
        # generations, its full collections no longer walk them (in process: 48 to 32 µs of
        # collection per purchase).
        gc.freeze()

    def handle_request(self, listener_name, req, sock, addr):
        out = _OneSendResponses(sock)
        try:
            handled = super().handle_request(listener_name, req, out, addr)
        except StopIteration:  # the connection closes after this response
            out.flush()
            raise
        out.flush()
        return handled

    def handle_error(self, req, client, addr, exc) -> None:
        captured = _CapturedError()
        super().handle_error(req, captured, addr, exc)
        status = captured.status() or 500
        if status >= 500 and status != 501:
            message = "Internal server error; retry later, and report it if it persists"
        else:
            what = str(exc)[:MAX_MESSAGE] or http.HTTPStatus(status).phrase
            message = f"{what}: {REFUSAL_ADVICE.get(status, 'send a well-formed HTTP/1.1 request')}"
        try:
            util.write_nonblock(client, json_refusal(status, message))
        except Exception:  # the client is gone: nothing to answer
            self.log.debug("Failed to send error message.")


class StockadeLogger(Logger):
    """gunicorn's own lines (start, workers, refusals) in our log format, and no access line of
    its own: the app writes one per request, with route and request id. (With gunicorn's access
    log merely configured, it builds its log atoms for every request, about a tenth of a 422's
    whole cost.)"""

    log_format = "text"

    def setup(self, cfg) -> None:
        super().setup(cfg)
        for handler in self.error_log.handlers:
            handler.setFormatter(formatter(self.log_format))
            handler.addFilter(RequestIdFilter())

    def access(self, resp, req, environ, request_time) -> None:
        return None


def logger_class(log_format: str) -> type[StockadeLogger]:
    return type(f"Stockade{log_format.title()}Logger", (StockadeLogger,), {"log_format": log_format})


class StockadeServer(BaseApplication):
    """gunicorn with our options and an app factory called in each worker process."""

    def __init__(self, factory: Callable[[], object], options: dict) -> None:
        self.factory = factory
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            if key in self.cfg.settings and value is not None:
                self.cfg.set(key, value)

    def load(self):
        return self.factory()


def _allow_open_files(needed: int) -> None:
    """Raise this process's soft open-files limit to `needed` when the hard limit allows it."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    if soft == resource.RLIM_INFINITY or soft >= needed:
        return
    target = needed if hard == resource.RLIM_INFINITY else min(needed, hard)
    try:
        resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
    except (ValueError, OSError):
        target = soft
    if target < needed:
        log.warning(
            "open-files limit %s is below the %s that %s connections per worker need; "
            "raise it (ulimit -n) or expect refused connections under load",
            target,
            needed,
            needed - SPARE_FILES,
        )


@contextmanager
def multiprocess_metrics(workers: int) -> Iterator[None]:
    """With several workers, /metrics adds up every worker's files in PROMETHEUS_MULTIPROC_DIR.
    Given: emptied first (files of an earlier run would count again). Not given: a temporary
    folder, removed when the server stops."""
    given = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    if workers == 1 and not given:
        yield
        return
    if given:
        Path(given).mkdir(parents=True, exist_ok=True)
        for stale in Path(given).glob("*.db"):
            stale.unlink()
        yield
        return
    folder = tempfile.mkdtemp(prefix="stockade-metrics-")
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = folder
    try:
        yield
    finally:
        del os.environ["PROMETHEUS_MULTIPROC_DIR"]
        shutil.rmtree(folder, ignore_errors=True)


def _worker_exited(arbiter, worker) -> None:
    """gunicorn child_exit: a dead worker's live gauges no longer count."""
    from prometheus_client import multiprocess

    multiprocess.mark_process_dead(worker.pid)


def serve(
    factory: Callable[[], object],
    host: str,
    port: int,
    workers: int,
    *,
    banner: str,
    connections: int = WORKER_CONNECTIONS,
    log_format: str = "text",
) -> None:
    """Run gunicorn until it stops; `banner` is printed once it listens (not before: the bind may fail)."""
    _allow_open_files(connections + SPARE_FILES)  # workers inherit it
    StockadeServer(
        factory,
        {
            "bind": f"{host}:{port}",
            "workers": workers,
            "worker_class": StockadeWorker,
            "worker_connections": connections,
            # gevent worker: the longest wait for a request's line and headers (also between
            # keep-alive requests); a client that dribbles its headers is cut off after it.
            "keepalive": 5,
            **NO_FORWARDING_HEADERS,
            "graceful_timeout": 20,
            "timeout": 60,
            "accesslog": None,
            "logger_class": logger_class(log_format),
            # Recent gunicorns open a control socket at one path per user ($HOME/.gunicorn/
            # gunicorn.ctl), served by a thread in the master: a second server (serve-tasks, a
            # test) would take the path over, and nothing here uses it. Older ones ignore this.
            "control_socket_disable": True,
            "loglevel": "info",
            "when_ready": lambda arbiter: print(banner, flush=True),
            "child_exit": _worker_exited if os.environ.get("PROMETHEUS_MULTIPROC_DIR") else None,
        },
    ).run()
