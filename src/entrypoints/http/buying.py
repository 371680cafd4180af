"""Buying: direct purchases and orders from holds (and placing holds), each once per Idempotency-Key."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from stockade.application.commands import OrderView
from stockade.application.idempotency import Answer
from stockade.domain.errors import LimitPerCustomerReached, OutOfStock
from stockade.entrypoints.http.auth import AdminGuard
from stockade.entrypoints.http.body import idempotency_key, json_body, path_id, query
from stockade.entrypoints.http.errors import handle_domain_error, send
from stockade.entrypoints.http.metrics import Outcomes
from stockade.entrypoints.http.schemas import (
    OrderEnvelope,
    OrderFromHoldRequest,
    OrderListQuery,
    OrderPage,
    RequestBody,
)

#: The refusals of a take of units, by the outcome /metrics counts them under.
REFUSAL_OUTCOMES: dict[type[Exception], str] = {OutOfStock: "out_of_stock", LimitPerCustomerReached: "limit_reached"}


def answered(req: falcon.Request, resp: falcon.Response, run: Callable[[str | None], Answer[Any]]) -> Answer[Any]:
    """`run(Idempotency-Key)`'s answer; a replay is marked `Idempotent-Replayed: true`."""
    answer = run(idempotency_key(req))
    if answer.replayed:
        resp.set_header("Idempotent-Replayed", "true")
    return answer


def first_answer(req: falcon.Request, resp: falcon.Response, run: Callable[[str | None], Answer[Any]]) -> Any:
    """`run(Idempotency-Key)`'s result, marked as a replay like `answered`; a refusal (first or
    replayed) is raised for the error handlers to render."""
    answer = answered(req, resp, run)
    if answer.refusal is not None:
        raise answer.refusal
    return answer.result


class TakeUnitsResource:
    """POST {product_id, quantity}: a purchase or a hold, given the use case and how to render it."""

    def __init__(
        self,
        model: type[RequestBody],
        take_once: Callable[[Any, str | None], Answer[Any]],
        render: Callable[[Any], Any],
        outcomes: Outcomes,
    ) -> None:
        self.model = model
        self.take_once = take_once
        self.render = render
        self.outcomes = outcomes

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        body = json_body(req, self.model)
        try:
            answer = answered(req, resp, lambda key: self.take_once(body, key))
        except falcon.HTTPError as exc:
            self.outcomes.count(req, f"http_{exc.status_code}")
            raise
        refusal = answer.refusal
        outcome = "created" if refusal is None else REFUSAL_OUTCOMES.get(type(refusal))
        if outcome is not None:  # a replay is the first answer again, not a second take
            self.outcomes.count(req, "replayed" if answer.replayed else outcome)
        if refusal is None:
            send(resp, 201, self.render(answer.result))
        else:
            # Rendered here rather than raised: a sold-out answer is this endpoint's most common
            # one under a flash sale, and Falcon's error path would cost it 5% more (callgrind).
            handle_domain_error(req, resp, refusal, None)


class OrdersResource:
    """POST /api/orders {hold_id}: the hold becomes a pending order. GET: a page of orders (admin)."""

    def __init__(
        self,
        order_from_hold_once: Callable[..., Answer[Any]],
        render: Callable[[Any], Any],
        list_orders: Callable[..., tuple[list[OrderView], int | None]],
        guard: AdminGuard,
    ) -> None:
        self.order_from_hold_once = order_from_hold_once
        self.render = render
        self.list_orders = list_orders
        self.guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard(req)
        send(resp, 200, OrderPage.of(*self.list_orders(**query(req, OrderListQuery).model_dump())))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        command = json_body(req, OrderFromHoldRequest).command()
        result = first_answer(req, resp, lambda key: self.order_from_hold_once(command, key))
        send(resp, 201, self.render(result))


class OrderResource:
    def __init__(self, get_order: Callable[[int], OrderView]) -> None:
        self.get_order = get_order

    def on_get(self, req: falcon.Request, resp: falcon.Response, order_id: str) -> None:
        send(resp, 200, OrderEnvelope.of(self.get_order(path_id(order_id))))


class OrderActionResource:
    """POST /api/orders/{id}/cancel or /refund (admin): the order after the action."""

    def __init__(self, act: Callable[[int], OrderView], guard: AdminGuard) -> None:
        self.act = act
        self.guard = guard

    def on_post(self, req: falcon.Request, resp: falcon.Response, order_id: str) -> None:
        self.guard(req)
        send(resp, 200, OrderEnvelope.of(self.act(path_id(order_id))))
