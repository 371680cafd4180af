"""The one place that maps failures to HTTP: domain refusals, HTTP errors, outages; every body JSON with `message`."""

from __future__ import annotations

import functools
import logging

import falcon
import sqlalchemy.exc
from pydantic import BaseModel

from stockade.adapters.sql.engine import is_schema_behind
from stockade.adapters.sql.migrate import RUN_MIGRATE
from stockade.application.ports import TransientStorageError
from stockade.domain import errors as domain
from stockade.entrypoints.http.body import ValidationFailed
from stockade.entrypoints.http.schemas import ErrorBody

log = logging.getLogger("stockade.http")

#: Domain refusal -> HTTP status.
DOMAIN_STATUS: dict[type[domain.DomainError], int] = {
    domain.OutOfStock: 409,
    domain.LimitPerCustomerReached: 409,
    domain.ProductNotFound: 404,
    domain.HoldNotFound: 404,
    domain.OrderNotFound: 404,
    domain.HoldNotActive: 409,
    domain.StockBelowReserved: 409,
    domain.ProductHasReservations: 409,
    domain.PreconditionFailed: 412,
    domain.HoldTooOld: 409,
    domain.OrderAlreadyProcessed: 409,
    domain.NoRefundRequired: 409,
    domain.StockAdjustmentRefused: 409,
    domain.IdempotencyKeyReused: 422,
    domain.IdempotencyKeyInFlight: 409,
}

#: A not-found about an id the *body* carried is a validation failure of that field (422,
#: contract section 3); about an id in the path, 404.
BODY_REFERENCES: dict[type[domain.DomainError], str] = {
    domain.ProductNotFound: "product_id",
    domain.HoldNotFound: "hold_id",
}

_OUTAGE = (
    sqlalchemy.exc.OperationalError,
    sqlalchemy.exc.InterfaceError,
    sqlalchemy.exc.TimeoutError,
    sqlalchemy.exc.DisconnectionError,
    TransientStorageError,
)

_DEFAULT_MESSAGES = {
    404: "Not found: check the path",
    405: "Method not allowed: see /api/openapi.json",
    400: "Bad request",
    413: "Request body too large",
}


def send(resp: falcon.Response, status: int, body: BaseModel | str) -> None:
    """Answer `status` with `body` as JSON (a str: already rendered)."""
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = body if isinstance(body, str) else body.model_dump_json(exclude_none=isinstance(body, ErrorBody))


def domain_status(exc: domain.DomainError) -> int:
    for cls in type(exc).__mro__:
        if cls in DOMAIN_STATUS:
            return DOMAIN_STATUS[cls]
    return 409


def serialize_http_error(req: falcon.Request, resp: falcon.Response, exc: falcon.HTTPError) -> None:
    message = exc.description or _DEFAULT_MESSAGES.get(exc.status_code) or str(exc.title)
    resp.content_type = falcon.MEDIA_JSON
    errors = exc.errors if isinstance(exc, ValidationFailed) else None
    resp.text = ErrorBody.model_construct(message=message, errors=errors).model_dump_json(exclude_none=True)


#: A refusal that is a validation failure of one body field (422), with its message as the reason.
FIELD_REFUSALS: dict[type[domain.DomainError], str] = {domain.CustomerRequired: "customer_id"}


def handle_domain_error(req: falcon.Request, resp: falcon.Response, exc: domain.DomainError, params) -> None:
    field = BODY_REFERENCES.get(type(exc))
    if field is not None and "{" not in (req.uri_template or "{"):
        raise ValidationFailed({field: [f"does not name an existing {field.removesuffix('_id')}"]})
    if type(exc) in FIELD_REFUSALS:
        raise ValidationFailed({FIELD_REFUSALS[type(exc)]: [exc.message]})
    send(resp, domain_status(exc), _refusal_body(exc.message))


@functools.lru_cache(maxsize=256)
def _refusal_body(message: str) -> str:
    """A refusal's body, rendered once per message (a sold-out answer is the same every time)."""
    return ErrorBody.model_construct(message=message).model_dump_json(exclude_none=True)


def handle_unexpected(req: falcon.Request, resp: falcon.Response, exc: Exception, params) -> None:
    if isinstance(exc, falcon.HTTPError):
        raise exc  # let Falcon render it with our serializer
    if is_schema_behind(exc):
        log.error("the database has no schema or an older one during %s %s: %s", req.method, req.path, RUN_MIGRATE)
        send(resp, 503, ErrorBody(message=f"Service unavailable: the database has no schema yet; {RUN_MIGRATE}"))
        return
    if isinstance(exc, _OUTAGE) or (isinstance(exc, sqlalchemy.exc.DBAPIError) and exc.connection_invalidated):
        log.error("storage unavailable during %s %s: %s", req.method, req.path, exc)
        resp.set_header("Retry-After", "1")
        send(resp, 503, ErrorBody(message="Service unavailable: the database did not answer; retry shortly"))
        return
    log.exception("unexpected error during %s %s", req.method, req.path)
    send(resp, 500, ErrorBody(message="Internal server error; retry later, and report it if it persists"))
