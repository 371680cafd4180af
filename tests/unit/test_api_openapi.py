"""The OpenAPI document is valid and true to the behaviour (schemathesis against the live app)."""

from __future__ import annotations

import re
from collections.abc import Iterator

import falcon.testing
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from openapi_spec_validator import validate
from schemathesis.checks import not_a_server_error
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from stockade.adapters.clock import FixedClock
from stockade.entrypoints.bootstrap import build_services
from stockade.entrypoints.http import create_app
from stockade.entrypoints.http.openapi import openapi_document
from stockade.entrypoints.settings import Settings
from tests.api_contract import PRODUCT_KEYS

ADMIN_TOKEN = "s3cret"
MAX_QUANTITY = 100  # Settings' default, which the test app uses
HOLD_TTL_SECONDS = 120  # Settings' default too: the largest extension of a hold
AUTH = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_schema_conformance,
    response_headers_conformance,
]


def _app(path, **options) -> Iterator[falcon.App]:
    """A SQLite-backed app with a few rows at small ids, so generated ids sometimes name something."""
    clock = FixedClock()
    settings_ = Settings(database_url=f"sqlite:///{path}/t.db", order_processing_seconds=0)
    with build_services(settings_, clock=clock) as services:
        services.publisher.close()  # type: ignore[attr-defined]
        shop = services.shop
        for i in range(3):
            product = shop.create_product(f"P{i}", "10.00", 1000)
            shop.purchase(product.id, 1)
            shop.order_from_hold(shop.hold(product.id, 1).id)
            shop.hold(product.id, 1)
        yield create_app(shop, readiness=services.readiness, **options)


@pytest.fixture
def app(tmp_path) -> Iterator[falcon.App]:
    yield from _app(tmp_path, admin_token=ADMIN_TOKEN)


# The document the app serves (test_the_app_serves_this_document proves they are equal). Loaded
# from the dict at import, not with `schemathesis.pytest.from_fixture` + `from_wsgi`: schemathesis
# 4.32's lazy loader sets `node._nodeid`, which pytest 9 no longer has. The requests still go to
# a live app through schemathesis' WSGI transport (`app=`).
schema = schemathesis.openapi.from_dict(openapi_document(MAX_QUANTITY, HOLD_TTL_SECONDS))


@schema.parametrize()
@settings(
    max_examples=30,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much, HealthCheck.function_scoped_fixture],
)
def test_every_operation_conforms_to_the_document(case, app):
    case.call_and_validate(app=app, headers=AUTH, checks=CHECKS)


# ---------------------------------------------------------------- the document itself


def test_the_app_serves_this_document(app):
    loaded = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    assert loaded.raw_schema == schema.raw_schema


def test_the_served_document_is_valid_openapi_3_1(app):
    loaded = schemathesis.openapi.from_wsgi("/api/openapi.json", app)
    validate(loaded.raw_schema)  # openapi-spec-validator: raises on any departure from OpenAPI 3.1
    assert loaded.raw_schema["openapi"] == "3.1.0"


def test_every_route_of_the_app_is_documented_with_exactly_its_methods(app):
    client = falcon.testing.TestClient(app)
    for path, item in openapi_document(MAX_QUANTITY, HOLD_TTL_SECONDS)["paths"].items():
        concrete = re.sub(r"\{[a-z_]+\}", "1", path)
        allowed = set(client.simulate_options(concrete).headers["allow"].replace(" ", "").split(",")) - {"OPTIONS"}
        assert allowed == {m.upper() for m in item if m != "parameters"}, (path, allowed)
    for concrete in ("/api/products/1/x", "/api/nope", "/tasks/order-processed"):
        assert client.simulate_get(concrete).status_code == 404


def test_quantity_limits_follow_the_configured_maximum():
    for max_quantity in (1, 100, 7):
        buy = openapi_document(max_quantity, HOLD_TTL_SECONDS)["components"]["schemas"]["BuyRequest"]
        assert buy["properties"]["quantity"] == {**buy["properties"]["quantity"], "minimum": 1, "maximum": max_quantity}


