"""The OpenAPI 3.1 document of the public API.

Every schema in it comes from the models in `schemas` (request bodies, responses, query
parameters); this module adds what is not a shape: operations, status codes, headers and
their descriptions. Response objects list every field and no other (`additionalProperties:
false`), so a schema-conformance check pins the exact JSON shapes.
"""

from __future__ import annotations

import copy
from typing import Any

from pydantic import BaseModel, TypeAdapter
from pydantic.json_schema import GenerateJsonSchema, JsonSchemaMode, models_json_schema

from stockade.entrypoints.http import schemas
from stockade.entrypoints.http.body import MAX_BODY_BYTES

JSON = "application/json"
_REF = "#/components/schemas/{model}"


class _OpenApiSchema(GenerateJsonSchema):
    """pydantic's JSON Schema (draft 2020-12, as OpenAPI 3.1 has it) without generated titles,
    and without the `default: null` of fields that may be left out but not sent as null."""

    def field_title_should_be_set(self, schema: Any) -> bool:
        return False

    def default_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().default_schema(schema)
        if json_schema.get("default", ...) is None and not _allows_null(json_schema):
            del json_schema["default"]
        return json_schema

    def model_schema(self, schema: Any) -> dict[str, Any]:
        json_schema = super().model_schema(schema)
        json_schema.pop("title", None)
        return json_schema


def _allows_null(json_schema: dict[str, Any]) -> bool:
    return json_schema.get("type") == "null" or any(_allows_null(s) for s in json_schema.get("anyOf", []))


def _ref(model: type[BaseModel]) -> dict[str, str]:
    return {"$ref": _REF.format(model=model.__name__)}


def _component_schemas(max_quantity: int, max_extend_seconds: int) -> dict[str, Any]:
    models: list[tuple[type[BaseModel], JsonSchemaMode]] = [
        (m, "validation")
        for m in (
            *schemas.REQUEST_MODELS,
            schemas.buy_request(max_quantity),
            schemas.extend_hold_request(max_extend_seconds),
        )
    ]
    models += [(m, "serialization") for m in schemas.RESPONSE_MODELS]
    _, top = models_json_schema(models, ref_template=_REF, schema_generator=_OpenApiSchema)
    return top["$defs"]


def _schema_of(annotation: Any) -> dict[str, Any]:
    return TypeAdapter(annotation).json_schema(schema_generator=_OpenApiSchema)


def _query_parameters(model: type[schemas.Query]) -> list[dict[str, Any]]:
    properties = model.model_json_schema(schema_generator=_OpenApiSchema)["properties"]
    return [
        {
            "name": name,
            "in": "query",
            "required": False,
            "description": prop.pop("description", name) + "; given once, not empty",
            "schema": prop,
        }
        for name, prop in properties.items()
    ]


_REPLAYED = {"$ref": "#/components/headers/IdempotentReplayed"}


def _json_response(description: str, schema: dict[str, Any], headers: dict[str, Any] | None = None) -> dict:
    response: dict[str, Any] = {"description": description, "content": {JSON: {"schema": schema}}}
    if headers:
        response["headers"] = headers
    return response


def _error(description: str, headers: dict[str, Any] | None = None) -> dict[str, Any]:
    return _json_response(description, _ref(schemas.ErrorBody), headers)


_OUTAGE = _error("The database did not answer (a real outage); nothing was written")


def _body_errors() -> dict[str, Any]:
    return {
        "400": _error("Malformed JSON or a body that is not a JSON object"),
        "413": _error(f"Body larger than {MAX_BODY_BYTES} bytes"),
        "415": _error("A body declared as something other than JSON (`Content-Type` other than application/json)"),
    }


def _unauthorized() -> dict[str, Any]:
    return {
        "401": _error(
            "Admin token configured and no valid `Authorization: Bearer` header",
            {"WWW-Authenticate": {"schema": {"type": "string"}}},
        )
    }


def _path_id(name: str, what: str) -> dict[str, Any]:
    return {
        "name": name,
        "in": "path",
        "required": True,
        "description": f"The {what}'s id; anything that "
        "is not a positive integer below 2^63 in canonical decimal (no sign, no leading zero), or names "
        "nothing, is 404",
        "schema": _schema_of(schemas.Id),
    }


def _json_body(model: type[BaseModel]) -> dict[str, Any]:
    return {"required": True, "content": {JSON: {"schema": _ref(model)}}}


def _idempotent_post(
    summary: str, body: type[BaseModel], created: dict[str, Any], conflict: str, unprocessable: str, operation_id: str
) -> dict[str, Any]:
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
            "409": _error(conflict + "; or the first request with this Idempotency-Key is still in flight", replayable),
            "422": _error(
                unprocessable + "; or this Idempotency-Key came before with another body, or is "
                "not 1..255 visible ASCII characters",
                replayable,
            ),
            "503": _OUTAGE,
        },
    }


