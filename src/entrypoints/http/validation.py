"""Turning untrusted bytes into typed values, or a 400/413/422 that says what is wrong."""

from __future__ import annotations

import json
import re
from decimal import Decimal, InvalidOperation
from typing import Any

import falcon

MAX_BODY_BYTES = 64 * 1024
MAX_ID = 2**63 - 1
MAX_STOCK = 2**31 - 1
PRICE_LIMIT = Decimal(10) ** 13
_DIGITS = re.compile(r"[0-9]{1,19}")
_PRICE_TEXT = re.compile(r"\s*-?[0-9]+(\.[0-9]+)?\s*")


class ValidationFailed(falcon.HTTPUnprocessableEntity):
    """422 with per-field reasons: {"message": ..., "errors": {field: [reason, ...]}}."""

    def __init__(self, errors: dict[str, list[str]], message: str | None = None) -> None:
        first = next(iter(errors.items()))
        super().__init__(description=message or f"The {first[0]} field is invalid: {first[1][0]}")
        self.errors = errors


class _HugeInt(str):
    """An integer literal too long to be any valid value; validation refuses it as too large."""


def _parse_int(text: str) -> int | _HugeInt:
    # Python refuses int() past 4300 digits with ValueError; we stop far earlier.
    return int(text) if len(text) <= 40 else _HugeInt(text)


def _reject_constant(name: str) -> None:
    raise ValueError(f"{name} is not valid JSON")


def read_body(req: falcon.Request) -> bytes:
    """The raw body, at most 64 KiB (413 beyond, whatever Content-Length claims)."""
    length = req.content_length
    if length is not None and length > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(description=f"Request body is larger than {MAX_BODY_BYTES} bytes")
    raw = req.bounded_stream.read(MAX_BODY_BYTES + 1)
    if len(raw) > MAX_BODY_BYTES:
        raise falcon.HTTPContentTooLarge(description=f"Request body is larger than {MAX_BODY_BYTES} bytes")
    return raw


def parse_object(raw: bytes) -> dict[str, Any]:
    """A JSON object, or 400. NaN/Infinity are refused; floats become exact Decimals."""
    if not raw.strip():
        raise falcon.HTTPBadRequest(description="Request body must be a JSON object")
    try:
        data = json.loads(
            raw.decode("utf-8"), parse_float=Decimal, parse_int=_parse_int, parse_constant=_reject_constant
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        raise falcon.HTTPBadRequest(description="Malformed JSON in request body") from None
    if not isinstance(data, dict):
        raise falcon.HTTPBadRequest(description="Request body must be a JSON object")
    return data


def json_object(req: falcon.Request) -> dict[str, Any]:
    return parse_object(read_body(req))


class Fields:
    """Collects every field error of one body before answering 422."""

    def __init__(self, data: dict[str, Any]) -> None:
        self.data = data
        self.errors: dict[str, list[str]] = {}

    def fail(self, field: str, reason: str) -> None:
        self.errors.setdefault(field, []).append(reason)

    def done(self) -> None:
        if self.errors:
            raise ValidationFailed(self.errors)

    def integer(self, field: str, low: int, high: int, *, required: bool = True) -> int | None:
        if field not in self.data:
            if required:
                self.fail(field, "is required")
            return None
        value = self.data[field]
        if isinstance(value, _HugeInt):
            self.fail(field, f"must be at most {high}")
            return None
        if type(value) is not int:  # bool is a subclass of int: refuse it by exact type
            self.fail(field, "must be an integer")
            return None
        if not low <= value <= high:
            self.fail(field, f"must be between {low} and {high}")
            return None
        return value

    def text(self, field: str, max_length: int, *, required: bool = True) -> str | None:
        if field not in self.data:
            if required:
                self.fail(field, "is required")
            return None
        value = self.data[field]
        if not isinstance(value, str):
            self.fail(field, "must be a string")
            return None
        if not valid_unicode(value):
            self.fail(field, "must be valid Unicode text")
            return None
        if not value.strip():
            self.fail(field, "must not be blank")
            return None
        if len(value) > max_length:
            self.fail(field, f"must be at most {max_length} characters")
            return None
        return value

    def price(self, field: str, *, required: bool = True) -> Decimal | None:
        if field not in self.data:
            if required:
                self.fail(field, "is required")
            return None
        value = self.data[field]
        if isinstance(value, _HugeInt):
            self.fail(field, "must be below 10000000000000")
            return None
        if isinstance(value, bool) or not isinstance(value, (int, Decimal, str)):
            self.fail(field, "must be a number or a numeric string")
            return None
        if isinstance(value, str) and not _PRICE_TEXT.fullmatch(value):
            self.fail(field, "must be a number or a numeric string")
            return None
        try:
            amount = Decimal(value if not isinstance(value, str) else value.strip())
        except InvalidOperation:
            self.fail(field, "must be a number")
            return None
        if not amount.is_finite():
            self.fail(field, "must be a finite number")
        elif amount < 0:
            self.fail(field, "must be at least 0")
        elif amount >= PRICE_LIMIT:
            self.fail(field, "must be below 10000000000000")
        elif amount != amount.quantize(Decimal("0.01")):
            self.fail(field, "must have at most two decimal places")
        else:
            return amount.quantize(Decimal("0.01"))
        return None


def valid_unicode(value: str) -> bool:
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # lone surrogates from "\ud800" escapes
        return False
    return True


def path_id(raw: str) -> int:
    """An id from the path; anything that cannot name a row is 404, not 422."""
    if not _DIGITS.fullmatch(raw):
        raise falcon.HTTPNotFound(description="Not found")
    value = int(raw)
    if not 1 <= value <= MAX_ID:
        raise falcon.HTTPNotFound(description="Not found")
    return value


def query_int(req: falcon.Request, name: str, default: int | None, low: int, high: int) -> int | None:
    raw = req.get_param(name)
    if raw is None or raw == "":
        return default
    if not _DIGITS.fullmatch(raw) or not low <= int(raw) <= high:
        raise ValidationFailed({name: [f"must be an integer between {low} and {high}"]})
    return int(raw)


def idempotency_key(req: falcon.Request) -> str | None:
    """The Idempotency-Key header: 1..255 visible ASCII characters, or 422."""
    key = req.get_header("Idempotency-Key")
    if key is None:
        return None
    if not 1 <= len(key) <= 255 or not all(33 <= ord(c) <= 126 for c in key):
        raise ValidationFailed({"Idempotency-Key": ["must be 1 to 255 visible ASCII characters"]})
    return key
