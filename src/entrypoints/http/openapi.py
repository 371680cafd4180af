"""The OpenAPI 3.0.3 document of the public API (contract sections 3, 4 and 5).

Built as plain dicts so that the limits it states are the ones validation enforces
(`MAX_ID`, `MAX_STOCK`, `PRICE_LIMIT`, `MAX_BODY_BYTES`, the configured max quantity).
Response objects list every field and no other (`additionalProperties: false`), so a
schema-conformance check pins the exact JSON shapes.
"""

from __future__ import annotations

from typing import Any

from stockade.entrypoints.http.validation import MAX_BODY_BYTES, MAX_ID, MAX_STOCK, PRICE_LIMIT

JSON = "application/json"
_PRICE_DIGITS = len(str(PRICE_LIMIT)) - 1  # 10^13 -> at most 13 integer digits

ORDER_STATUSES = ["created", "pending", "paid", "processed", "cancelled"]
HOLD_STATUSES = ["active", "used", "released", "expired"]


def _ref(name: str) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{name}"}


def _obj(properties: dict[str, Any], required: list[str] | None = None, *, closed: bool = True,
         **extra: Any) -> dict[str, Any]:
    schema: dict[str, Any] = {"type": "object", "properties": properties,
                              "required": list(properties) if required is None else required}
    if not schema["required"]:
        del schema["required"]
    if closed:
        schema["additionalProperties"] = False
    schema.update(extra)
    return schema


def _id(description: str = "A positive id below 2^63") -> dict[str, Any]:
    return {"type": "integer", "format": "int64", "minimum": 1, "maximum": MAX_ID, "description": description}


def _nullable(schema: dict[str, Any]) -> dict[str, Any]:
    return {**schema, "nullable": True}


_TIMESTAMP = {"type": "string", "format": "date-time", "pattern": r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z$",
              "example": "2026-01-07T08:00:00.000000Z", "description": "UTC, microseconds, Z"}
_MONEY = {"type": "string", "pattern": r"^[0-9]+\.[0-9]{2}$", "example": "15000000.00",
          "description": "A decimal amount with exactly two places"}


