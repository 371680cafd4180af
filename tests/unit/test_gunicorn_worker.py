"""The gunicorn worker class's own behaviour, apart from serving."""

from __future__ import annotations

import gc
import socket

from gunicorn import http
from gunicorn.config import Config
from gunicorn.glogging import Logger
from gunicorn.workers.ggevent import GeventWorker

from stockade.entrypoints.gunicorn_app import NO_FORWARDING_HEADERS, StockadeWorker


def test_a_worker_freezes_what_it_built_out_of_garbage_collection(monkeypatch) -> None:
    """The app and its services live as long as the worker: once built, the collector's
    generations no longer hold them, so its full collections stop walking them."""
    built: list[object] = []
    monkeypatch.setattr(GeventWorker, "load_wsgi", lambda self: built.append([{"app": n} for n in range(100)]))
    gc.unfreeze()
    try:
        StockadeWorker.load_wsgi(object.__new__(StockadeWorker))
        assert built, "the app was loaded"
        assert gc.get_freeze_count() > 0
        assert not any(obj is built[0] for obj in gc.get_objects())
    finally:
        gc.unfreeze()


class _Recording:
    """A server-side socket that records each sendall, the bytes of each system call."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.sent: list[bytes] = []

    def sendall(self, data: bytes) -> None:
        self.sent.append(bytes(data))
        self.sock.sendall(data)

    def __getattr__(self, name: str):
        return getattr(self.sock, name)


def _serve_one(app, request: bytes, settings: dict | None = None) -> tuple[list[bytes], bytes, bool]:
    """One request through StockadeWorker.handle_request and gunicorn's own parser and
    response: what each send carried, what the client read, and whether gunicorn ends the
    connection after it (StopIteration)."""
    server, client = socket.socketpair()
    with server, client:
        client.sendall(request)
        worker = object.__new__(StockadeWorker)
        worker.cfg = Config()
        for name, value in (settings or {}).items():
            worker.cfg.set(name, value)
        worker.wsgi = app
        worker.nr, worker.max_requests, worker.alive = 0, 1000, True
        worker.log = Logger(worker.cfg)
        recording = _Recording(server)
        req = next(http.get_parser(worker.cfg, recording, ("127.0.0.1", 1)))
        try:
            worker.handle_request("test", req, recording, ("127.0.0.1", 1))
        except StopIteration:
            closed = True
        else:
            closed = False
        server.shutdown(socket.SHUT_WR)
        received = b"".join(iter(lambda: client.recv(65536), b""))
    return recording.sent, received, closed


def _app(status: str, chunks: list[bytes]):
    def app(environ, start_response):
        length = [("Content-Length", str(sum(map(len, chunks))))] if status != "204 No Content" else []
        start_response(status, [("Content-Type", "application/json"), *length])
        return chunks

    return app


GET = b"GET /x HTTP/1.1\r\nHost: x\r\n\r\n"


def test_a_response_leaves_with_its_head_in_one_send() -> None:
    """gunicorn sends a response's head, then its body, each with a system call of its own;
    the worker sends both as one."""
    sent, received, closed = _serve_one(_app("200 OK", [b'{"status":"ok"}']), GET)
    assert len(sent) == 1, sent
    assert sent[0].startswith(b"HTTP/1.1 200 OK\r\n") and sent[0].endswith(b'\r\n\r\n{"status":"ok"}')
    assert received == sent[0] and not closed


def test_a_response_without_a_body_still_leaves_and_later_chunks_follow_the_first() -> None:
    sent, received, closed = _serve_one(_app("204 No Content", []), GET)
    assert len(sent) == 1 and sent[0].startswith(b"HTTP/1.1 204 No Content\r\n"), sent
    assert received == sent[0] and not closed

    sent, received, _ = _serve_one(_app("200 OK", [b'{"a":', b"1}"]), GET)
    assert len(sent) == 2 and sent[0].endswith(b'\r\n\r\n{"a":') and sent[1] == b"1}", sent
    assert received.endswith(b'{"a":1}')


def test_the_last_response_of_a_closing_connection_leaves_too() -> None:
    """gunicorn ends a connection the client asked to close by raising StopIteration after
    the response: what the worker held must have gone by then."""
    closing = b"GET /x HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
    for app in (_app("200 OK", [b"{}"]), _app("204 No Content", [])):
        sent, received, closed = _serve_one(app, closing)
        assert len(sent) == 1 and received == sent[0], sent
        assert closed


def test_no_peer_sets_the_scheme_or_the_path_by_a_header() -> None:
    """Not even a local one, which gunicorn trusts by default: the API builds no URL from
    them, and gunicorn's check of every peer against its trusted proxies is skipped."""
    seen: list[tuple[str, str, str]] = []

    def app(environ, start_response):
        seen.append((environ["wsgi.url_scheme"], environ["SCRIPT_NAME"], environ["PATH_INFO"]))
        return _app("200 OK", [b"{}"])(environ, start_response)

    forwarded = (
        b"GET /x HTTP/1.1\r\nHost: x\r\nX-Forwarded-Proto: https\r\nX-Forwarded-Ssl: off\r\n"
        b"SCRIPT-NAME: /elsewhere\r\n\r\n"
    )
    _, received, _ = _serve_one(app, forwarded, NO_FORWARDING_HEADERS)
    assert received.startswith(b"HTTP/1.1 200 OK\r\n"), received  # conflicting scheme headers: no 400
    assert seen == [("http", "", "/x")]
