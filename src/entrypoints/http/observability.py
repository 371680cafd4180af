"""Per request: its X-Request-ID (the client's sane one, else a new one) and one access log line."""

from __future__ import annotations

import logging
import re
import secrets
import time

import falcon

from stockade.application.tracing import request_id

access_log = logging.getLogger("stockade.access")

#: What a client may name its request: 1..128 visible ASCII characters.
_SANE_REQUEST_ID = re.compile(r"[!-~]{1,128}")

ACCESS_MESSAGE = "%s %s %s %.1fms"


def _access_record_template() -> tuple[dict[str, object], float]:
    """The fields every access record shares, from a real LogRecord, and the time that
    records' relativeCreated counts from. The caller's thread and process are left out, as
    every Stockade log line leaves them out."""
    model = logging.LogRecord(access_log.name, logging.INFO, __file__, 0, ACCESS_MESSAGE, None, None)
    fields = vars(model) | {"thread": None, "threadName": None, "process": None, "processName": None}
    return fields, model.created - model.relativeCreated / 1000


_ACCESS_FIELDS, _LOGGING_STARTED = _access_record_template()


def access_record(method: str, route: str, status: int, milliseconds: float, rid: str) -> logging.LogRecord:
    """The access line's record, the same fields as Logger.info(..., extra=...) would give
    it, built from the template: LogRecord.__init__ (the caller's file name, the thread,
    a copy of `extra`) cost a third of the line, and the line is written for every request."""
    record = logging.LogRecord.__new__(logging.LogRecord)
    fields = record.__dict__
    fields.update(_ACCESS_FIELDS)
    now = time.time()
    fields["created"] = now
    fields["msecs"] = int((now - int(now)) * 1000) + 0.0
    fields["relativeCreated"] = (now - _LOGGING_STARTED) * 1000
    fields["args"] = (method, route, status, milliseconds)
    fields["method"] = method
    fields["route"] = route
    fields["status"] = status
    fields["duration_ms"] = round(milliseconds, 3)
    fields["request_id"] = rid
    return record


class RequestIdMiddleware:
    """Takes or makes the request's id, answers with it, and logs the request when it is done:
    method, route template, status, duration and id (also in the log lines of the work it causes)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        given = req.get_header("X-Request-ID")
        req.context.request_id = given if given and _SANE_REQUEST_ID.fullmatch(given) else secrets.token_hex(16)
        req.context.request_id_token = request_id.set(req.context.request_id)
        req.context.received = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        rid = getattr(req.context, "request_id", None)
        if rid is None:  # refused before process_request ran
            return
        resp.set_header("X-Request-ID", rid)
        milliseconds = (time.perf_counter() - req.context.received) * 1000
        if access_log.isEnabledFor(logging.INFO):
            route = req.uri_template or "unmatched"
            access_log.handle(access_record(req.method, route, resp.status_code, milliseconds, rid))
        request_id.reset(req.context.request_id_token)
