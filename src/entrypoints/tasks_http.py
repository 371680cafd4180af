"""The internal task-enqueue API (contract section 6): never part of the public API."""

from __future__ import annotations

import json

import falcon

from stockade.application.facade import Shop
from stockade.entrypoints.http.body import parse_object, read_body
from stockade.entrypoints.http.errors import handle_unexpected
from stockade.entrypoints.http.schemas import MAX_ID


def _error(resp: falcon.Response, status: int, message: str) -> None:
    resp.status = status
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"error": message})


class OrderProcessedTask:
    """POST /tasks/order-processed {"order_id": n}: queue process_order durably."""

    def __init__(self, shop: Shop) -> None:
        self.shop = shop

    def on_post(self, req, resp) -> None:
        try:
            data = parse_object(read_body(req))
        except falcon.HTTPError as exc:
            _error(
                resp,
                413 if exc.status in (413, "413 Content Too Large", falcon.HTTP_413) else 400,
                exc.description or "Request body must be a JSON object",
            )
            return
        if "order_id" not in data:
            _error(resp, 400, "order_id is required")
            return
        order_id = data["order_id"]
        if type(order_id) is not int or not 1 <= order_id <= MAX_ID:
            _error(resp, 400, "order_id must be a positive integer")
            return
        self.shop.request_processing(order_id)
        resp.status = 202
        resp.content_type = falcon.MEDIA_JSON
        resp.text = json.dumps({"message": "Task queued", "order_id": order_id})


def _serialize(req, resp, exc: falcon.HTTPError) -> None:
    resp.content_type = falcon.MEDIA_JSON
    resp.text = json.dumps({"error": exc.description or str(exc.title)})


def create_tasks_app(shop: Shop) -> falcon.App:
    app = falcon.App()
    app.set_error_serializer(_serialize)
    app.add_error_handler(Exception, handle_unexpected)
    app.add_route("/tasks/order-processed", OrderProcessedTask(shop))
    return app