def _adjustment_post() -> dict[str, Any]:
    operation = _idempotent_post(
        "Change the product's stock by a delta, with a reason",
        schemas.AdjustStockRequest,
        _json_response("The adjustment, with the stock after it", _ref(schemas.AdjustmentEnvelope)),
        "The delta would take `available` below 0 or `stock` above 2147483647",
        "A field broke its rule",
        "adjustStock",
    )
    operation["responses"].update({**_unauthorized(), "404": _error("No live product has that id")})
    return {**operation, "tags": ["products"], "security": [{"adminBearer": []}]}


def _order_action(summary: str, description: str, conflict: str, operation_id: str) -> dict[str, Any]:
    return {
        "summary": summary,
        "description": description,
        "operationId": operation_id,
        "tags": ["orders"],
        "security": [{"adminBearer": []}],
        "responses": {
            "200": _json_response("The order after it", _ref(schemas.OrderEnvelope)),
            **_unauthorized(),
            "404": _error("No order has that id"),
            "409": _error(conflict),
            "503": _OUTAGE,
        },
    }


def _listing(summary: str, operation_id: str, query: type[schemas.Query], page: type[BaseModel]) -> dict[str, Any]:
    return {
        "summary": summary,
        "operationId": operation_id,
        "tags": ["buying"],
        "security": [{"adminBearer": []}],
        "parameters": _query_parameters(query),
        "responses": {
            "200": _json_response("One page, ordered by id", _ref(page)),
            **_unauthorized(),
            "422": _error("A filter value is not one of its values, out of range, empty or given twice"),
            "503": _OUTAGE,
        },
    }


_LIMITED = (
    "Out of stock; or `Limit per customer reached`: the customer's active holds and orders of the "
    "product would pass its `max_per_customer`"
)


def _buying_unprocessable(max_quantity: int) -> str:
    return (
        f"A field broke its rule (quantity 1..{max_quantity}), `product_id` names no product, or the "
        "product has `max_per_customer` and no `customer_id` was given"
    )