def test_field_rules_are_stated_exactly():
    schemas = openapi_document(100, HOLD_TTL_SECONDS)["components"]["schemas"]
    create = schemas["ProductCreate"]
    assert create["required"] == ["name", "price", "stock"]
    name = create["properties"]["name"]
    assert (name["minLength"], name["maxLength"]) == (1, 255)
    stock = create["properties"]["stock"]
    assert (stock["type"], stock["minimum"], stock["maximum"]) == ("integer", 0, 2**31 - 1)
    text, number = create["properties"]["price"]["anyOf"]
    assert (number["type"], number["minimum"], number["exclusiveMaximum"]) == ("number", 0, 10**13)
    assert "multipleOf" not in number  # applied in floating point, it would refuse 19.99
    assert text["type"] == "string"
    for schema_name, field in (
        ("BuyRequest", "product_id"),
        ("OrderFromHoldRequest", "hold_id"),
        ("PaymentNotificationBody", "order_id"),
    ):
        prop = schemas[schema_name]["properties"][field]
        assert (prop["type"], prop["minimum"], prop["maximum"]) == ("integer", 1, 2**63 - 1)
    assert schemas["ProductUpdate"]["anyOf"] == [
        {"required": ["name"]},
        {"required": ["price"]},
        {"required": ["stock"]},
        {"required": ["max_per_customer"]},
    ]
    limit, no_limit = schemas["ProductUpdate"]["properties"]["max_per_customer"]["anyOf"]
    assert (limit["type"], limit["minimum"], limit["maximum"], no_limit) == ("integer", 1, 2**31 - 1, {"type": "null"})
    customer = schemas["BuyRequest"]["properties"]["customer_id"]
    assert (customer["type"], customer["pattern"]) == ("string", "^[A-Za-z0-9._:@-]{1,64}$")
    assert "customer_id" not in schemas["BuyRequest"]["required"]
    assert schemas["ErrorBody"]["required"] == ["message"]
    assert set(schemas["ProductBody"]["properties"]) == PRODUCT_KEYS


def test_headers_and_security_are_documented():
    doc = openapi_document(100, HOLD_TTL_SECONDS)
    components = doc["components"]
    assert components["securitySchemes"]["adminBearer"] == {
        **components["securitySchemes"]["adminBearer"],
        "type": "http",
        "scheme": "bearer",
    }
    paths = doc["paths"]
    for path, method in (
        ("/api/products", "post"),
        ("/api/products/{product_id}", "put"),
        ("/api/products/{product_id}", "delete"),
        ("/api/logs", "get"),
    ):
        assert paths[path][method]["security"] == [{"adminBearer": []}]
        assert "401" in paths[path][method]["responses"]
    for path in ("/api/orders/purchase", "/api/holds", "/api/orders"):
        op = paths[path]["post"]
        assert op["parameters"] == [{"$ref": "#/components/parameters/IdempotencyKey"}]
        assert "Idempotent-Replayed" in op["responses"]["201"]["headers"]
    assert paths["/api/products/{product_id}"]["put"]["parameters"] == [{"$ref": "#/components/parameters/IfMatch"}]
    assert "ETag" in paths["/api/products/{product_id}"]["get"]["responses"]["200"]["headers"]
    webhook = paths["/api/payments/webhook"]["post"]
    assert webhook["parameters"] == [{"$ref": "#/components/parameters/StockadeSignature"}]
    assert {"200", "202", "401", "422"} <= set(webhook["responses"])


def test_the_served_quantity_limit_is_the_one_enforced(tmp_path):
    settings_ = Settings(database_url=f"sqlite:///{tmp_path}/t.db", order_processing_seconds=0, max_quantity=5)
    with build_services(settings_, clock=FixedClock()) as services:
        services.publisher.close()  # type: ignore[attr-defined]
        product = services.shop.create_product("P", 1, 100)
        client = falcon.testing.TestClient(create_app(services.shop))
        served = client.simulate_get("/api/openapi.json").json
        assert served["components"]["schemas"]["BuyRequest"]["properties"]["quantity"]["maximum"] == 5
        for path in ("/api/orders/purchase", "/api/holds"):
            assert client.simulate_post(path, json={"product_id": product.id, "quantity": 6}).status_code == 422
            assert client.simulate_post(path, json={"product_id": product.id, "quantity": 5}).status_code == 201
