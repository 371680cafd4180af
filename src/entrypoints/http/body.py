"""Turning an untrusted request into a validated model, or a 400/413/415/422 that says what is wrong."""

from __future__ import annotations

import json
import re
from decimal import Decimal
from typing import Any, TypeVar

import falcon
from pydantic import ValidationError

from stockade.entrypoints.http.schemas import MAX_ID, Query, RequestBody

MAX_BODY_BYTES = 64 * 1024
_CANONICAL_ID = re.compile(r"[1-9][0-9]{0,18}")
#: An Idempotency-Key: 1 to 255 visible ASCII characters.
_IDEMPOTENCY_KEY = re.compile(r"[!-~]{1,255}")
#: Accepted by the fast parser, refused by the standard one. One search, not `token in raw`
#: per token: bytes.__contains__ first tries its argument as an integer, and raising and
#: formatting that TypeError cost a sold-out answer 3% of its instructions.
_NOT_JSON = re.compile(rb"NaN|Infinity")

B = TypeVar("B", bound=RequestBody)
Q = TypeVar("Q", bound=Query)


class ValidationFailed(falcon.HTTPUnprocessableEntity):
    """422 with per-field reasons: {"message": ..., "errors": {field: [reason, ...]}}."""

    def __init__(self, errors: dict[str, list[str]]) -> None:
        fields = list(errors)
        if len(fields) == 1:
            message = f"The {fields[0]} field is invalid: {errors[fields[0]][0]}; correct it and send again"
        else:
            message = f"{len(fields)} fields are invalid ({', '.join(fields)}); correct them and send again"
        super().__init__(description=message)
        self.errors = errors


def field_errors(exc: ValidationError) -> dict[str, list[str]]:
    return _by_field(exc.errors(include_url=False, include_input=False))


def _by_field(found: list[Any]) -> dict[str, list[str]]:
    errors: dict[str, list[str]] = {}
    for error in found:
        field = str(error["loc"][0]) if error["loc"] else "body"
        errors.setdefault(field, []).append("is required" if error["type"] == "missing" else error["msg"])
    return errors


class _HugeInt(str):
    """An integer literal too long to be any valid value; validation refuses it as not an integer."""


def _parse_int(text: str) -> int | _HugeInt:
    # Python refuses int() past 4300 digits with ValueError; we stop far earlier.
    return int(text) if len(text) <= 40 else _HugeInt(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def read_body(req: falcon.Request) -> bytes:
    """The raw body, at most 64 KiB (413 beyond, whatever Content-Length claims); a chunked
    body (no Content-Length) is read to its end like any other."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(description=f"Request body is larger than {MAX_BODY_BYTES} bytes")
    chunked = length is None and "chunked" in (req.get_header("Transfer-Encoding") or "").lower()
    try:
        # With a length, exactly that many bytes, as req.bounded_stream would read them (and
        # without the wrapper it builds); with neither a length nor chunks, no body.
        raw = req.stream.read(MAX_BODY_BYTES + 1 if chunked else length or 0)
    except Exception:  # the server's own refusal of a broken chunked encoding, or the client left
        raise falcon.HTTPBadRequest(
            description="The request body could not be read: check its chunked encoding or Content-Length"
        ) from None
    if len(raw) > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(description=f"Request body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def require_json(req: falcon.Request) -> None:
    """415 unless the body is declared JSON or not declared at all: a form or text/plain
    body (which a browser sends cross-site without asking first) is never parsed."""
    declared = req.content_type
    if declared is not None and declared.split(";", 1)[0].strip().lower() not in ("application/json", ""):
        raise falcon.HTTPUnsupportedMediaType(
            description="Send the body as JSON with Content-Type: application/json (or no Content-Type)"
        )


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object, or 400. NaN/Infinity are refused; floats become exact Decimals."""
    if not raw.strip():
        raise falcon.HTTPBadRequest(description="Request body must be a JSON object")
    try:
        data = json.loads(
            raw.decode("utf-8"), parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise falcon.HTTPBadRequest(description="Malformed JSON in request body: send one JSON object") from None
    if not isinstance(data, dict):
        raise falcon.HTTPBadRequest(description="Request body must be a JSON object")
    return data


def validated(model: type[B], raw: bytes) -> B:
    """`raw` as `model`, or 400 (not a JSON object) or 422 naming every invalid field.

    The fast path validates the bytes in one pass (pydantic's own parser) and answers when
    the body is a JSON object. A body it cannot read as one, or that needs exact decimals,
    goes through the standard library's parser, whose answer stands: 400 for what is not
    JSON, else each field's reasons.
    """
    if not model.exact_numbers and _NOT_JSON.search(raw) is None:
        try:
            return model.model_validate_json(raw)
        except ValidationError as exc:
            found = exc.errors(include_url=False, include_input=False)
            if all(error["loc"] for error in found):
                raise ValidationFailed(_by_field(found)) from None  # a JSON object, some fields wrong
            # not JSON, not an object, or beyond what the fast parser reads (huge integers): below
    data = parse_object(raw)
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise ValidationFailed(field_errors(exc)) from None


def json_body(req: falcon.Request, model: type[B]) -> B:
    require_json(req)
    return validated(model, read_body(req))


def query(req: falcon.Request, model: type[Q]) -> Q:
    """The query string as `model`; a parameter given empty or more than once is 422."""
    errors: dict[str, list[str]] = {}
    values: dict[str, Any] = {}
    for name in model.model_fields:
        value = req.params.get(name)
        if isinstance(value, list):
            errors[name] = ["is given more than once; send it once"]
        elif value == "":
            errors[name] = ["is empty; give it a value or leave it out"]
        elif value is not None:
            values[name] = value
    try:
        parsed = model.model_validate(values)
    except ValidationError as exc:
        errors = {**field_errors(exc), **errors}
    if errors:
        raise ValidationFailed(errors)
    return parsed


def path_id(raw: str) -> int:
    """An id from the path, in canonical decimal (no sign, no leading zero); else 404."""
    if not _CANONICAL_ID.fullmatch(raw) or int(raw) > MAX_ID:
        raise falcon.HTTPNotFound(description="Not found: no such id (ids are positive decimal integers)")
    return int(raw)


def idempotency_key(req: falcon.Request) -> str | None:
    """The Idempotency-Key header: 1..255 visible ASCII characters, or 422."""
    key = req.env.get("HTTP_IDEMPOTENCY_KEY")  # not get_header: see RequestMiddleware
    if key is None:
        return None
    if not _IDEMPOTENCY_KEY.fullmatch(key):
        raise ValidationFailed({"Idempotency-Key": ["must be 1 to 255 visible ASCII characters"]})
    return key
