"""POST /api/payments/webhook: signature first, then the body, then exactly one effect per key."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from stockade.application.commands import WebhookResult
from stockade.domain.model import WebhookOutcome
from stockade.entrypoints.http.auth import WebhookSignature
from stockade.entrypoints.http.body import read_body, require_json, validated
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.metrics import Outcomes
from stockade.entrypoints.http.schemas import PaymentNotificationBody, PaymentResultBody


class WebhookResource:
    def __init__(
        self, payment: Callable[[str, int, str], WebhookResult], signature: WebhookSignature, outcomes: Outcomes
    ) -> None:
        self.payment = payment
        self.signature = signature
        self.outcomes = outcomes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        require_json(req)
        raw = read_body(req)
        self.signature(req, raw)
        note = validated(PaymentNotificationBody, raw)
        result = self.payment(note.idempotency_key, note.order_id, note.result)
        if result.replayed:
            resp.set_header("Idempotent-Replayed", "true")
        self.outcomes.count(req, "replayed" if result.replayed else result.outcome.value)
        send(resp, 202 if result.outcome is WebhookOutcome.DEFERRED else 200, PaymentResultBody.of(result))