def _schemas(max_quantity: int) -> dict[str, Any]:
    quantity = {"type": "integer", "minimum": 1, "maximum": max_quantity,
                "description": f"Units; 1..{max_quantity} (STOCKADE_MAX_QUANTITY)"}
    stock = {"type": "integer", "format": "int32", "minimum": 0, "maximum": MAX_STOCK}
    name = {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S",
            "description": "1..255 characters, not blank"}
    price_in = {
        "description": f">= 0, at most two decimal places, below {PRICE_LIMIT}; a JSON number or a numeric string",
        "oneOf": [
            {"type": "number", "minimum": 0, "maximum": int(PRICE_LIMIT), "exclusiveMaximum": True,
             "multipleOf": 0.01},
            {"type": "string", "pattern": rf"^[0-9]{{1,{_PRICE_DIGITS}}}(\.[0-9]{{1,2}})?$", "example": "19.99"},
        ],
    }
    product_summary = _obj({"id": _id(), "name": {"type": "string"}, "price": _MONEY,
                            "stock": {"type": "integer", "minimum": 0}},
                           description="The product as it is now (after the sale, for a purchase)")
    return {
        "Error": _obj(
            {"message": {"type": "string"},
             "errors": {"type": "object", "description": "Field -> reasons (422 only)",
                        "additionalProperties": {"type": "array", "items": {"type": "string"}}}},
            ["message"],
        ),
        "Product": _obj({
            "id": _id(), "name": {"type": "string"}, "price": _MONEY,
            "stock": {"type": "integer", "minimum": 0, "description": "Units on hand, not yet sold"},
            "reserved": {"type": "integer", "minimum": 0,
                         "description": "Units of active holds and pending orders"},
            "available": {"type": "integer", "minimum": 0, "description": "stock - reserved"},
            "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP,
        }),
        "ProductEnvelope": _obj({"data": _ref("Product")}),
        "ProductPage": _obj({
            "data": {"type": "array", "items": _ref("Product"), "description": "Ordered by id"},
            "meta": _obj({"next_after_id": _nullable({**_id("`after_id` of the next page; null at the end")})}),
        }),
        "ProductCreate": _obj({"name": name, "price": price_in, "stock": stock}, closed=False),
        "ProductUpdate": _obj({"name": name, "price": price_in, "stock": stock}, [], closed=False,
                              minProperties=1,
                              description="Any of name, price, stock; stock below `reserved` is 409"),
        "ProductSummary": product_summary,
        "Order": _obj({
            "id": _id(), "product_id": _id(), "hold_id": _nullable(_id()), "quantity": {"type": "integer",
                                                                                         "minimum": 1},
            "total_price": _MONEY, "status": {"type": "string", "enum": ORDER_STATUSES},
            "created_at": _TIMESTAMP, "updated_at": _TIMESTAMP, "product": _ref("ProductSummary"),
        }),
        "OrderEnvelope": _obj({"data": _ref("Order")}),
        "BuyRequest": _obj({"product_id": _id(), "quantity": quantity}, closed=False),
        "NewHold": _obj({
            "hold_id": _id(), "expires_at": _TIMESTAMP, "product_id": _id(),
            "quantity": {"type": "integer", "minimum": 1}, "status": {"type": "string", "enum": ["active"]},
        }),
        "Hold": _obj({
            "hold_id": _id(), "product_id": _id(), "quantity": {"type": "integer", "minimum": 1},
            "status": {"type": "string", "enum": HOLD_STATUSES,
                       "description": "`expired` as soon as the TTL passes, swept or not"},
            "expires_at": _TIMESTAMP, "order_id": _nullable(_id()),
        }),
        "OrderFromHoldRequest": _obj({"hold_id": _id()}, closed=False),
        "PendingOrder": _obj({
            "order_id": _id(), "status": {"type": "string", "enum": ["pending"]}, "total_price": _MONEY,
            "hold_id": _id(), "product_id": _id(), "quantity": {"type": "integer", "minimum": 1},
        }),
        "PaymentNotification": _obj({
            "idempotency_key": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": r"\S"},
            "order_id": _id(),
            "status": {"type": "string", "enum": ["success", "failure", "failed"],
                       "description": "`failed` is accepted as `failure`"},
        }, closed=False),
        "PaymentResult": _obj({
            "order_id": _id(),
            "status": {"type": "string", "enum": [*ORDER_STATUSES, "deferred"],
                       "description": "The order's status after this delivery, or `deferred`"},
            "idempotency_key": {"type": "string"},
            "outcome": {"type": "string", "enum": ["applied", "deferred", "ignored"]},
        }),
        "LoggedEvent": _obj({
            "id": _id(), "event": {"type": "string"}, "data": {"type": "object"}, "created_at": _TIMESTAMP,
        }),
        "LogPage": _obj({
            "data": {"type": "array", "items": _ref("LoggedEvent"), "description": "Newest first"},
            "meta": _obj({"next_before_id": _nullable(_id("`before_id` of the next page; null at the end"))}),
        }),
        "Health": _obj({"status": {"type": "string", "enum": ["ok"]}}),
        "Ready": _obj({"status": {"type": "string", "enum": ["ok"]},
                       "checks": {"type": "object", "additionalProperties": {"type": "string"}}}),
        "NotReady": _obj({"message": {"type": "string"},
                          "checks": {"type": "object", "additionalProperties": {"type": "string"},
                                     "description": "Component -> `ok` or why it failed"}}),
    }


_REPLAYED = {"$ref": "#/components/headers/IdempotentReplayed"}


def _json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json_response(description, _ref("Error"), headers)


_OUTAGE = _error("The database did not answer (a real outage); nothing was written")


def _body_errors() -> dict[str, Any]:
    return {
        "400": _error("Malformed JSON or a body that is not a JSON object"),
        "413": _error(f"Body larger than {MAX_BODY_BYTES} bytes"),
    }


def _unauthorized() -> dict[str, Any]:
    return {"401": _error("Admin token configured and no valid `Authorization: Bearer` header",
                          {"WWW-Authenticate": {"schema": {"type": "string"}}})}


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {"name": name, "in": "path", "required": True, "description": f"The {what}'s id; anything that "
            "is not a positive integer below 2^63, or names nothing, is 404", "schema": _id()}


def _json_body(schema_name: str) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(schema_name)}}}


def _idempotent_post(summary: str, body: str, created: dict[str, Any], conflict: str, unprocessable: str,
                     operation_id: str) -> dict[str, Any]:
    replayable = {"Idempotent-Replayed": _REPLAYED}
    return {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["buying"],
        "parameters": [{"$ref": "#/components/parameters/IdempotencyKey"}],
        "requestBody": _json_body(body),
        "responses": {
            "201": {**created, "headers": replayable},
            **_body_errors(),
            "409": _error(conflict + "; or the first request with this Idempotency-Key is still in flight",
                          replayable),
            "422": _error(unprocessable + "; or this Idempotency-Key came before with another body, or is "
                          "not 1..255 visible ASCII characters", replayable),
            "503": _OUTAGE,
        },
    }


