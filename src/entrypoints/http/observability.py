"""Per request: its X-Request-ID (the client's sane one, else a new one), one access log line,
and its count and latency in /metrics."""

from __future__ import annotations

import re
from random import getrandbits
from time import perf_counter

import falcon

from stockade.application.tracing import request_id
from stockade.entrypoints.http.metrics import RequestCounts
from stockade.entrypoints.logs import log_access

#: What a client may name its request: 1..128 visible ASCII characters. Ids we make are 128
#: random bits from the process's own generator (reseeded in every forked worker): an id
#: tells log lines apart, it guards nothing, and a system call per request costs more.
_SANE_REQUEST_ID = re.compile(r"[!-~]{1,128}")


class RequestMiddleware:
    """Takes or makes the request's id, answers with it, and when the request is done logs it
    (method, route template, status, duration and id, which the log lines of the work it
    causes carry too) and counts it.

    One middleware for the three, first in and so last out: the log line and the count see
    the final status. One clock reading times both, and every field they share is read
    once: this bookkeeping runs on every request, a sold-out answer included."""

    def __init__(self, counts: RequestCounts) -> None:
        self.counts = counts

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The environ itself, not req.get_header: its lookup of an absent header raises and
        # catches a KeyError, and most requests come without an id.
        given = req.env.get("HTTP_X_REQUEST_ID")
        rid = given if given and _SANE_REQUEST_ID.fullmatch(given) else f"{getrandbits(128):032x}"
        context = req.context
        context.request_id = rid
        context.outcome = None  # see Outcomes.count
        context.request_id_token = request_id.set(rid)
        context.received = perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        context = req.context
        route = req.uri_template or "unmatched"
        status = resp.status_code
        received = context.get("received")  # not getattr: a miss there raises and catches
        if received is None:  # refused before process_request ran
            self.counts.record(req.method, route, status, None, None)
            return
        seconds = perf_counter() - received
        rid = context.request_id
        try:
            resp.set_header("X-Request-ID", rid)
            log_access(req.method, route, status, seconds * 1000, rid)
            self.counts.record(req.method, route, status, seconds, context.outcome)
        finally:  # a failed count must not leave this greenlet's later lines with this id
            request_id.reset(context.request_id_token)