def _paths(max_quantity: int, max_extend_seconds: int) -> dict[str, Any]:
    buy = schemas.buy_request(max_quantity)
    etag = {"ETag": {"$ref": "#/components/headers/ETag"}}
    admin: list[dict[str, list[str]]] = [{"adminBearer": []}]
    return {
        "/api/products": {
            "get": {
                "summary": "List products by id, a page at a time",
                "operationId": "listProducts",
                "tags": ["products"],
                "parameters": _query_parameters(schemas.ProductListQuery),
                "responses": {
                    "200": _json_response("One page of live products", _ref(schemas.ProductPage)),
                    "422": _error("`limit` or `after_id` out of range, not an integer, empty or given twice"),
                    "503": _OUTAGE,
                },
            },
            "post": {
                "summary": "Create a product",
                "operationId": "createProduct",
                "tags": ["products"],
                "security": admin,
                "requestBody": _json_body(schemas.ProductCreate),
                "responses": {
                    "201": _json_response("Created", _ref(schemas.ProductEnvelope), etag),
                    **_body_errors(),
                    **_unauthorized(),
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
                    "200": _json_response("The product", _ref(schemas.ProductEnvelope), etag),
                    "404": _error("No live product has that id"),
                    "503": _OUTAGE,
                },
            },
            "put": {
                "summary": "Change any of name, price, stock, max_per_customer",
                "description": "With `If-Match`, applies only if the product is unchanged since that ETag "
                "was sent (sales change it too); without, applies unconditionally.",
                "operationId": "updateProduct",
                "tags": ["products"],
                "security": admin,
                "parameters": [{"$ref": "#/components/parameters/IfMatch"}],
                "requestBody": _json_body(schemas.ProductUpdate),
                "responses": {
                    "200": _json_response("The product after the change", _ref(schemas.ProductEnvelope), etag),
                    **_body_errors(),
                    **_unauthorized(),
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
        "/api/products/{product_id}/adjustments": {
            "parameters": [_path_id("product_id", "product")],
            "get": {
                "summary": "The product's stock adjustments, newest first, a page at a time",
                "description": "Every adjustment, and every `PUT` that changed the stock (reason `set`).",
                "operationId": "listAdjustments",
                "tags": ["products"],
                "security": admin,
                "parameters": _query_parameters(schemas.AdjustmentQuery),
                "responses": {
                    "200": _json_response("One page of adjustments", _ref(schemas.AdjustmentPage)),
                    **_unauthorized(),
                    "404": _error("No live product has that id"),
                    "422": _error("`limit` or `before_id` out of range, not an integer, empty or given twice"),
                    "503": _OUTAGE,
                },
            },
            "post": _adjustment_post(),
        },
        "/api/orders/purchase": {
            "post": _idempotent_post(
                "Buy units now: stock drops at once, the order is `created`",
                buy,
                _json_response("The order, with its product after the sale", _ref(schemas.OrderEnvelope)),
                _LIMITED,
                _buying_unprocessable(max_quantity),
                "purchase",
            ),
        },
        "/api/orders": {
            "get": _listing(
                "List orders by id, filtered, a page at a time", "listOrders", schemas.OrderListQuery, schemas.OrderPage
            ),
            "post": _idempotent_post(
                "Turn an active hold into a `pending` order",
                schemas.OrderFromHoldRequest,
                _json_response("The pending order", _ref(schemas.PendingOrderBody)),
                "The hold was already used, released or has expired",
                "`hold_id` is not a positive integer or names no hold",
                "orderFromHold",
            ),
        },
        "/api/orders/{order_id}": {
            "parameters": [_path_id("order_id", "order")],
            "get": {
                "summary": "Read an order",
                "operationId": "getOrder",
                "tags": ["buying"],
                "responses": {
                    "200": _json_response("The order", _ref(schemas.OrderEnvelope)),
                    "404": _error("No order has that id"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/orders/{order_id}/cancel": {
            "parameters": [_path_id("order_id", "order")],
            "post": _order_action(
                "Cancel an order that is not processed",
                "`created` and `paid` orders put their units back in stock; a `pending` order's reserved "
                "units are released. A `paid` order then owes a refund (`refund_status` `required`). "
                "An order already cancelled is returned unchanged.",
                "Order already processed",
                "cancelOrder",
            ),
        },
        "/api/orders/{order_id}/refund": {
            "parameters": [_path_id("order_id", "order")],
            "post": _order_action(
                "Record that a required refund was made",
                "`refund_status` `required` becomes `refunded`; an order already refunded is returned unchanged.",
                "No refund is required",
                "refundOrder",
            ),
        },
        "/api/holds": {
            "post": _idempotent_post(
                "Reserve units for the hold TTL",
                buy,
                _json_response("The new hold", _ref(schemas.NewHold)),
                _LIMITED,
                _buying_unprocessable(max_quantity),
                "placeHold",
            ),
            "get": _listing(
                "List holds by id, filtered, a page at a time", "listHolds", schemas.HoldListQuery, schemas.HoldPage
            ),
        },
        "/api/holds/{hold_id}": {
            "parameters": [_path_id("hold_id", "hold")],
            "get": {
                "summary": "Read a hold",
                "operationId": "getHold",
                "tags": ["buying"],
                "responses": {
                    "200": _json_response("The hold, with the status it has now", _ref(schemas.HoldBody)),
                    "404": _error("No hold has that id"),
                    "503": _OUTAGE,
                },
            },
            "patch": {
                "summary": "Extend an active hold",
                "description": "Moves `expires_at` later by `extend_seconds`, never past `created_at` + "
                "STOCKADE_HOLD_MAX_SECONDS. An expired hold stays expired, swept or not.",
                "operationId": "extendHold",
                "tags": ["buying"],
                "requestBody": _json_body(schemas.extend_hold_request(max_extend_seconds)),
                "responses": {
                    "200": _json_response("The hold with its new expiry", _ref(schemas.HoldBody)),
                    **_body_errors(),
                    "404": _error("No hold has that id"),
                    "409": _error(
                        "The hold was used, released or has expired, or already expires at the latest moment a "
                        "hold may live"
                    ),
                    "422": _error(f"`extend_seconds` is not an integer 1..{max_extend_seconds}"),
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
                "requestBody": _json_body(schemas.PaymentNotificationBody),
                "responses": {
                    "200": _json_response(
                        "Applied, or ignored (order not pending)",
                        _ref(schemas.PaymentResultBody),
                        {"Idempotent-Replayed": _REPLAYED},
                    ),
                    "202": _json_response(
                        "Deferred: the order does not exist yet",
                        _ref(schemas.PaymentResultBody),
                        {"Idempotent-Replayed": _REPLAYED},
                    ),
                    **_body_errors(),
                    "401": _error(
                        "Webhook secret configured and the signature is missing, wrong or more than 300 s from now",
                        {"WWW-Authenticate": {"schema": {"type": "string"}}},
                    ),
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
                "parameters": _query_parameters(schemas.LogQuery),
                "responses": {
                    "200": _json_response("Events", _ref(schemas.LogPage)),
                    **_unauthorized(),
                    "422": _error("A query parameter is out of range, empty or given twice"),
                    "503": _OUTAGE,
                },
            },
        },
        "/api/openapi.json": {
            "get": {
                "summary": "This document",
                "operationId": "openapi",
                "tags": ["operations"],
                "responses": {"200": _json_response("OpenAPI 3.1", {"type": "object"})},
            },
        },
        "/healthz": {
            "get": {
                "summary": "Liveness: 200 while the process runs",
                "operationId": "healthz",
                "tags": ["operations"],
                "responses": {"200": _json_response("Alive", _ref(schemas.Health))},
            },
        },
        "/readyz": {
            "get": {
                "summary": "Readiness: the database (and Redis and broker, when configured) answer",
                "operationId": "readyz",
                "tags": ["operations"],
                "responses": {
                    "200": _json_response("Ready", _ref(schemas.Ready)),
                    "503": _json_response("A component did not answer", _ref(schemas.NotReady)),
                },
            },
        },
        "/metrics": {
            "get": {
                "summary": "Prometheus metrics",
                "operationId": "metrics",
                "tags": ["operations"],
                "responses": {
                    "200": {
                        "description": "Prometheus text exposition format",
                        "content": {"text/plain": {"schema": {"type": "string"}}},
                    }
                },
            },
        },
    }


_REQUEST_ID = {"X-Request-ID": {"$ref": "#/components/headers/RequestId"}}


def _with_head_and_request_id(paths: dict[str, Any]) -> dict[str, Any]:
    """Every response carries X-Request-ID; every GET has its HEAD (the same, without a body)."""
    for item in paths.values():
        for operation in [op for method, op in item.items() if method != "parameters"]:
            for response in operation["responses"].values():
                response["headers"] = {**response.get("headers", {}), **_REQUEST_ID}
        if "get" in item:
            head = copy.deepcopy(item["get"])
            head["operationId"] += "Head"
            head["summary"] = "Headers only: " + head["summary"][0].lower() + head["summary"][1:]
            for response in head["responses"].values():
                response.pop("content", None)
            item["head"] = head
    return paths


def openapi_document(max_quantity: int, max_extend_seconds: int) -> dict:
    """The OpenAPI 3.1 document of the public API, for a service whose max quantity is `max_quantity`
    and whose holds may be extended by at most `max_extend_seconds` at a time (the hold TTL)."""
    return {
        "openapi": "3.1.0",
        "info": {
            "title": "Stockade",
            "version": "0.1.0",
            "description": "Order and flash-sale checkout: products with finite stock, direct purchases, "
            "holds, orders from holds, and an idempotent payment webhook. Every error body is "
            "JSON with `message`; 422 bodies add `errors` (field -> reasons). Integers must be "
            "JSON integers. Unknown paths are 404 and wrong methods 405; every GET route answers HEAD.",
        },
        "servers": [{"url": "/"}],
        "tags": [{"name": n} for n in ("products", "buying", "orders", "payments", "operations")],
        "paths": _with_head_and_request_id(_paths(max_quantity, max_extend_seconds)),
        "components": {
            "schemas": _component_schemas(max_quantity, max_extend_seconds),
            "headers": {
                "ETag": {
                    "description": "The product's version; send it back in `If-Match`",
                    "schema": {"type": "string", "pattern": r'^"[0-9]+-[0-9]+"$'},
                },
                "RequestId": {
                    "description": "The client's X-Request-ID when it sent a sane one (1..128 visible "
                    "ASCII characters), else a new one; in the access log too",
                    "schema": {"type": "string", "pattern": "^[!-~]{1,128}$"},
                },
                "IdempotentReplayed": {
                    "description": "`true` when this is the stored first response for a repeated Idempotency-Key",
                    "schema": {"type": "string", "enum": ["true"]},
                },
            },
            "parameters": {
                "IdempotencyKey": {
                    "name": "Idempotency-Key",
                    "in": "header",
                    "required": False,
                    "description": "A retry with the same key and body replays the first response (kept at "
                    "least 24 hours) with no second effect",
                    "schema": {"type": "string", "minLength": 1, "maxLength": 255, "pattern": "^[!-~]+$"},
                },
                "IfMatch": {
                    "name": "If-Match",
                    "in": "header",
                    "required": False,
                    "description": "An ETag from a previous read; 412 when the product changed since",
                    "schema": {"type": "string"},
                },
                "StockadeSignature": {
                    "name": "Stockade-Signature",
                    "in": "header",
                    "required": False,
                    "description": "Required when STOCKADE_WEBHOOK_SECRET is set: `t=<unix seconds>,v1=<hex "
                    'HMAC-SHA256(secret, "<t>." + raw body)>`, t within 300 s of now',
                    "schema": {"type": "string", "pattern": "^t=[0-9]+,v1=[0-9a-f]{64}$"},
                },
            },
            "securitySchemes": {
                "adminBearer": {
                    "type": "http",
                    "scheme": "bearer",
                    "description": "STOCKADE_ADMIN_TOKEN; required only when it is set",
                },
            },
        },
    }
