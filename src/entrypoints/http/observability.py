"""Per request: its X-Request-ID (the client's sane one, else a new one) and one access log line."""

from __future__ import annotations

import os
import re
import time

import falcon

from stockade.application.tracing import request_id
from stockade.entrypoints.logs import log_access

#: What a client may name its request: 1..128 visible ASCII characters.
_SANE_REQUEST_ID = re.compile(r"[!-~]{1,128}")


class RequestIdMiddleware:
    """Takes or makes the request's id, answers with it, and logs the request when it is done:
    method, route template, status, duration and id (also in the log lines of the work it causes)."""

    def process_request(self, req: falcon.Request, resp: falcon.Response) -> None:
        # The environ itself, not req.get_header: its lookup of an absent header raises and
        # catches a KeyError, and most requests come without an id.
        given = req.env.get("HTTP_X_REQUEST_ID")
        rid = given if given and _SANE_REQUEST_ID.fullmatch(given) else os.urandom(16).hex()
        context = req.context
        context.request_id = rid
        context.request_id_token = request_id.set(rid)
        context.received = time.perf_counter()

    def process_response(self, req: falcon.Request, resp: falcon.Response, resource, req_succeeded: bool) -> None:
        rid = getattr(req.context, "request_id", None)
        if rid is None:  # refused before process_request ran
            return
        resp.set_header("X-Request-ID", rid)
        milliseconds = (time.perf_counter() - req.context.received) * 1000
        log_access(req.method, req.uri_template or "unmatched", resp.status_code, milliseconds, rid)
        request_id.reset(req.context.request_id_token)
