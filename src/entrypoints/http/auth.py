"""Who may call: the admin bearer token, and the payment provider's HMAC signature."""

from __future__ import annotations

import hashlib
import hmac
import re
from collections.abc import Callable
from datetime import datetime

import falcon

_STAMP = re.compile(r"[0-9]{1,12}")


class AdminGuard:
    """Bearer-token check for product writes and /api/logs, when a token is configured."""

    def __init__(self, token: str | None) -> None:
        self.token = token.encode() if token else None

    def __call__(self, req: falcon.Request) -> None:
        if self.token is None:
            return
        header = req.get_header("Authorization") or ""
        scheme, _, given = header.partition(" ")
        if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode("utf-8", "replace"), self.token):
            raise falcon.HTTPUnauthorized(
                description="A valid admin bearer token is required: send Authorization: Bearer <STOCKADE_ADMIN_TOKEN>",
                challenges=["Bearer"],
            )


class WebhookSignature:
    """`Stockade-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>`, when a
    secret is configured: t within 300 s of now, any one v1 matching (key rotation), in constant time."""

    TOLERANCE_SECONDS = 300

    def __init__(self, secret: str | None, now: Callable[[], datetime]) -> None:
        self.secret = secret.encode() if secret else None
        self.now = now

    def __call__(self, req: falcon.Request, raw: bytes) -> None:
        if self.secret is None:
            return
        header = req.get_header("Stockade-Signature") or ""
        parts: dict[str, list[str]] = {}
        for item in header.split(","):
            name, _, value = item.strip().partition("=")
            parts.setdefault(name, []).append(value)
        stamp = (parts.get("t") or [""])[0]
        if not _STAMP.fullmatch(stamp) or abs(self.now().timestamp() - int(stamp)) > self.TOLERANCE_SECONDS:
            raise falcon.HTTPUnauthorized(
                description="Missing, malformed or expired Stockade-Signature: sign with the current time",
                challenges=["Stockade-Signature"],
            )
        expected = hmac.new(self.secret, stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
        if not any(
            hmac.compare_digest(expected.encode(), given.encode("ascii", "replace")) for given in parts.get("v1", [])
        ):
            raise falcon.HTTPUnauthorized(
                description="Invalid Stockade-Signature: sign the raw body with STOCKADE_WEBHOOK_SECRET",
                challenges=["Stockade-Signature"],
            )