def _paths(max_quantity: int) -> dict[str, Any]:
    etag = {"ETag": {"$ref": "#/components/headers/ETag"}}
    admin = [{"adminBearer": []}]
    return {
        "/api/products": {
            "get": {
                "summary": "List products by id, a page at a time",
                "operationId": "listProducts",
                "tags": ["products"],
                "parameters": [
                    {"name": "limit", "in": "query", "description": "Page size (default 50)",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 200, "default": 50}},
                    {"name": "after_id", "in": "query", "description": "Only products with a larger id",
                     "schema": {"type": "integer", "format": "int64", "minimum": 0, "maximum": MAX_ID,
                                "default": 0}},
                ],
                "responses": {
                    "200": _json_response("One page of live products", _ref("ProductPage")),
                    "422": _error("`limit` or `after_id` out of range or not an integer"),
                    "503": _OUTAGE,
                },
            },
            "post": {
                "summary": "Create a product",
                "operationId": "createProduct",
                "tags": ["products"],
                "security": admin,
                "requestBody": _json_body("ProductCreate"),
                "responses": {
                    "201": _json_response("Created", _ref("ProductEnvelope"), etag),
                    **_body_errors(), **_unauthorized(),
                    "422": _error("A field broke its rule"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/products/{product_id}": {
            "parameters": [_path_id("product_id", "product")],
            "get": {
                "summary": "Read one live product",
                "operationId": "getProduct",
                "tags": ["products"],
                "responses": {
                    "200": _json_response("The product", _ref("ProductEnvelope"), etag),
                    "404": _error("No live product has that id"),
                    "503": _OUTAGE,
                },
            },
            "put": {
                "summary": "Change any of name, price, stock",
                "description": "With `If-Match`, applies only if the product is unchanged since that ETag "
                               "was sent (sales change it too); without, applies unconditionally.",
                "operationId": "updateProduct",
                "tags": ["products"],
                "security": admin,
                "parameters": [{"$ref": "#/components/parameters/IfMatch"}],
                "requestBody": _json_body("ProductUpdate"),
                "responses": {
                    "200": _json_response("The product after the change", _ref("ProductEnvelope"), etag),
                    **_body_errors(), **_unauthorized(),
                    "404": _error("No live product has that id"),
                    "409": _error("`stock` below the units reserved by holds and pending orders"),
                    "412": _error("`If-Match` does not match the product's current ETag"),
                    "422": _error("A field broke its rule, or the body names no field"),
                    "503": _OUTAGE,
                },
            },
            "delete": {
                "summary": "Delete a product (its orders keep their data)",
                "operationId": "deleteProduct",
                "tags": ["products"],
                "security": admin,
                "responses": {
                    "204": {"description": "Deleted; gone from reads"},
                    **_unauthorized(),
                    "404": _error("No live product has that id"),
                    "409": _error("The product has active holds or pending orders"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/orders/purchase": {
            "post": _idempotent_post(
                "Buy units now: stock drops at once, the order is `created`", "BuyRequest",
                _json_response("The order, with its product after the sale", _ref("OrderEnvelope")),
                "Out of stock", f"A field broke its rule (quantity 1..{max_quantity}) or `product_id` names "
                "no product", "purchase"),
        },
        "/api/orders": {
            "post": _idempotent_post(
                "Turn an active hold into a `pending` order", "OrderFromHoldRequest",
                _json_response("The pending order", _ref("PendingOrder")),
                "The hold was already used, released or has expired",
                "`hold_id` is not a positive integer or names no hold", "orderFromHold"),
        },
        "/api/orders/{order_id}": {
            "parameters": [_path_id("order_id", "order")],
            "get": {
                "summary": "Read an order",
                "operationId": "getOrder",
                "tags": ["buying"],
                "responses": {
                    "200": _json_response("The order", _ref("OrderEnvelope")),
                    "404": _error("No order has that id"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/holds": {
            "post": _idempotent_post(
                "Reserve units for the hold TTL", "BuyRequest",
                _json_response("The new hold", _ref("NewHold")), "Out of stock",
                f"A field broke its rule (quantity 1..{max_quantity}) or `product_id` names no product",
                "placeHold"),
        },
        "/api/holds/{hold_id}": {
            "parameters": [_path_id("hold_id", "hold")],
            "get": {
                "summary": "Read a hold",
                "operationId": "getHold",
                "tags": ["buying"],
                "responses": {
                    "200": _json_response("The hold, with the status it has now", _ref("Hold")),
                    "404": _error("No hold has that id"),
                    "503": _OUTAGE,
                },
            },
            "delete": {
                "summary": "Release a hold; an active hold's units come back at once",
                "operationId": "releaseHold",
                "tags": ["buying"],
                "responses": {
                    "204": {"description": "Released (or already released or expired)"},
                    "404": _error("No hold has that id"),
                    "409": _error("The hold already became an order"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/payments/webhook": {
            "post": {
                "summary": "A payment provider's notification; exactly one effect per idempotency_key",
                "description": "A repeat of the same key and body replays the first response with "
                               "`Idempotent-Replayed: true`. A notification for an order that does not exist "
                               "yet is kept (202) and applied once it does. One for an order that is not "
                               "pending is ignored (200, outcome `ignored`).",
                "operationId": "paymentWebhook",
                "tags": ["payments"],
                "parameters": [{"$ref": "#/components/parameters/StockadeSignature"}],
                "requestBody": _json_body("PaymentNotification"),
                "responses": {
                    "200": _json_response("Applied, or ignored (order not pending)", _ref("PaymentResult"),
                                          {"Idempotent-Replayed": _REPLAYED}),
                    "202": _json_response("Deferred: the order does not exist yet", _ref("PaymentResult"),
                                          {"Idempotent-Replayed": _REPLAYED}),
                    **_body_errors(),
                    "401": _error("Webhook secret configured and the signature is missing, wrong or more "
                                  "than 300 s from now",
                                  {"WWW-Authenticate": {"schema": {"type": "string"}}}),
                    "422": _error("A field broke its rule, or this idempotency_key came with another body"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/logs": {
            "get": {
                "summary": "Recorded business events, newest first",
                "operationId": "listEvents",
                "tags": ["operations"],
                "security": admin,
                "parameters": [
                    {"name": "event", "in": "query", "description": "Only events with this name",
                     "schema": {"type": "string", "minLength": 1, "maxLength": 64}},
                    {"name": "limit", "in": "query", "description": "Page size (default 100)",
                     "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}},
                    {"name": "before_id", "in": "query", "description": "Only events with a smaller id",
                     "schema": _id()},
                ],
                "responses": {
                    "200": _json_response("Events", _ref("LogPage")),
                    **_unauthorized(),
                    "422": _error("A query parameter is out of range"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "responses": {"200": _json_response("OpenAPI 3.0.3", {"type": "object"})},
            },
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: 200 while the process runs",
                "operationId": "healthz",
                "tags": ["operations"],
                "responses": {"200": _json_response("Alive", _ref("Health"))},
            },
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the database (and Redis and broker, when configured) answer",
                "operationId": "readyz",
                "tags": ["operations"],
                "responses": {
                    "200": _json_response("Ready", _ref("Ready")),
                    "503": _json_response("A component did not answer", _ref("NotReady")),
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "tags": ["operations"],
                "responses": {"200": {"description": "Prometheus text exposition format",
                                      "content": {"text/plain": {"schema": {"type": "string"}}}}},
            },
        },
    }


def openapi_document(max_quantity: int) -> dict:
    """The OpenAPI 3.0.3 document of the public API, for a service whose max quantity is `max_quantity`."""
    return {
        "openapi": "3.0.3",
        "info": {
            "title": "Stockade",
            "version": "0.1.0",
            "description": "Order and flash-sale checkout: products with finite stock, direct purchases, "
                           "holds, orders from holds, and an idempotent payment webhook. Every error body is "
                           "JSON with `message`; 422 bodies add `errors` (field -> reasons). Integers must be "
                           "JSON integers. Unknown paths are 404 and wrong methods 405.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("products", "buying", "payments", "operations")],
        "paths": _paths(max_quantity),
        "components": {
            "schemas": _schemas(max_quantity),
            "headers": {
                "ETag": {"description": "The product's version; send it back in `If-Match`",
                         "schema": {"type": "string", "pattern": r'^"[0-9]+-[0-9]+"$'}},
                "IdempotentReplayed": {"description": "`true` when this is the stored first response for a "
                                                      "repeated Idempotency-Key",
                                       "schema": {"type": "string", "enum": ["true"]}},
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key", "in": "header", "required": False,
                    "description": "A retry with the same key and body replays the first response (kept at "
                                   "least 24 hours) with no second effect",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                },
                "IfMatch": {
                    "name": "If-Match", "in": "header", "required": False,
                    "description": "An ETag from a previous read; 412 when the product changed since",
                    "schema": {"type": "string"},
                },
                "StockadeSignature": {
                    "name": "Stockade-Signature", "in": "header", "required": False,
                    "description": "Required when STOCKADE_WEBHOOK_SECRET is set: `t=<unix seconds>,v1=<hex "
                                   "HMAC-SHA256(secret, \"<t>.\" + raw body)>`, t within 300 s of now",
                    "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                },
            },
            "securitySchemes": {
                "adminBearer": {"type": "http", "scheme": "bearer",
                                "description": "STOCKADE_ADMIN_TOKEN; required only when it is set"},
            },
        },
    }
