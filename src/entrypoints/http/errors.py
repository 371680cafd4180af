"""Every error as JSON with `message`; domain refusals mapped to HTTP in one place."""

from __future__ import annotations

import json
import logging

import falcon
import sqlalchemy.exc

from stockade.adapters.sql.engine import is_schema_behind
from stockade.adapters.sql.migrate import RUN_MIGRATE
from stockade.application.ports import TransientStorageError
from stockade.domain import errors as domain
from stockade.entrypoints.http.validation import ValidationFailed

log = logging.getLogger("stockade.http")

#: Domain refusal -> HTTP status. Not-found errors are 404 here; a resource that got the
#: id from the body turns them into 422 itself (contract section 3).
DOMAIN_STATUS: dict[type[domain.DomainError], int] = {
    domain.OutOfStock: 409,
    domain.ProductNotFound: 404,
    domain.HoldNotFound: 404,
    domain.OrderNotFound: 404,
    domain.HoldNotActive: 409,
    domain.StockBelowReserved: 409,
    domain.ProductHasReservations: 409,
    domain.PreconditionFailed: 412,
    domain.IdempotencyKeyReused: 422,
    domain.IdempotencyKeyInFlight: 409,
}

_OUTAGE = (sqlalchemy.exc.OperationalError, sqlalchemy.exc.InterfaceError, sqlalchemy.exc.TimeoutError,
           sqlalchemy.exc.DisconnectionError, TransientStorageError)

_DEFAULT_MESSAGES = {404: "Not found", 405: "Method not allowed", 400: "Bad request", 413: "Request body too large"}


def domain_status(exc: domain.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 409


def error_body(status: int, message: str, errors: dict | None = None) -> str:
    body: dict = {"message": message}
    if errors:
        body["errors"] = errors
    return json.dumps(body)


def serialize_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    code = int(str(exc.status).split()[0]) if not isinstance(exc.status, int) else exc.status
    message = exc.description or _DEFAULT_MESSAGES.get(code) or str(exc.title)
    resp.content_type = falcon.MEDIA_JSON
    resp.text = error_body(code, message, getattr(exc, "errors", None) if isinstance(exc, ValidationFailed) else None)


def handle_domain_error(req, resp, exc: domain.DomainError, params) -> None:
    code = domain_status(exc)
    resp.status = code
    resp.content_type = falcon.MEDIA_JSON
    resp.text = error_body(code, exc.message)


def handle_unexpected(req, resp, exc: Exception, params) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc  # let Falcon render it with our serializer
    if is_schema_behind(exc):
        log.error("the database has no schema or an older one during %s %s: %s", req.method, req.path, RUN_MIGRATE)
        resp.status = 503
        resp.content_type = falcon.MEDIA_JSON
        resp.text = error_body(503, f"Service unavailable: the database has no schema yet; {RUN_MIGRATE}")
        return
    if isinstance(exc, _OUTAGE) or (isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated):
        log.error("storage unavailable during %s %s: %s", req.method, req.path, exc)
        resp.status = 503
        resp.set_header("Retry-After", "1")
        resp.content_type = falcon.MEDIA_JSON
        resp.text = error_body(503, "Service unavailable: the database did not answer; retry shortly")
        return
    log.exception("unexpected error during %s %s", req.method, req.path)
    resp.status = 500
    resp.content_type = falcon.MEDIA_JSON
    resp.text = error_body(500, "Internal server error")
