"""The public HTTP API's contract (CONTRACT.md sections 3-6) as tests reusable on any database.

Each `test_*` function takes an `api` fixture (an `Api`: a Falcon TestClient on a real
`build_services(...)`, its FixedClock and Shop). A test module provides the fixture and
imports these functions: tests/unit/test_api_contract.py runs them on SQLite,
tests/integration/test_api_contract_mysql.py on MariaDB/MySQL.

The in-process task runner is closed (`make_api`), so no task runs behind a test's back:
tests that need background work run it themselves, as a worker would (`api.run_tasks()`).
"""

from __future__ import annotations

import hashlib
import hmac
import json
import re
import threading
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import attrs
import falcon.testing
import pytest

from stockade.adapters.clock import FixedClock
from stockade.application.commands import Purchase
from stockade.application.facade import Shop
from stockade.application.idempotency import request_key
from stockade.application.records import encode_refusal
from stockade.domain.errors import OutOfStock
from stockade.entrypoints.bootstrap import Services, build_services, task_handlers
from stockade.entrypoints.http import create_app
from stockade.entrypoints.settings import Settings
from stockade.entrypoints.tasks_http import create_tasks_app

ADMIN_TOKEN = "s3cret"
WEBHOOK_SECRET = "whsec"
MAX_ID = 2**63 - 1
BIG_BODY = b'{"name": "' + b"x" * (65 * 1024) + b'", "price": 1, "stock": 1}'

PRODUCT_KEYS = {
    "id",
    "name",
    "price",
    "stock",
    "reserved",
    "available",
    "available_stock",
    "max_per_customer",
    "created_at",
    "updated_at",
}
ORDER_KEYS = {
    "id",
    "product_id",
    "hold_id",
    "customer_id",
    "quantity",
    "total_price",
    "status",
    "refund_status",
    "created_at",
    "updated_at",
    "product",
}
ORDER_PRODUCT_KEYS = {"id", "name", "price", "stock"}
NEW_HOLD_KEYS = {"hold_id", "expires_at", "product_id", "quantity", "status", "customer_id", "created_at"}
HOLD_KEYS = {"hold_id", "product_id", "quantity", "status", "expires_at", "order_id", "customer_id", "created_at"}
PENDING_ORDER_KEYS = {"order_id", "status", "total_price", "hold_id", "product_id", "quantity"}
WEBHOOK_KEYS = {"order_id", "status", "idempotency_key", "outcome"}
LOG_KEYS = {"id", "event", "data", "created_at"}
TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{6}Z")
MONEY = re.compile(r"-?[0-9]+\.[0-9]{2}")

Result = falcon.testing.Result
JSON_HEADERS = {"Content-Type": "application/json"}


# ---------------------------------------------------------------- responses vs. the OpenAPI document


class DocumentedClient(falcon.testing.TestClient):
    """A TestClient that checks every response against the app's own OpenAPI document.

    The status must be one the document lists for the operation (an unknown path must be
    404 and an undocumented method 405), the content type the documented one, and the JSON
    body and documented headers must match their schemas. So every scenario of the contract
    tests, including those random generation never reaches (replays, 412, deferred 202),
    also proves the document true.
    """

    def __init__(self, app: falcon.App) -> None:
        super().__init__(app)
        self.document = falcon.testing.simulate_get(app, "/api/openapi.json").json
        self._components = self.document["components"]
        self._routes = sorted(
            (
                (re.compile("^" + re.sub(r"\\{[^/]+?\\}", "[^/]+", re.escape(template)) + "$"), template)
                for template in self.document["paths"]
            ),
            key=lambda route: route[1].count("{"),  # literal segments win, as in Falcon's router
        )
        self.checked = 0

    def simulate_request(self, *args: Any, **kwargs: Any) -> Result:
        result = super().simulate_request(*args, **kwargs)
        method = (args[0] if args else kwargs.get("method", "GET")).lower()
        path = args[1] if len(args) > 1 else kwargs.get("path", "/")
        self.conform(method, path.split("?")[0], result)
        return result

    def _validate(self, schema: dict[str, Any], instance: Any, where: str) -> None:
        import jsonschema_rs

        validator = jsonschema_rs.Draft202012Validator({**schema, "components": self._components})
        errors = [f"{e.message} at {list(e.instance_path)}" for e in validator.iter_errors(instance)]
        assert not errors, f"{where}: {errors}; instance={instance!r}"

    def conform(self, method: str, path: str, result: Result) -> None:
        template = next((t for pattern, t in self._routes if pattern.match(path)), None)
        if template is None:
            assert result.status_code == 404, f"{method} {path}: undocumented path answered {result.status_code}"
            return
        operation = self.document["paths"][template].get(method)
        if operation is None:
            if method != "options":
                assert result.status_code == 405, f"{method} {path}: undocumented method gave {result.status_code}"
            return
        where = f"{method.upper()} {template} -> {result.status_code}"
        response = operation["responses"].get(str(result.status_code))
        assert response is not None, f"{where}: status not documented ({result.text[:200]})"
        content = response.get("content")
        if not content:
            assert not result.content, f"{where}: documented without a body but sent {result.text[:200]}"
            return
        media = result.headers.get("content-type", "").split(";")[0].strip()
        assert media in content, f"{where}: content type {media!r} not in {list(content)}"
        if media == "application/json":
            self._validate(content[media]["schema"], result.json, where)
        for name, header in response.get("headers", {}).items():
            if "$ref" in header:
                header = self.document["components"]["headers"][header["$ref"].rsplit("/", 1)[1]]
            if name.lower() in result.headers:
                self._validate(header["schema"], result.headers[name.lower()], f"{where} header {name}")
        self.checked += 1


# ---------------------------------------------------------------- the fixture object


@attrs.define
class Api:
    """A client on the public API of real services, with the clock that drives them."""

    services: Services
    clock: FixedClock
    client: DocumentedClient

    @property
    def shop(self) -> Shop:
        return self.services.shop

    def app(self, **options: Any) -> DocumentedClient:
        """Another public app on the same services, e.g. with an admin token or webhook secret."""
        options.setdefault("readiness", self.services.readiness)
        return DocumentedClient(create_app(self.shop, **options))

    def tasks(self) -> falcon.testing.TestClient:
        return falcon.testing.TestClient(create_tasks_app(self.shop))

    # requests that set the scene; each asserts it worked
    def new_product(self, stock: int = 10, price: Any = "100.00", name: str = "Phone") -> int:
        r = self.client.simulate_post("/api/products", json={"name": name, "price": price, "stock": stock})
        assert r.status_code == 201, r.text
        return r.json["data"]["id"]

    def product(self, product_id: int) -> dict[str, Any]:
        r = self.client.simulate_get(f"/api/products/{product_id}")
        assert r.status_code == 200, r.text
        return r.json["data"]

    def levels(self, product_id: int) -> tuple[int, int, int]:
        """(stock, reserved, available) as the API shows them now."""
        p = self.product(product_id)
        return p["stock"], p["reserved"], p["available"]

    def purchase(self, product_id: int, quantity: int = 1) -> dict[str, Any]:
        r = self.client.simulate_post("/api/orders/purchase", json={"product_id": product_id, "quantity": quantity})
        assert r.status_code == 201, r.text
        return r.json["data"]

    def hold(self, product_id: int, quantity: int = 1) -> int:
        r = self.client.simulate_post("/api/holds", json={"product_id": product_id, "quantity": quantity})
        assert r.status_code == 201, r.text
        return r.json["hold_id"]

    def order(self, hold_id: int) -> int:
        r = self.client.simulate_post("/api/orders", json={"hold_id": hold_id})
        assert r.status_code == 201, r.text
        return r.json["order_id"]

    def pending_order(self, product_id: int, quantity: int = 1) -> int:
        return self.order(self.hold(product_id, quantity))

    def get_order(self, order_id: int) -> dict[str, Any]:
        r = self.client.simulate_get(f"/api/orders/{order_id}")
        assert r.status_code == 200, r.text
        return r.json["data"]

    def webhook(
        self,
        order_id: int,
        status: str = "success",
        key: str = "pay-1",
        client: falcon.testing.TestClient | None = None,
        **kwargs: Any,
    ) -> Result:
        body = {"idempotency_key": key, "order_id": order_id, "status": status}
        return (client or self.client).simulate_post("/api/payments/webhook", json=body, **kwargs)

    def adjustments(self, product_id: int, **params: Any) -> list[dict[str, Any]]:
        r = self.client.simulate_get(f"/api/products/{product_id}/adjustments", params=params)
        assert r.status_code == 200, r.text
        return r.json["data"]

    def events(self, event: str | None = None) -> list[dict[str, Any]]:
        r = self.client.simulate_get("/api/logs", params={"limit": 1000, **({"event": event} if event else {})})
        assert r.status_code == 200, r.text
        return r.json["data"]

    # background work, driven by the test
    def pending_tasks(self) -> list:
        """Outbox messages not completed yet, whatever their retry time."""
        with self.shop.deps.read() as uow:
            return [due.message for due in uow.outbox.due(self.clock.now() + timedelta(days=1), 1000)]

    def run_tasks(self) -> int:
        """Run every uncompleted outbox message once, as a worker would; returns how many."""
        handlers = task_handlers(self.shop)
        messages = self.pending_tasks()
        for message in messages:
            handlers[message.task](message)
        return len(messages)


def make_api(services: Services, clock: FixedClock) -> Api:
    """An Api on `services` with no admin token and no webhook secret; tasks run only on demand."""
    services.publisher.close()  # type: ignore[attr-defined]  # the in-process runner
    return Api(services, clock, DocumentedClient(create_app(services.shop, readiness=services.readiness)))


def settings_for(url: str, **overrides: Any) -> Settings:
    return Settings(**{"database_url": url, "order_processing_seconds": 0, **overrides})


# ---------------------------------------------------------------- shape checks


def assert_error(r: Result, status: int, message: str | None = None, field: str | None = None) -> dict:
    """`status` with a JSON body carrying `message` (and `errors[field]` for a 422 about `field`)."""
    assert r.status_code == status, f"expected {status}, got {r.status_code}: {r.text}"
    assert r.headers["content-type"].startswith("application/json")
    body = r.json
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], body
    assert "Traceback" not in r.text
    if message is not None:
        assert body["message"] == message, body
    if field is not None:
        assert field in body.get("errors", {}), body
        assert all(isinstance(reason, str) for reason in body["errors"][field])
    return body


def assert_product(p: dict[str, Any]) -> None:
    assert set(p) == PRODUCT_KEYS, p
    assert type(p["id"]) is int and isinstance(p["name"], str) and MONEY.fullmatch(p["price"])
    assert p["available"] == p["available_stock"] == p["stock"] - p["reserved"] >= 0
    assert p["max_per_customer"] is None or type(p["max_per_customer"]) is int
    assert TIMESTAMP.fullmatch(p["created_at"]) and TIMESTAMP.fullmatch(p["updated_at"])


def assert_order(o: dict[str, Any]) -> None:
    assert set(o) == ORDER_KEYS, o
    assert set(o["product"]) == ORDER_PRODUCT_KEYS, o
    assert MONEY.fullmatch(o["total_price"]) and MONEY.fullmatch(o["product"]["price"])
    assert TIMESTAMP.fullmatch(o["created_at"]) and TIMESTAMP.fullmatch(o["updated_at"])
    assert o["customer_id"] is None or isinstance(o["customer_id"], str)
    assert o["refund_status"] in (None, "required", "refunded")


def signature(body: bytes, api: "Api", secret: str = WEBHOOK_SECRET, age: int = 0) -> str:
    """A Stockade-Signature header stamped `age` seconds before the services' (fixed) clock."""
    t = int(api.clock.now().timestamp()) - age
    mac = hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()
    return f"t={t},v1={mac}"


# ================================================================ products: list


def test_products_are_listed_in_id_order_a_page_at_a_time(api):
    ids = [api.new_product(name=f"P{i}") for i in range(5)]
    r = api.client.simulate_get("/api/products", params={"limit": 2})
    assert r.status_code == 200
    assert set(r.json) == {"data", "meta"}
    assert [p["id"] for p in r.json["data"]] == ids[:2]
    assert r.json["meta"] == {"next_after_id": ids[1]}
    for p in r.json["data"]:
        assert_product(p)
    r = api.client.simulate_get("/api/products", params={"limit": 2, "after_id": ids[1]})
    assert [p["id"] for p in r.json["data"]] == ids[2:4] and r.json["meta"]["next_after_id"] == ids[3]
    r = api.client.simulate_get("/api/products", params={"limit": 2, "after_id": ids[3]})
    assert [p["id"] for p in r.json["data"]] == ids[4:] and r.json["meta"]["next_after_id"] is None


def test_an_exactly_full_last_page_says_there_is_no_next_page(api):
    ids = [api.new_product(name=f"P{i}") for i in range(2)]
    r = api.client.simulate_get("/api/products", params={"limit": 2})
    assert [p["id"] for p in r.json["data"]] == ids and r.json["meta"]["next_after_id"] is None


def test_empty_product_list(api):
    r = api.client.simulate_get("/api/products")
    assert r.status_code == 200 and r.json == {"data": [], "meta": {"next_after_id": None}}
    api.new_product()
    r = api.client.simulate_get("/api/products", params={"after_id": MAX_ID})
    assert r.status_code == 200 and r.json == {"data": [], "meta": {"next_after_id": None}}


def test_product_list_defaults_to_50_and_allows_200(api):
    ids = [api.shop.create_product(f"P{i}", 1, 1).id for i in range(51)]
    r = api.client.simulate_get("/api/products")
    assert [p["id"] for p in r.json["data"]] == ids[:50] and r.json["meta"]["next_after_id"] == ids[49]
    r = api.client.simulate_get("/api/products", params={"limit": 200})
    assert r.status_code == 200 and len(r.json["data"]) == 51 and r.json["meta"]["next_after_id"] is None
    r = api.client.simulate_get("/api/products", params={"limit": 1})
    assert r.status_code == 200 and len(r.json["data"]) == 1


@pytest.mark.parametrize("limit", ["0", "201", "-1", "abc", "1.5", "1e2", " 5"])
def test_bad_list_limit_is_422(api, limit):
    assert_error(api.client.simulate_get("/api/products", query_string=f"limit={limit}"), 422, field="limit")


@pytest.mark.parametrize("after_id", ["-1", "abc", str(2**63)])
def test_bad_after_id_is_422(api, after_id):
    assert_error(api.client.simulate_get("/api/products", query_string=f"after_id={after_id}"), 422, field="after_id")


# ================================================================ products: read


def test_a_product_is_read_with_an_etag(api):
    pid = api.new_product(stock=7, price="19.99", name="Lamp")
    r = api.client.simulate_get(f"/api/products/{pid}")
    assert r.status_code == 200 and set(r.json) == {"data"}
    assert_product(r.json["data"])
    assert {k: r.json["data"][k] for k in ("id", "name", "price", "stock", "reserved", "available")} == {
        "id": pid,
        "name": "Lamp",
        "price": "19.99",
        "stock": 7,
        "reserved": 0,
        "available": 7,
    }
    assert r.json["data"]["created_at"] == "2026-01-07T08:00:00.000000Z"
    assert r.headers.get("etag")


@pytest.mark.parametrize("raw_id", ["999999", "0", "-1", "abc", "1.0", "1e3", str(MAX_ID), str(2**63), "9" * 40])
def test_reading_a_product_that_is_not_there_is_404(api, raw_id):
    api.new_product()
    assert_error(api.client.simulate_get(f"/api/products/{raw_id}"), 404)


# ================================================================ products: create


def test_create_product_returns_201_with_the_product(api):
    r = api.client.simulate_post("/api/products", json={"name": "iPhone 15", "price": 15000000, "stock": 5})
    assert r.status_code == 201 and set(r.json) == {"data"}
    p = r.json["data"]
    assert_product(p)
    assert (p["name"], p["price"], p["stock"], p["reserved"], p["available"]) == ("iPhone 15", "15000000.00", 5, 0, 5)
    assert api.product(p["id"]) == p
    assert [e["data"]["product_id"] for e in api.events("product_created")] == [p["id"]]


@pytest.mark.parametrize(
    "price, shown",
    [
        ("15000000", "15000000.00"),
        ("19.99", "19.99"),
        ("0", "0.00"),
        ("0.5", "0.50"),
        (10.5, "10.50"),
        (0, "0.00"),
        (7, "7.00"),
        ("9999999999999.99", "9999999999999.99"),
    ],
)
def test_price_may_be_a_number_or_a_numeric_string_and_is_shown_with_two_places(api, price, shown):
    r = api.client.simulate_post("/api/products", json={"name": "X", "price": price, "stock": 0})
    assert r.status_code == 201, r.text
    assert r.json["data"]["price"] == shown


@pytest.mark.parametrize(
    "name",
    [
        "x" * 255,
        "🛒" * 255,
        "a",
        " padded ",
        "Ünïcødé 🛒",
        "<b>&amp;</b>'\"",
        "zero\u200bwidth",
        "\u05e9\u05dc\u05d5\u05dd abc",
    ],
)
def test_names_of_1_to_255_characters_are_accepted(api, name):
    r = api.client.simulate_post("/api/products", json={"name": name, "price": 1, "stock": 2**31 - 1})
    assert r.status_code == 201, r.text
    assert api.product(r.json["data"]["id"])["name"] == name


@pytest.mark.parametrize(
    "field, value",
    [
        ("name", ""),
        ("name", "   "),
        ("name", "\t\n"),
        ("name", "x" * 256),
        ("name", 5),
        ("name", None),
        ("name", "\ud800"),
        ("name", ["a"]),
        # contract section 3: control and bidirectional-override characters; shows only format characters
        ("name", "a\u0000b"),
        ("name", "nul\x00inside"),
        ("name", "line\nbreak"),
        ("name", "\x7f"),
        ("name", "\u202eevil\u202c"),
        ("name", "\u2066isolate\u2069"),
        ("name", "\u200b"),
        ("name", " \u200b\ufeff "),
        ("price", "-0"),
        ("price", "-0.00"),
        ("price", -0.0),
        ("price", " 1.00"),
        ("price", -1),
        ("price", "-0.01"),
        ("price", 1.005),
        ("price", "1.005"),
        ("price", 10**13),
        ("price", "10000000000000"),
        ("price", 10**13 + 0.5),
        ("price", "abc"),
        ("price", ""),
        ("price", True),
        ("price", None),
        ("price", "1e3"),
        ("price", "NaN"),
        ("price", {"amount": 1}),
        ("stock", -1),
        ("stock", 2**31),
        ("stock", "5"),
        ("stock", True),
        ("stock", 1.0),
        ("stock", 1.5),
        ("stock", None),
        ("stock", 10**30),
    ],
)
def test_create_product_field_rules_are_422(api, field, value):
    body = json.dumps({"name": "Phone", "price": "1.00", "stock": 1, field: value})  # ASCII: "\ud800" escaped
    assert_error(api.client.simulate_post("/api/products", body=body, headers=JSON_HEADERS), 422, field=field)
    assert api.shop.list_products()[0] == []


def test_the_largest_price_times_the_largest_quantity_is_exact(api):
    pid = api.new_product(stock=100, price="9999999999999.99")
    order = api.purchase(pid, 100)
    assert order["total_price"] == "999999999999999.00"
    hold = api.hold(api.new_product(stock=100, price="9999999999999.99"), 100)
    r = api.client.simulate_post("/api/orders", json={"hold_id": hold})
    assert r.status_code == 201 and r.json["total_price"] == "999999999999999.00"


def test_timestamps_keep_their_microseconds(api):
    api.clock.advance(0.123456)
    pid = api.new_product()
    assert api.product(pid)["created_at"] == "2026-01-07T08:00:00.123456Z"
    api.clock.advance(1.000001)
    api.client.simulate_put(f"/api/products/{pid}", json={"stock": 3})
    assert api.product(pid)["updated_at"] == "2026-01-07T08:00:01.123457Z"
    r = api.client.simulate_post("/api/holds", json={"product_id": pid, "quantity": 1})
    assert r.json["expires_at"] == "2026-01-07T08:02:01.123457Z"


@pytest.mark.parametrize("missing", ["name", "price", "stock"])
def test_create_product_requires_every_field(api, missing):
    body = {"name": "Phone", "price": "1.00", "stock": 1}
    del body[missing]
    assert_error(api.client.simulate_post("/api/products", json=body), 422, field=missing)


def test_create_product_reports_every_bad_field_at_once(api):
    body = assert_error(api.client.simulate_post("/api/products", json={"name": "", "price": -1, "stock": "x"}), 422)
    assert set(body["errors"]) == {"name", "price", "stock"}


@pytest.mark.parametrize(
    "path, body, fields",
    [
        ("/api/orders/purchase", {"product_id": "1", "quantity": 0}, {"product_id", "quantity"}),
        ("/api/holds", {"product_id": 0, "quantity": True}, {"product_id", "quantity"}),
        (
            "/api/payments/webhook",
            {"idempotency_key": "", "order_id": -1, "status": "paid"},
            {"idempotency_key", "order_id", "status"},
        ),
        ("/api/payments/webhook", {}, {"idempotency_key", "order_id", "status"}),
    ],
)
def test_every_invalid_field_is_named_not_only_the_first(api, path, body, fields):
    assert set(assert_error(api.client.simulate_post(path, json=body), 422)["errors"]) == fields


def test_every_invalid_field_of_a_put_is_named(api):
    pid = api.new_product()
    r = api.client.simulate_put(f"/api/products/{pid}", json={"name": "\u202e", "price": "-0", "stock": -1})
    assert set(assert_error(r, 422)["errors"]) == {"name", "price", "stock"}


# ================================================================ products: update


def test_put_changes_only_the_fields_given(api):
    pid = api.new_product(stock=10, price="100.00", name="Phone")
    r = api.client.simulate_put(f"/api/products/{pid}", json={"name": "Phone 2"})
    assert r.status_code == 200 and set(r.json) == {"data"}
    assert_product(r.json["data"])
    assert (r.json["data"]["name"], r.json["data"]["price"], r.json["data"]["stock"]) == ("Phone 2", "100.00", 10)
    r = api.client.simulate_put(f"/api/products/{pid}", json={"price": "9.5", "stock": 3})
    assert (r.json["data"]["name"], r.json["data"]["price"], r.json["data"]["stock"]) == ("Phone 2", "9.50", 3)
    assert r.headers.get("etag")
    assert api.product(pid) == r.json["data"]


def test_put_on_a_missing_product_is_404(api):
    assert_error(api.client.simulate_put("/api/products/999999", json={"stock": 1}), 404)
    assert_error(api.client.simulate_put("/api/products/abc", json={"stock": 1}), 404)


@pytest.mark.parametrize(
    "body",
    [
        {},
        {"stock": -1},
        {"price": "1.001"},
        {"name": ""},
        {"name": "x" * 256},
        {"stock": "5"},
        {"stock": True},
        {"unknown": 1},
    ],
)
def test_put_with_a_bad_or_empty_body_is_422(api, body):
    pid = api.new_product(stock=10)
    before = api.product(pid)
    assert_error(api.client.simulate_put(f"/api/products/{pid}", json=body), 422)
    assert api.product(pid) == before


def test_put_stock_below_reserved_is_409(api):
    pid = api.new_product(stock=10)
    api.hold(pid, 4)
    assert_error(api.client.simulate_put(f"/api/products/{pid}", json={"stock": 3}), 409)
    assert api.levels(pid) == (10, 4, 6)
    r = api.client.simulate_put(f"/api/products/{pid}", json={"stock": 4})
    assert r.status_code == 200 and (r.json["data"]["stock"], r.json["data"]["available"]) == (4, 0)


def test_put_stock_below_units_of_expired_unswept_holds_applies(api):
    pid = api.new_product(stock=10)
    api.hold(pid, 4)
    api.clock.advance(121)
    r = api.client.simulate_put(f"/api/products/{pid}", json={"stock": 1})
    assert r.status_code == 200, r.text
    assert (r.json["data"]["stock"], r.json["data"]["reserved"]) == (1, 0)


def test_put_with_a_matching_if_match_applies(api):
    pid = api.new_product(stock=10)
    etag = api.client.simulate_get(f"/api/products/{pid}").headers["etag"]
    r = api.client.simulate_put(f"/api/products/{pid}", json={"stock": 20}, headers={"If-Match": etag})
    assert r.status_code == 200 and r.json["data"]["stock"] == 20
    assert r.headers["etag"] != etag
    assert api.client.simulate_get(f"/api/products/{pid}").headers["etag"] == r.headers["etag"]


@pytest.mark.parametrize("if_match", ['"nope"', '"999-1"', "W/{etag}", '"{pid}-999"', "garbage"])
def test_put_with_a_mismatched_if_match_is_412(api, if_match):
    pid = api.new_product(stock=10)
    etag = api.client.simulate_get(f"/api/products/{pid}").headers["etag"]
    header = if_match.format(etag=etag, pid=pid)
    assert_error(api.client.simulate_put(f"/api/products/{pid}", json={"stock": 20}, headers={"If-Match": header}), 412)
    assert api.levels(pid)[0] == 10


@pytest.mark.parametrize("version", ["\u00b2", "\u00b9\u00b2", "1\u00b3"])
def test_an_if_match_with_non_ascii_digits_is_412(api, version):
    pid = api.new_product(stock=10)
    r = api.client.simulate_put(f"/api/products/{pid}", json={"stock": 20}, headers={"If-Match": f'"{pid}-{version}"'})
    assert_error(r, 412)
    assert api.levels(pid)[0] == 10


def test_put_with_if_match_star_applies(api):
    pid = api.new_product(stock=10)
    r = api.client.simulate_put(f"/api/products/{pid}", json={"stock": 20}, headers={"If-Match": "*"})
    assert r.status_code == 200 and r.json["data"]["stock"] == 20


def test_a_sale_changes_the_etag_so_a_stale_if_match_cannot_undo_it(api):
    pid = api.new_product(stock=10)
    etag = api.client.simulate_get(f"/api/products/{pid}").headers["etag"]
    api.purchase(pid, 1)
    assert api.client.simulate_get(f"/api/products/{pid}").headers["etag"] != etag
    assert_error(api.client.simulate_put(f"/api/products/{pid}", json={"stock": 10}, headers={"If-Match": etag}), 412)
    assert api.levels(pid) == (9, 0, 9)


def test_a_hold_changes_the_etag_too(api):
    pid = api.new_product(stock=10)
    etag = api.client.simulate_get(f"/api/products/{pid}").headers["etag"]
    api.hold(pid, 2)
    assert_error(api.client.simulate_put(f"/api/products/{pid}", json={"stock": 1}, headers={"If-Match": etag}), 412)


def test_put_without_if_match_applies_unconditionally(api):
    pid = api.new_product(stock=10)
    api.purchase(pid, 1)
    r = api.client.simulate_put(f"/api/products/{pid}", json={"stock": 100})
    assert r.status_code == 200 and r.json["data"]["stock"] == 100


# ================================================================ products: delete


def test_delete_product_is_204_and_it_is_gone_from_reads(api):
    keep = api.new_product(name="Keep")
    pid = api.new_product(name="Gone")
    r = api.client.simulate_delete(f"/api/products/{pid}")
    assert r.status_code == 204 and not r.content
    assert_error(api.client.simulate_get(f"/api/products/{pid}"), 404)
    assert [p["id"] for p in api.client.simulate_get("/api/products").json["data"]] == [keep]
    assert_error(api.client.simulate_delete(f"/api/products/{pid}"), 404)
    assert_error(api.client.simulate_put(f"/api/products/{pid}", json={"stock": 1}), 404)
    assert_error(
        api.client.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 1}),
        422,
        field="product_id",
    )
    assert_error(
        api.client.simulate_post("/api/holds", json={"product_id": pid, "quantity": 1}), 422, field="product_id"
    )


def test_delete_of_a_missing_product_is_404(api):
    assert_error(api.client.simulate_delete("/api/products/999999"), 404)
    assert_error(api.client.simulate_delete("/api/products/x"), 404)


def test_delete_with_an_active_hold_is_409(api):
    pid = api.new_product()
    api.hold(pid, 1)
    assert_error(api.client.simulate_delete(f"/api/products/{pid}"), 409)
    assert api.product(pid)["reserved"] == 1


def test_delete_with_a_pending_order_is_409(api):
    pid = api.new_product()
    api.pending_order(pid, 1)
    assert_error(api.client.simulate_delete(f"/api/products/{pid}"), 409)


def test_delete_with_only_expired_holds_succeeds(api):
    pid = api.new_product()
    api.hold(pid, 1)
    api.clock.advance(121)
    assert api.client.simulate_delete(f"/api/products/{pid}").status_code == 204


def test_orders_of_a_deleted_product_keep_their_data(api):
    pid = api.new_product(stock=10, price="100.00", name="Phone")
    order = api.purchase(pid, 2)
    assert api.client.simulate_delete(f"/api/products/{pid}").status_code == 204
    again = api.get_order(order["id"])
    assert_order(again)
    assert again["product"]["id"] == pid and again["product"]["name"] == "Phone"
    assert again["total_price"] == "200.00" and again["quantity"] == 2


# ================================================================ admin token


@pytest.mark.parametrize(
    "authorization", [None, "Bearer wrong", "Bearer", "s3cret", "Basic czNjcmV0", "Bearer s3cret2", "Bearer s3cre"]
)
def test_product_writes_and_logs_need_the_admin_token(api, authorization):
    pid = api.new_product(stock=10)
    admin = api.app(admin_token=ADMIN_TOKEN)
    headers = {} if authorization is None else {"Authorization": authorization}
    before = api.shop.list_products()
    events_before = api.shop.logs()
    assert_error(admin.simulate_post("/api/products", json={"name": "N", "price": 1, "stock": 1}, headers=headers), 401)
    assert_error(admin.simulate_put(f"/api/products/{pid}", json={"stock": 1}, headers=headers), 401)
    assert_error(admin.simulate_delete(f"/api/products/{pid}", headers=headers), 401)
    r = admin.simulate_get("/api/logs", headers=headers)
    assert_error(r, 401)
    assert "bearer" in r.headers.get("www-authenticate", "").lower()
    assert api.shop.list_products() == before and api.shop.logs() == events_before


def test_the_admin_token_opens_product_writes_and_logs(api):
    admin = api.app(admin_token=ADMIN_TOKEN)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    r = admin.simulate_post("/api/products", json={"name": "N", "price": 1, "stock": 1}, headers=auth)
    assert r.status_code == 201
    pid = r.json["data"]["id"]
    assert admin.simulate_put(f"/api/products/{pid}", json={"stock": 2}, headers=auth).status_code == 200
    assert admin.simulate_get("/api/logs", headers=auth).status_code == 200
    assert admin.simulate_get("/api/logs", headers={"Authorization": f"bearer {ADMIN_TOKEN}"}).status_code == 200
    assert admin.simulate_delete(f"/api/products/{pid}", headers=auth).status_code == 204


def test_product_reads_and_buying_stay_public_with_an_admin_token(api):
    pid = api.new_product(stock=10)
    admin = api.app(admin_token=ADMIN_TOKEN)
    assert admin.simulate_get("/api/products").status_code == 200
    assert admin.simulate_get(f"/api/products/{pid}").status_code == 200
    r = admin.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 1})
    assert r.status_code == 201
    assert admin.simulate_get(f"/api/orders/{r.json['data']['id']}").status_code == 200
    r = admin.simulate_post("/api/holds", json={"product_id": pid, "quantity": 1})
    assert r.status_code == 201
    assert admin.simulate_get(f"/api/holds/{r.json['hold_id']}").status_code == 200
    assert admin.simulate_post("/api/orders", json={"hold_id": r.json["hold_id"]}).status_code == 201
    assert admin.simulate_get("/healthz").status_code == 200


# ================================================================ purchase


def test_purchase_is_201_with_the_order_and_the_product_after_the_sale(api):
    pid = api.new_product(stock=10, price="15000000.00", name="iPhone")
    r = api.client.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 2})
    assert r.status_code == 201 and set(r.json) == {"data"}
    o = r.json["data"]
    assert_order(o)
    assert (o["product_id"], o["hold_id"], o["quantity"], o["total_price"], o["status"]) == (
        pid,
        None,
        2,
        "30000000.00",
        "created",
    )
    assert o["product"] == {"id": pid, "name": "iPhone", "price": "15000000.00", "stock": 8}
    assert api.levels(pid) == (8, 0, 8)
    assert api.get_order(o["id"]) == o
    assert [e["data"]["order_id"] for e in api.events("purchase_created")] == [o["id"]]


def test_purchase_of_the_max_quantity_is_allowed(api):
    pid = api.new_product(stock=150)
    assert api.purchase(pid, 100)["quantity"] == 100


def test_purchase_beyond_stock_is_409_out_of_stock_and_changes_nothing(api):
    pid = api.new_product(stock=2)
    r = api.client.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 3})
    assert r.status_code == 409 and r.json == {"message": "Out of stock"}
    assert api.levels(pid) == (2, 0, 2)
    api.purchase(pid, 2)
    r = api.client.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 1})
    assert r.status_code == 409 and r.json == {"message": "Out of stock"}
    assert api.levels(pid) == (0, 0, 0)
    assert len(api.events("purchase_created")) == 1


def test_held_units_cannot_be_bought(api):
    pid = api.new_product(stock=2)
    api.hold(pid, 2)
    r = api.client.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 1})
    assert r.status_code == 409 and r.json == {"message": "Out of stock"}


def test_purchase_succeeds_when_only_expired_unswept_holds_are_in_the_way(api):
    pid = api.new_product(stock=2)
    hold = api.hold(pid, 2)
    api.clock.advance(121)
    assert api.purchase(pid, 2)["product"]["stock"] == 0
    assert api.levels(pid) == (0, 0, 0)
    assert api.client.simulate_get(f"/api/holds/{hold}").json["status"] == "expired"


@pytest.mark.parametrize(
    "body, field",
    [
        ({"product_id": 999999, "quantity": 1}, "product_id"),
        ({"product_id": "P", "quantity": 1}, "product_id"),
        ({"product_id": 0, "quantity": 1}, "product_id"),
        ({"product_id": 2**63, "quantity": 1}, "product_id"),
        ({"product_id": True, "quantity": 1}, "product_id"),
        ({"quantity": 1}, "product_id"),
        ({"product_id": "{pid}", "quantity": 0}, "quantity"),
        ({"product_id": "{pid}", "quantity": -1}, "quantity"),
        ({"product_id": "{pid}", "quantity": 101}, "quantity"),
        ({"product_id": "{pid}", "quantity": "1"}, "quantity"),
        ({"product_id": "{pid}", "quantity": True}, "quantity"),
        ({"product_id": "{pid}", "quantity": 1.0}, "quantity"),
        ({"product_id": "{pid}", "quantity": None}, "quantity"),
        ({"product_id": "{pid}"}, "quantity"),
    ],
)
@pytest.mark.parametrize("path", ["/api/orders/purchase", "/api/holds"])
def test_purchase_and_hold_field_rules_are_422(api, path, body, field):
    pid = api.new_product(stock=500)
    body = {k: (pid if v == "{pid}" else v) for k, v in body.items()}
    assert_error(api.client.simulate_post(path, json=body), 422, field=field)
    assert api.levels(pid) == (500, 0, 500)


# ================================================================ holds


def test_hold_is_201_with_its_shape_and_reserves_units(api):
    pid = api.new_product(stock=10)
    r = api.client.simulate_post("/api/holds", json={"product_id": pid, "quantity": 3})
    assert r.status_code == 201
    assert set(r.json) == NEW_HOLD_KEYS
    assert (r.json["product_id"], r.json["quantity"], r.json["status"]) == (pid, 3, "active")
    assert r.json["expires_at"] == "2026-01-07T08:02:00.000000Z"
    assert type(r.json["hold_id"]) is int
    assert api.levels(pid) == (10, 3, 7)
    assert [e["data"]["hold_id"] for e in api.events("hold_created")] == [r.json["hold_id"]]


def test_hold_beyond_available_is_409_out_of_stock(api):
    pid = api.new_product(stock=3)
    api.hold(pid, 2)
    r = api.client.simulate_post("/api/holds", json={"product_id": pid, "quantity": 2})
    assert r.status_code == 409 and r.json == {"message": "Out of stock"}
    assert api.levels(pid) == (3, 2, 1)


def test_hold_succeeds_when_only_expired_unswept_holds_are_in_the_way(api):
    pid = api.new_product(stock=3)
    api.hold(pid, 3)
    api.clock.advance(121)
    api.hold(pid, 3)
    assert api.levels(pid) == (3, 3, 0)


def test_get_hold_shows_active_then_used(api):
    pid = api.new_product()
    hold = api.hold(pid, 2)
    r = api.client.simulate_get(f"/api/holds/{hold}")
    assert r.status_code == 200
    assert r.json == {
        "hold_id": hold,
        "product_id": pid,
        "quantity": 2,
        "status": "active",
        "expires_at": "2026-01-07T08:02:00.000000Z",
        "order_id": None,
        "customer_id": None,
        "created_at": "2026-01-07T08:00:00.000000Z",
    }
    order_id = api.order(hold)
    r = api.client.simulate_get(f"/api/holds/{hold}")
    assert r.json["status"] == "used" and r.json["order_id"] == order_id


def test_get_hold_shows_released(api):
    pid = api.new_product()
    hold = api.hold(pid)
    assert api.client.simulate_delete(f"/api/holds/{hold}").status_code == 204
    r = api.client.simulate_get(f"/api/holds/{hold}")
    assert r.json["status"] == "released" and r.json["order_id"] is None


def test_get_hold_shows_expired_before_any_sweep(api):
    pid = api.new_product(stock=5)
    hold = api.hold(pid, 2)
    api.clock.advance(119)
    assert api.client.simulate_get(f"/api/holds/{hold}").json["status"] == "active"
    api.clock.advance(2)
    assert api.client.simulate_get(f"/api/holds/{hold}").json["status"] == "expired"
    api.shop.sweep()
    assert api.client.simulate_get(f"/api/holds/{hold}").json["status"] == "expired"
    assert api.levels(pid) == (5, 0, 5)


def test_an_expired_holds_units_come_back_with_the_sweep(api):
    pid = api.new_product(stock=5)
    api.hold(pid, 2)
    api.hold(pid, 1)
    api.clock.advance(121)
    api.shop.sweep()
    assert api.levels(pid) == (5, 0, 5)
    batch = api.events("holds_batch_released")
    assert len(batch) == 1 and batch[0]["data"]["count"] == 2
    assert sorted(e["data"]["reason"] for e in api.events("hold_released")) == ["expired", "expired"]


def test_delete_hold_is_204_and_returns_its_units(api):
    pid = api.new_product(stock=5)
    hold = api.hold(pid, 3)
    assert api.levels(pid) == (5, 3, 2)
    r = api.client.simulate_delete(f"/api/holds/{hold}")
    assert r.status_code == 204 and not r.content
    assert api.levels(pid) == (5, 0, 5)
    released = api.events("hold_released")
    assert [(e["data"]["hold_id"], e["data"]["reason"]) for e in released] == [(hold, "released")]


def test_deleting_a_hold_twice_returns_its_units_once(api):
    pid = api.new_product(stock=5)
    hold = api.hold(pid, 3)
    api.hold(pid, 1)
    assert api.client.simulate_delete(f"/api/holds/{hold}").status_code == 204
    assert api.client.simulate_delete(f"/api/holds/{hold}").status_code == 204
    assert api.levels(pid) == (5, 1, 4)
    assert len(api.events("hold_released")) == 1


def test_delete_of_a_used_hold_is_409(api):
    pid = api.new_product(stock=5)
    hold = api.hold(pid, 2)
    api.order(hold)
    assert_error(api.client.simulate_delete(f"/api/holds/{hold}"), 409)
    assert api.levels(pid) == (5, 2, 3)


@pytest.mark.parametrize("raw_id", ["999999", "0", "-1", "abc", str(2**63)])
def test_unknown_hold_is_404(api, raw_id):
    assert_error(api.client.simulate_get(f"/api/holds/{raw_id}"), 404)
    assert_error(api.client.simulate_delete(f"/api/holds/{raw_id}"), 404)


# ================================================================ orders from holds


def test_order_from_a_hold_is_201_pending(api):
    pid = api.new_product(stock=10, price="19.99")
    hold = api.hold(pid, 3)
    r = api.client.simulate_post("/api/orders", json={"hold_id": hold})
    assert r.status_code == 201
    assert set(r.json) == PENDING_ORDER_KEYS
    order_id = r.json["order_id"]
    assert r.json == {
        "order_id": order_id,
        "status": "pending",
        "total_price": "59.97",
        "hold_id": hold,
        "product_id": pid,
        "quantity": 3,
    }
    assert api.levels(pid) == (10, 3, 7)
    o = api.get_order(order_id)
    assert_order(o)
    assert (o["id"], o["product_id"], o["hold_id"], o["quantity"], o["total_price"], o["status"]) == (
        order_id,
        pid,
        hold,
        3,
        "59.97",
        "pending",
    )
    assert o["product"] == {"id": pid, "name": "Phone", "price": "19.99", "stock": 10}
    assert [e["data"]["order_id"] for e in api.events("order_created")] == [order_id]


def test_order_from_a_used_hold_is_409(api):
    pid = api.new_product(stock=10)
    hold = api.hold(pid, 3)
    api.order(hold)
    assert_error(api.client.simulate_post("/api/orders", json={"hold_id": hold}), 409)
    assert api.levels(pid) == (10, 3, 7)
    assert len(api.events("order_created")) == 1


def test_order_from_a_released_hold_is_409(api):
    pid = api.new_product(stock=10)
    hold = api.hold(pid, 3)
    api.client.simulate_delete(f"/api/holds/{hold}")
    assert_error(api.client.simulate_post("/api/orders", json={"hold_id": hold}), 409)
    assert api.levels(pid) == (10, 0, 10)


@pytest.mark.parametrize("swept", [False, True])
def test_an_expired_hold_cannot_become_an_order(api, swept):
    pid = api.new_product(stock=10)
    hold = api.hold(pid, 3)
    api.clock.advance(121)
    if swept:
        api.shop.sweep()
    assert_error(api.client.simulate_post("/api/orders", json={"hold_id": hold}), 409)
    assert api.events("order_created") == []
    api.shop.sweep()  # units of an expired hold come back with the sweep, if not before
    assert api.levels(pid) == (10, 0, 10)


@pytest.mark.parametrize(
    "body",
    [
        {"hold_id": 999999},
        {"hold_id": 0},
        {"hold_id": "1"},
        {"hold_id": True},
        {"hold_id": 1.0},
        {"hold_id": 2**63},
        {},
    ],
)
def test_order_with_a_bad_or_unknown_hold_id_is_422(api, body):
    assert_error(api.client.simulate_post("/api/orders", json=body), 422, field="hold_id")


@pytest.mark.parametrize("raw_id", ["999999", "0", "-1", "abc", str(2**63)])
def test_unknown_order_is_404(api, raw_id):
    assert_error(api.client.simulate_get(f"/api/orders/{raw_id}"), 404)


# ================================================================ Idempotency-Key

IDEMPOTENT_POSTS = ["purchase", "hold", "order", "adjustment"]


def _idempotent_request(api: Api, kind: str) -> tuple[str, dict, Callable[[], Any]]:
    """(path, body, observe) for one of the keyed POSTs; `observe` returns the state it changes."""
    pid = api.new_product(stock=10)
    if kind == "adjustment":
        return (
            f"/api/products/{pid}/adjustments",
            {"delta": 2, "reason": "delivery"},
            lambda: (api.levels(pid), api.adjustments(pid)),
        )
    if kind == "purchase":
        return "/api/orders/purchase", {"product_id": pid, "quantity": 2}, lambda: api.levels(pid)
    if kind == "hold":
        return "/api/holds", {"product_id": pid, "quantity": 2}, lambda: api.levels(pid)
    hold = api.hold(pid, 2)
    return "/api/orders", {"hold_id": hold}, lambda: (api.levels(pid), len(api.events("order_created")))


@pytest.mark.parametrize("kind", IDEMPOTENT_POSTS)
def test_a_retry_with_the_same_key_replays_the_first_response_without_a_second_effect(api, kind):
    path, body, observe = _idempotent_request(api, kind)
    headers = {"Idempotency-Key": f"key-{kind}"}
    first = api.client.simulate_post(path, json=body, headers=headers)
    assert first.status_code == 201 and "idempotent-replayed" not in first.headers
    after_first = observe()
    for _ in range(2):
        again = api.client.simulate_post(path, json=body, headers=headers)
        assert again.status_code == 201
        assert again.json == first.json
        assert again.headers.get("idempotent-replayed") == "true"
        assert again.headers["content-type"].startswith("application/json")
    assert observe() == after_first
    different = api.client.simulate_post(path, json=body, headers={"Idempotency-Key": f"other-{kind}"})
    assert different.status_code in (201, 409) and "idempotent-replayed" not in different.headers


@pytest.mark.parametrize("kind", IDEMPOTENT_POSTS)
def test_the_same_key_with_a_different_body_is_422(api, kind):
    path, body, observe = _idempotent_request(api, kind)
    headers = {"Idempotency-Key": "shared"}
    assert api.client.simulate_post(path, json=body, headers=headers).status_code == 201
    after_first = observe()
    other = dict(body)
    if "quantity" in other:
        other["quantity"] = 1
    elif "delta" in other:
        other["delta"] = 3
    else:
        other["hold_id"] = api.hold(api.new_product(), 1)
        after_first = observe()
    assert_error(api.client.simulate_post(path, json=other, headers=headers), 422)
    assert observe() == after_first


def test_keys_are_scoped_per_endpoint(api):
    pid = api.new_product(stock=10)
    headers = {"Idempotency-Key": "same"}
    body = {"product_id": pid, "quantity": 1}
    assert api.client.simulate_post("/api/orders/purchase", json=body, headers=headers).status_code == 201
    r = api.client.simulate_post("/api/holds", json=body, headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers
    assert api.levels(pid) == (9, 1, 8)


@pytest.mark.parametrize("path", ["/api/orders/purchase", "/api/holds"])
def test_an_out_of_stock_refusal_is_replayed_too(api, path):
    pid = api.new_product(stock=1)
    body = {"product_id": pid, "quantity": 2}
    headers = {"Idempotency-Key": "oos"}
    first = api.client.simulate_post(path, json=body, headers=headers)
    assert first.status_code == 409 and first.json == {"message": "Out of stock"}
    api.client.simulate_put(f"/api/products/{pid}", json={"stock": 10})
    again = api.client.simulate_post(path, json=body, headers=headers)
    assert again.status_code == 409 and again.json == first.json
    assert again.headers.get("idempotent-replayed") == "true"
    assert api.levels(pid) == (10, 0, 10)


def test_a_conflict_from_an_order_is_replayed(api):
    pid = api.new_product(stock=5)
    hold = api.hold(pid, 1)
    api.order(hold)
    headers = {"Idempotency-Key": "used"}
    first = api.client.simulate_post("/api/orders", json={"hold_id": hold}, headers=headers)
    assert first.status_code == 409
    again = api.client.simulate_post("/api/orders", json={"hold_id": hold}, headers=headers)
    assert (again.status_code, again.json, again.headers.get("idempotent-replayed")) == (409, first.json, "true")


@pytest.mark.parametrize("kind", IDEMPOTENT_POSTS)
@pytest.mark.parametrize("key", ["k" * 256, "", "has space", "ünïcode", "tab\there"])
def test_an_invalid_idempotency_key_is_422_with_no_effect(api, kind, key):
    path, body, observe = _idempotent_request(api, kind)
    before = observe()
    assert_error(api.client.simulate_post(path, json=body, headers={"Idempotency-Key": key}), 422)
    assert observe() == before


def test_a_255_character_key_is_accepted(api):
    pid = api.new_product()
    headers = {"Idempotency-Key": "k" * 255}
    r = api.client.simulate_post("/api/holds", json={"product_id": pid, "quantity": 1}, headers=headers)
    assert r.status_code == 201
    again = api.client.simulate_post("/api/holds", json={"product_id": pid, "quantity": 1}, headers=headers)
    assert again.headers.get("idempotent-replayed") == "true" and again.json == r.json


def test_idempotency_keys_are_case_sensitive_opaque_strings(api):
    pid = api.new_product(stock=10)
    body = {"product_id": pid, "quantity": 1}
    for key in ("Key-A", "key-a", "KEY-A", "Key-A_"):
        r = api.client.simulate_post("/api/orders/purchase", json=body, headers={"Idempotency-Key": key})
        assert r.status_code == 201 and "idempotent-replayed" not in r.headers, key
    assert api.levels(pid) == (6, 0, 6)


def test_idempotency_keys_are_kept_at_least_24_hours(api):
    pid = api.new_product(stock=10)
    body = {"product_id": pid, "quantity": 1}
    first = api.client.simulate_post("/api/orders/purchase", json=body, headers={"Idempotency-Key": "day"})
    api.clock.advance(hours=24, seconds=1)
    api.shop.sweep()  # includes purging old keys
    again = api.client.simulate_post("/api/orders/purchase", json=body, headers={"Idempotency-Key": "day"})
    assert again.status_code == 201 and again.json == first.json
    assert again.headers.get("idempotent-replayed") == "true"
    assert api.levels(pid) == (9, 0, 9)


def test_a_request_whose_key_is_in_flight_waits_for_the_first_and_then_replays_or_runs(api):
    """The claim commits with the effect, so a second request with the key waits for the
    first one's transaction: it replays the first answer when that committed, and runs as
    the first when that rolled back (its effect never happened)."""
    pid = api.new_product(stock=10)
    body = {"product_id": pid, "quantity": 1}
    key = request_key("orders.purchase", "busy", Purchase(pid, 1))
    for first_commits in (False, True):
        headers = {"Idempotency-Key": f"busy-{first_commits}"}
        key = request_key("orders.purchase", headers["Idempotency-Key"], Purchase(pid, 1))
        first = api.shop.deps.uow()
        first.__enter__()
        first.idempotency.claim(key, api.clock.now(), encode_refusal(OutOfStock()))
        first.products.get(pid)  # a statement run at once sends what was held: the key is claimed
        responses: list = []
        second = threading.Thread(
            target=lambda: responses.append(
                api.client.simulate_post("/api/orders/purchase", json=body, headers=headers)
            )
        )
        second.start()
        second.join(0.5)
        assert second.is_alive(), "the second request must wait for the first one's transaction"
        if first_commits:
            first.commit()
        first.__exit__(None, None, None)
        second.join(30)
        [response] = responses
        if first_commits:
            assert_error(response, 409)
            assert response.headers.get("idempotent-replayed") == "true"
        else:
            assert response.status_code == 201 and "idempotent-replayed" not in response.headers
    assert api.levels(pid) == (9, 0, 9)


# ================================================================ payment webhook


def test_a_success_for_a_pending_order_pays_it(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 3)
    assert api.levels(pid) == (10, 3, 7)
    r = api.webhook(order_id, "success", "pay-1")
    assert r.status_code == 200 and "idempotent-replayed" not in r.headers
    assert r.json == {"order_id": order_id, "status": "paid", "idempotency_key": "pay-1", "outcome": "applied"}
    assert api.levels(pid) == (7, 0, 7)
    assert api.get_order(order_id)["status"] == "paid"
    assert [e["data"]["order_id"] for e in api.events("order_paid")] == [order_id]


@pytest.mark.parametrize("status", ["failure", "failed"])
def test_a_failure_for_a_pending_order_cancels_it(api, status):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 3)
    r = api.webhook(order_id, status, "pay-f")
    assert r.status_code == 200
    assert r.json == {"order_id": order_id, "status": "cancelled", "idempotency_key": "pay-f", "outcome": "applied"}
    assert api.levels(pid) == (10, 0, 10)
    assert api.get_order(order_id)["status"] == "cancelled"
    assert [e["data"]["order_id"] for e in api.events("order_cancelled")] == [order_id]


@pytest.mark.parametrize("status", ["success", "failure"])
def test_a_repeated_delivery_is_replayed_without_a_second_effect(api, status):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 3)
    first = api.webhook(order_id, status, "again")
    levels = api.levels(pid)
    events = api.shop.logs()
    for _ in range(3):
        r = api.webhook(order_id, status, "again")
        assert (r.status_code, r.json) == (first.status_code, first.json)
        assert r.headers.get("idempotent-replayed") == "true"
    assert api.levels(pid) == levels
    assert api.shop.logs() == events


def test_the_same_webhook_key_with_a_different_body_is_422(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 3)
    other_order = api.pending_order(pid, 1)
    api.webhook(order_id, "success", "k1")
    levels = api.levels(pid)
    assert_error(api.webhook(order_id, "failure", "k1"), 422)
    assert_error(api.webhook(other_order, "success", "k1"), 422)
    assert api.levels(pid) == levels
    assert api.get_order(other_order)["status"] == "pending"


def test_a_webhook_for_an_order_not_there_yet_is_deferred_and_applied_when_it_is_created(api):
    pid = api.new_product(stock=10)
    latest = api.purchase(pid, 1)["id"]
    future = latest + 1
    r = api.webhook(future, "success", "early")
    assert r.status_code == 202
    assert r.json == {"order_id": future, "status": "deferred", "idempotency_key": "early", "outcome": "deferred"}
    assert [e["data"]["order_id"] for e in api.events("payment_deferred")] == [future]
    assert api.levels(pid) == (9, 0, 9)
    assert api.pending_order(pid, 2) == future
    assert api.get_order(future)["status"] == "pending"
    assert any(m.task == "stockade.apply_deferred_payments" for m in api.pending_tasks())
    assert api.shop.apply_deferred_payments() == 1
    assert api.get_order(future)["status"] == "paid"
    assert api.levels(pid) == (7, 0, 7)
    assert api.shop.apply_deferred_payments() == 0
    replay = api.webhook(future, "success", "early")
    assert (replay.status_code, replay.json) == (202, r.json)
    assert replay.headers.get("idempotent-replayed") == "true"
    assert api.levels(pid) == (7, 0, 7)


def test_a_deferred_webhook_is_applied_by_the_background_task_or_the_sweep(api):
    pid = api.new_product(stock=10)
    future = api.purchase(pid, 1)["id"] + 1
    assert api.webhook(future, "failure", "early-f").status_code == 202
    assert api.pending_order(pid, 2) == future
    api.run_tasks()
    assert api.get_order(future)["status"] == "cancelled"
    assert api.levels(pid) == (9, 0, 9)
    api.shop.sweep()
    assert api.levels(pid) == (9, 0, 9)


def test_a_deferred_webhook_for_what_becomes_a_direct_purchase_is_ignored_when_it_is_processed(api):
    pid = api.new_product(stock=10)
    future = api.purchase(pid, 1)["id"] + 1
    assert api.webhook(future, "success", "early-p").status_code == 202
    assert api.purchase(pid, 2)["id"] == future
    api.run_tasks()  # the purchases' process_order tasks; no sweep runs
    assert api.get_order(future)["status"] == "processed"
    assert [e["data"]["order_id"] for e in api.events("payment_ignored")] == [future]
    assert api.events("payment_refund_required") == []
    assert api.levels(pid) == (7, 0, 7)
    assert api.shop.apply_deferred_payments() == 0  # nothing was left deferred


@pytest.mark.parametrize("status", ["success", "failure"])
def test_a_webhook_for_a_paid_order_is_ignored(api, status):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    api.webhook(order_id, "success", "first")
    levels = api.levels(pid)
    r = api.webhook(order_id, status, "second")
    assert r.status_code == 200
    assert r.json == {"order_id": order_id, "status": "paid", "idempotency_key": "second", "outcome": "ignored"}
    assert api.levels(pid) == levels
    ignored = api.events("payment_ignored")
    assert len(ignored) == 1 and ignored[0]["data"]["order_id"] == order_id
    assert api.events("payment_refund_required") == []


def test_a_webhook_for_a_processed_order_is_ignored(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    api.webhook(order_id, "success", "first")
    api.run_tasks()
    assert api.get_order(order_id)["status"] == "processed"
    r = api.webhook(order_id, "success", "late")
    assert r.status_code == 200 and (r.json["status"], r.json["outcome"]) == ("processed", "ignored")


def test_a_failure_for_a_cancelled_order_is_ignored_without_refund(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    api.webhook(order_id, "failure", "first")
    r = api.webhook(order_id, "failure", "second")
    assert r.status_code == 200 and (r.json["status"], r.json["outcome"]) == ("cancelled", "ignored")
    assert len(api.events("payment_ignored")) == 1
    assert api.events("payment_refund_required") == []


def test_a_success_for_a_cancelled_order_is_ignored_and_asks_for_a_refund(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    api.webhook(order_id, "failure", "first")
    levels = api.levels(pid)
    r = api.webhook(order_id, "success", "late")
    assert r.status_code == 200
    assert r.json == {"order_id": order_id, "status": "cancelled", "idempotency_key": "late", "outcome": "ignored"}
    assert api.levels(pid) == levels
    assert [e["data"]["order_id"] for e in api.events("payment_ignored")] == [order_id]
    refund = api.events("payment_refund_required")
    assert len(refund) == 1 and refund[0]["data"]["order_id"] == order_id


def test_a_success_for_an_order_cancelled_by_the_payment_timeout_asks_for_a_refund(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    api.clock.advance(901)
    api.shop.sweep()
    assert api.get_order(order_id)["status"] == "cancelled"
    assert api.levels(pid) == (10, 0, 10)
    assert [e["data"].get("reason") for e in api.events("order_cancelled")] == ["payment_timeout"]
    r = api.webhook(order_id, "success", "too-late")
    assert r.status_code == 200 and (r.json["status"], r.json["outcome"]) == ("cancelled", "ignored")
    assert len(api.events("payment_refund_required")) == 1


def test_a_webhook_for_a_direct_purchase_is_ignored(api):
    pid = api.new_product(stock=10)
    order = api.purchase(pid, 1)
    r = api.webhook(order["id"], "success", "not-pending")
    assert r.status_code == 200 and (r.json["status"], r.json["outcome"]) == ("created", "ignored")
    assert api.levels(pid) == (9, 0, 9)


def test_webhook_keys_are_case_sensitive_and_may_be_any_text(api):
    pid = api.new_product(stock=10)
    keys = ["Pay-1", "pay-1", "🛒" * 255, "pay-1 "]
    orders = [api.pending_order(pid, 1) for _ in keys]
    for key, order_id in zip(keys, orders):
        r = api.webhook(order_id, "success", key)
        assert r.status_code == 200 and r.json["outcome"] == "applied" and r.json["idempotency_key"] == key, key
    for key, order_id in zip(keys, orders):
        r = api.webhook(order_id, "success", key)
        assert r.headers.get("idempotent-replayed") == "true" and r.json["idempotency_key"] == key
    assert api.levels(pid) == (6, 0, 6)


def test_a_webhook_for_the_largest_order_id_is_deferred(api):
    r = api.webhook(MAX_ID, "success", "max")
    assert r.status_code == 202 and r.json["order_id"] == MAX_ID
    assert api.shop.apply_deferred_payments() == 0


@pytest.mark.parametrize(
    "body, field",
    [
        ({"order_id": 1, "status": "success"}, "idempotency_key"),
        ({"idempotency_key": "", "order_id": 1, "status": "success"}, "idempotency_key"),
        ({"idempotency_key": "k" * 256, "order_id": 1, "status": "success"}, "idempotency_key"),
        ({"idempotency_key": 5, "order_id": 1, "status": "success"}, "idempotency_key"),
        ({"idempotency_key": "k", "status": "success"}, "order_id"),
        ({"idempotency_key": "k", "order_id": "1", "status": "success"}, "order_id"),
        ({"idempotency_key": "k", "order_id": 0, "status": "success"}, "order_id"),
        ({"idempotency_key": "k", "order_id": True, "status": "success"}, "order_id"),
        ({"idempotency_key": "k", "order_id": 1.0, "status": "success"}, "order_id"),
        ({"idempotency_key": "k", "order_id": 2**63, "status": "success"}, "order_id"),
        ({"idempotency_key": "k", "order_id": 1}, "status"),
        ({"idempotency_key": "k", "order_id": 1, "status": "paid"}, "status"),
        ({"idempotency_key": "k", "order_id": 1, "status": "SUCCESS"}, "status"),
        ({"idempotency_key": "k", "order_id": 1, "status": 1}, "status"),
    ],
)
def test_webhook_field_rules_are_422(api, body, field):
    assert_error(api.client.simulate_post("/api/payments/webhook", json=body), 422, field=field)
    assert api.events() == []


# ---------------------------------------------------------------- webhook signature


def _signed_client(api: Api) -> falcon.testing.TestClient:
    return api.app(webhook_secret=WEBHOOK_SECRET)


def _raw(order_id: int, key: str = "signed", status: str = "success") -> bytes:
    return json.dumps({"idempotency_key": key, "order_id": order_id, "status": status}).encode()


@pytest.mark.parametrize(
    "make_header",
    [
        lambda raw, api: None,
        lambda raw, api: "",
        lambda raw, api: signature(raw, api, secret="wrong"),
        lambda raw, api: signature(raw + b" ", api),
        lambda raw, api: signature(raw, api, age=301),
        lambda raw, api: signature(raw, api, age=-301),
        lambda raw, api: signature(raw, api).split(",")[1],
        lambda raw, api: signature(raw, api).split(",")[0],
        lambda raw, api: signature(raw, api).replace("v1=", "v0="),
        lambda raw, api: "t=abc,v1=00",
        lambda raw, api: signature(raw, api).upper(),
    ],
    ids=[
        "missing",
        "empty",
        "wrong-secret",
        "other-body",
        "stale",
        "future",
        "no-t",
        "no-v1",
        "v0",
        "garbage",
        "upper",
    ],
)
def test_a_webhook_without_a_valid_signature_is_401_with_no_effect(api, make_header):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    raw = _raw(order_id)
    header = make_header(raw, api)
    headers = {"Content-Type": "application/json", **({} if header is None else {"Stockade-Signature": header})}
    before = api.shop.logs()
    assert_error(_signed_client(api).simulate_post("/api/payments/webhook", body=raw, headers=headers), 401)
    assert api.get_order(order_id)["status"] == "pending"
    assert api.levels(pid) == (10, 2, 8)
    assert api.shop.logs() == before
    # Nothing was recorded under the key: a valid delivery applies it now (not a replay).
    r = _signed_client(api).simulate_post(
        "/api/payments/webhook",
        body=raw,
        headers={"Content-Type": "application/json", "Stockade-Signature": signature(raw, api)},
    )
    assert r.status_code == 200 and r.json["outcome"] == "applied" and "idempotent-replayed" not in r.headers


@pytest.mark.parametrize("age", [0, 299, -299])
def test_a_validly_signed_webhook_is_applied(api, age):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    raw = _raw(order_id)
    header = signature(raw, api, age=age)
    r = _signed_client(api).simulate_post(
        "/api/payments/webhook", body=raw, headers={"Content-Type": "application/json", "Stockade-Signature": header}
    )
    assert r.status_code == 200 and r.json["status"] == "paid"
    assert api.levels(pid) == (8, 0, 8)


@pytest.mark.parametrize("stamp", ["\u00b2", "\u00b9\u00b2\u00b3", "1\u00b2"])
def test_a_signature_stamp_with_non_ascii_digits_is_401(api, stamp):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 2)
    raw = _raw(order_id)
    mac = hmac.new(WEBHOOK_SECRET.encode(), f"{stamp}.".encode() + raw, hashlib.sha256).hexdigest()
    r = _signed_client(api).simulate_post(
        "/api/payments/webhook",
        body=raw,
        headers={"Content-Type": "application/json", "Stockade-Signature": f"t={stamp},v1={mac}"},
    )
    assert_error(r, 401)
    assert api.get_order(order_id)["status"] == "pending"


def test_a_signature_is_checked_before_the_body(api):
    raw = b"{not json"
    r = _signed_client(api).simulate_post(
        "/api/payments/webhook", body=raw, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 401)
    r = _signed_client(api).simulate_post(
        "/api/payments/webhook",
        body=raw,
        headers={"Content-Type": "application/json", "Stockade-Signature": signature(raw, api)},
    )
    assert_error(r, 400)


# ================================================================ logs


def test_logs_are_newest_first_with_their_shape(api):
    pid = api.new_product()
    api.purchase(pid, 1)
    api.hold(pid, 1)
    r = api.client.simulate_get("/api/logs")
    assert r.status_code == 200
    data = r.json["data"]
    assert [e["event"] for e in data] == ["hold_created", "purchase_created", "product_created"]
    assert [e["id"] for e in data] == sorted((e["id"] for e in data), reverse=True)
    for e in data:
        assert set(e) == LOG_KEYS and isinstance(e["data"], dict) and TIMESTAMP.fullmatch(e["created_at"])
    assert data[0]["data"]["product_id"] == pid and data[0]["data"]["quantity"] == 1


def test_logs_filter_by_event(api):
    pid = api.new_product()
    api.new_product(name="Other")
    api.purchase(pid, 1)
    r = api.client.simulate_get("/api/logs", params={"event": "product_created"})
    assert [e["event"] for e in r.json["data"]] == ["product_created", "product_created"]
    r = api.client.simulate_get("/api/logs", params={"event": "no_such_event"})
    assert r.status_code == 200 and r.json["data"] == []


@pytest.mark.parametrize(
    "event", ["PRODUCT_CREATED", "Product_Created", "product_created ", "product_créated", "product"]
)
def test_the_event_filter_matches_names_exactly(api, event):
    api.new_product()
    r = api.client.simulate_get("/api/logs", params={"event": event})
    assert r.status_code == 200 and r.json["data"] == []


def test_logs_page_with_limit_and_before_id(api):
    for i in range(5):
        api.new_product(name=f"P{i}")
    all_ids = [e["id"] for e in api.client.simulate_get("/api/logs").json["data"]]
    assert len(all_ids) == 5
    r = api.client.simulate_get("/api/logs", params={"limit": 2})
    assert [e["id"] for e in r.json["data"]] == all_ids[:2]
    r = api.client.simulate_get("/api/logs", params={"limit": 2, "before_id": all_ids[1]})
    assert [e["id"] for e in r.json["data"]] == all_ids[2:4]
    r = api.client.simulate_get("/api/logs", params={"before_id": all_ids[3]})
    assert [e["id"] for e in r.json["data"]] == all_ids[4:]
    assert api.client.simulate_get("/api/logs", params={"limit": 1000}).status_code == 200
    assert len(api.client.simulate_get("/api/logs", params={"limit": 1}).json["data"]) == 1


@pytest.mark.parametrize(
    "query, field",
    [
        ("limit=0", "limit"),
        ("limit=1001", "limit"),
        ("limit=abc", "limit"),
        ("limit=-1", "limit"),
        ("before_id=0", "before_id"),
        ("before_id=x", "before_id"),
        (f"before_id={2**63}", "before_id"),
        ("event=" + "e" * 65, "event"),
    ],
)
def test_bad_log_queries_are_422(api, query, field):
    assert_error(api.client.simulate_get("/api/logs", query_string=query), 422, field=field)


def test_every_contract_event_is_recorded_after_its_action(api):
    pid = api.new_product(stock=20)  # product_created
    bought = api.purchase(pid, 1)["id"]  # purchase_created
    released = api.hold(pid, 1)  # hold_created
    api.client.simulate_delete(f"/api/holds/{released}")  # hold_released
    api.hold(pid, 1)
    api.clock.advance(121)
    api.shop.sweep()  # holds_batch_released
    paid = api.pending_order(pid, 1)  # order_created
    api.webhook(paid, "success", "s1")  # order_paid
    cancelled = api.pending_order(pid, 1)
    api.webhook(cancelled, "failure", "f1")  # order_cancelled
    api.webhook(bought + 1000, "success", "d1")  # payment_deferred
    api.webhook(paid, "success", "s2")  # payment_ignored
    api.webhook(cancelled, "success", "s3")  # payment_refund_required
    api.shop.process_order(bought)  # order_processed
    extended = api.hold(pid, 1)
    api.client.simulate_patch(f"/api/holds/{extended}", json={"extend_seconds": 10})  # hold_extended
    api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": 1, "reason": "found"})  # stock_adjusted
    paid_then_cancelled = api.pending_order(pid, 1)
    api.webhook(paid_then_cancelled, "success", "s5")
    api.client.simulate_post(f"/api/orders/{paid_then_cancelled}/cancel")
    api.client.simulate_post(f"/api/orders/{paid_then_cancelled}/refund")  # order_refunded
    expected = {
        "product_created": {"product_id": pid},
        "purchase_created": {"order_id": bought, "product_id": pid, "quantity": 1},
        "hold_created": {"hold_id": released, "product_id": pid},
        "hold_released": {"hold_id": released},
        "holds_batch_released": {"count": 1},
        "order_created": {"order_id": paid},
        "order_paid": {"order_id": paid},
        "order_cancelled": {"order_id": cancelled},
        "order_processed": {"order_id": bought},
        "payment_deferred": {"order_id": bought + 1000},
        "payment_ignored": {"order_id": paid},
        "payment_refund_required": {"order_id": cancelled},
        "hold_extended": {"hold_id": extended, "extend_seconds": 10},
        "stock_adjusted": {"product_id": pid, "delta": 1, "reason": "found"},
        "order_refunded": {"order_id": paid_then_cancelled},
    }
    for event, data in expected.items():
        found = api.events(event)
        assert found, f"{event} was not recorded"
        assert any(data.items() <= e["data"].items() for e in found), (event, found)


# ================================================================ operations endpoints


def test_healthz(api):
    r = api.client.simulate_get("/healthz")
    assert r.status_code == 200 and r.json == {"status": "ok"}


def test_readyz_is_200_when_the_database_answers(api):
    r = api.client.simulate_get("/readyz")
    assert r.status_code == 200 and r.json["status"] == "ok" and r.json["checks"]["database"] == "ok"


def test_readyz_is_503_naming_what_failed(api):
    r = api.app(readiness=lambda: {"database": "OperationalError"}).simulate_get("/readyz")
    body = assert_error(r, 503)
    assert "database" in body["message"] and body["checks"]["database"] == "OperationalError"


def test_readyz_is_503_when_the_database_is_unreachable(api):
    with build_services(settings_for("mysql+pymysql://root@127.0.0.1:1/x"), migrate_schema=False) as down:
        r = api.app(readiness=down.readiness).simulate_get("/readyz")
        body = assert_error(r, 503)
        assert "database" in body["message"] and body["checks"]["database"] != "ok"


def test_requests_against_an_unreachable_database_are_503_json(api):
    with build_services(settings_for("mysql+pymysql://root@127.0.0.1:1/x"), migrate_schema=False) as down:
        client = DocumentedClient(create_app(down.shop, readiness=down.readiness))
        for r in (
            client.simulate_get("/api/products"),
            client.simulate_get("/api/products/1"),
            client.simulate_post("/api/orders/purchase", json={"product_id": 1, "quantity": 1}),
            client.simulate_post("/api/holds", json={"product_id": 1, "quantity": 1}, headers={"Idempotency-Key": "k"}),
            client.simulate_post(
                "/api/payments/webhook", json={"idempotency_key": "k", "order_id": 1, "status": "success"}
            ),
        ):
            assert_error(r, 503)


def test_metrics_count_requests_and_purchases(api):
    pid = api.new_product()
    api.purchase(pid, 1)
    for _ in range(2):  # a keyed purchase and its replay: one sale
        keyed = api.client.simulate_post(
            "/api/orders/purchase", json={"product_id": pid, "quantity": 1}, headers={"Idempotency-Key": "metered"}
        )
        assert keyed.status_code == 201
    api.client.simulate_post("/api/orders/purchase", json={"product_id": pid, "quantity": 100})
    api.hold(pid, 1)
    order_id = api.pending_order(pid, 1)
    api.webhook(order_id)
    r = api.client.simulate_get("/metrics")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/plain")
    text = r.text
    assert "stockade_http_requests_total{" in text
    assert 'route="/api/orders/purchase",status="201"' in text
    assert "stockade_http_request_duration_seconds_bucket" in text
    assert 'stockade_purchases_total{outcome="created"} 2.0' in text
    assert 'stockade_purchases_total{outcome="replayed"} 1.0' in text
    assert 'stockade_purchases_total{outcome="out_of_stock"} 1.0' in text
    assert 'stockade_holds_total{outcome="created"} 2.0' in text
    assert 'stockade_webhooks_total{outcome="applied"} 1.0' in text


def gauges(api: Api) -> dict[str, float]:
    """The backlog gauges of /metrics, by name."""
    r = api.client.simulate_get("/metrics")
    assert r.status_code == 200, r.text
    found = {}
    for line in r.text.splitlines():
        name, _, value = line.partition(" ")
        if name in (
            "stockade_outbox_pending_messages",
            "stockade_outbox_oldest_pending_age_seconds",
            "stockade_holds_active",
            "stockade_orders_pending",
            "stockade_webhooks_deferred",
            "stockade_task_lag_seconds",
        ):
            found[name] = float(value)
    return found


def test_metrics_show_the_backlog_of_background_work_and_its_age(api):
    pid = api.new_product()
    api.hold(pid, 1)
    order_id = api.pending_order(pid, 2)
    api.purchase(pid, 1)
    assert api.webhook(order_id + 100, key="early").status_code == 202  # deferred: no such order yet
    api.clock.advance(30)

    assert gauges(api) == {
        "stockade_outbox_pending_messages": 1.0,  # process_order of the purchase, not run yet
        "stockade_outbox_oldest_pending_age_seconds": 30.0,
        "stockade_holds_active": 1.0,  # the other hold became the order
        "stockade_orders_pending": 1.0,
        "stockade_webhooks_deferred": 1.0,
        "stockade_task_lag_seconds": 30.0,
    }
    assert api.run_tasks() == 1
    after = gauges(api)
    assert after["stockade_outbox_pending_messages"] == 0.0
    assert after["stockade_outbox_oldest_pending_age_seconds"] == 0.0
    assert after["stockade_task_lag_seconds"] == 0.0


@pytest.mark.parametrize(
    "method, path",
    [
        ("PATCH", "/api/products/1"),
        ("DELETE", "/api/products"),
        ("PUT", "/api/products"),
        ("GET", "/api/orders/purchase"),
        ("DELETE", "/api/orders"),
        ("PUT", "/api/holds/1"),
        ("PUT", "/api/holds"),
        ("GET", "/api/payments/webhook"),
        ("POST", "/api/logs"),
        ("POST", "/healthz"),
        ("DELETE", "/api/orders/1"),
        ("POST", "/api/openapi.json"),
    ],
)
def test_a_wrong_method_is_405_json(api, method, path):
    api.new_product()
    assert_error(api.client.simulate_request(method, path), 405)


@pytest.mark.parametrize("path", ["/", "/api", "/api/nope", "/api/products/1/extra", "/api/orders/1/x", "/metricsx"])
def test_an_unknown_path_is_404_json(api, path):
    assert_error(api.client.simulate_get(path), 404)


BODY_ENDPOINTS = [
    ("POST", "/api/products"),
    ("PUT", "/api/products/{pid}"),
    ("POST", "/api/orders/purchase"),
    ("POST", "/api/holds"),
    ("POST", "/api/orders"),
    ("POST", "/api/payments/webhook"),
]


@pytest.mark.parametrize("method, path", BODY_ENDPOINTS)
def test_a_body_over_64_kib_is_413(api, method, path):
    pid = api.new_product()
    before = (api.shop.list_products(), api.shop.logs())
    r = api.client.simulate_request(
        method, path.format(pid=pid), body=BIG_BODY, headers={"Content-Type": "application/json"}
    )
    assert_error(r, 413)
    assert (api.shop.list_products(), api.shop.logs()) == before


def test_openapi_document_is_served(api):
    r = api.client.simulate_get("/api/openapi.json")
    assert r.status_code == 200 and r.json["openapi"].startswith("3.")
    paths = r.json["paths"]
    for path, methods in {
        "/api/products": {"get", "post"},
        "/api/products/{product_id}": {"get", "put", "delete"},
        "/api/orders/purchase": {"post"},
        "/api/orders": {"post"},
        "/api/orders/{order_id}": {"get"},
        "/api/holds": {"post"},
        "/api/holds/{hold_id}": {"get", "delete"},
        "/api/payments/webhook": {"post"},
        "/api/logs": {"get"},
        "/api/openapi.json": {"get"},
        "/healthz": {"get"},
        "/readyz": {"get"},
        "/metrics": {"get"},
    }.items():
        assert methods <= set(paths[path]), path
    assert api.client.checked > 0  # and every response of these tests was checked against it


# ================================================================ internal task API


def test_task_api_queues_order_processing(api):
    pid = api.new_product()
    order_id = api.purchase(pid, 1)["id"]
    tasks = api.tasks()
    r = tasks.simulate_post("/tasks/order-processed", json={"order_id": order_id})
    assert r.status_code == 202 and r.json == {"message": "Task queued", "order_id": order_id}
    api.run_tasks()
    assert api.get_order(order_id)["status"] == "processed"
    assert len(api.events("order_processed")) == 1
    r = tasks.simulate_post("/tasks/order-processed", json={"order_id": order_id})
    assert r.status_code == 202
    api.run_tasks()
    assert len(api.events("order_processed")) == 1


def test_task_api_needs_an_order_id(api):
    r = api.tasks().simulate_post("/tasks/order-processed", json={})
    assert r.status_code == 400 and r.json == {"error": "order_id is required"}


@pytest.mark.parametrize("order_id", ["1", 0, -1, True, 1.5, 1.0, None, [1], 2**63, 10**30])
def test_task_api_refuses_an_order_id_that_is_not_a_positive_integer(api, order_id):
    r = api.tasks().simulate_post("/tasks/order-processed", json={"order_id": order_id})
    assert r.status_code == 400 and set(r.json) == {"error"} and r.json["error"]
    assert api.pending_tasks() == []


@pytest.mark.parametrize("body", [b"", b"{", b"[1]", b"null", b'"x"', b"[" * 60000, b"NaN", b"\xff"])
def test_task_api_refuses_a_malformed_body(api, body):
    r = api.tasks().simulate_post("/tasks/order-processed", body=body, headers={"Content-Type": "application/json"})
    assert r.status_code == 400 and set(r.json) == {"error"}


def test_task_api_refuses_a_huge_body(api):
    r = api.tasks().simulate_post("/tasks/order-processed", body=BIG_BODY, headers={"Content-Type": "application/json"})
    assert r.status_code == 413 and set(r.json) == {"error"}


def test_task_api_has_json_404_and_405(api):
    r = api.tasks().simulate_get("/tasks/order-processed")
    assert r.status_code == 405 and "error" in r.json
    r = api.tasks().simulate_get("/tasks/nope")
    assert r.status_code == 404 and "error" in r.json


def test_the_task_for_a_missing_order_ends_without_retrying(api):
    r = api.tasks().simulate_post("/tasks/order-processed", json={"order_id": 999999})
    assert r.status_code == 202 and r.json == {"message": "Task queued", "order_id": 999999}
    assert [m.payload for m in api.pending_tasks()] == [{"order_id": 999999}]
    assert api.run_tasks() == 1  # runs the handler the worker runs; it must not raise
    assert api.pending_tasks() == []  # completed: not retried forever
    result = api.shop.process_order(999999)
    assert not result.processed and result.status is None
    api.clock.advance(61)
    assert api.shop.relay_outbox() == 0


# ================================================================ cancelling orders and refunds


def _paid_order(api: Api, product_id: int, quantity: int = 1) -> int:
    order_id = api.pending_order(product_id, quantity)
    assert api.webhook(order_id, "success", f"pay-{order_id}").status_code == 200
    return order_id


def test_cancelling_a_purchase_is_200_with_the_order_and_restocks_it(api):
    pid = api.new_product(stock=10)
    order_id = api.purchase(pid, 3)["id"]
    r = api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    assert r.status_code == 200, r.text
    assert_order(r.json["data"])
    assert (r.json["data"]["status"], r.json["data"]["refund_status"]) == ("cancelled", None)
    assert api.levels(pid) == (10, 0, 10)
    assert api.events("order_cancelled")[0]["data"]["reason"] == "admin"
    assert api.run_tasks() == 1  # the purchase's processing task: it must not process a cancelled order
    assert api.get_order(order_id)["status"] == "cancelled"
    assert not api.events("order_processed")


def test_cancelling_a_pending_order_releases_its_units(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 4)
    r = api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    assert (r.status_code, r.json["data"]["status"], r.json["data"]["refund_status"]) == (200, "cancelled", None)
    assert api.levels(pid) == (10, 0, 10)


def test_cancelling_a_paid_order_restocks_it_and_requires_a_refund(api):
    pid = api.new_product(stock=10)
    order_id = _paid_order(api, pid, 2)
    assert api.levels(pid) == (8, 0, 8)
    r = api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    assert (r.status_code, r.json["data"]["status"], r.json["data"]["refund_status"]) == (200, "cancelled", "required")
    assert api.levels(pid) == (10, 0, 10)
    assert [e["data"]["order_id"] for e in api.events("payment_refund_required")] == [order_id]
    assert api.get_order(order_id)["refund_status"] == "required"


def test_cancelling_twice_is_200_without_a_second_effect(api):
    pid = api.new_product(stock=10)
    order_id = api.purchase(pid, 3)["id"]
    first = api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    again = api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    assert (again.status_code, again.json) == (200, first.json)
    assert api.levels(pid) == (10, 0, 10)
    assert len(api.events("order_cancelled")) == 1


def test_cancelling_a_processed_order_is_409(api):
    pid = api.new_product(stock=10)
    order_id = api.purchase(pid, 3)["id"]
    api.run_tasks()
    assert_error(api.client.simulate_post(f"/api/orders/{order_id}/cancel"), 409, "Order already processed")
    assert api.get_order(order_id)["status"] == "processed"
    assert api.levels(pid) == (7, 0, 7)


@pytest.mark.parametrize("action", ["cancel", "refund"])
@pytest.mark.parametrize("raw_id", ["999999", "0", "01", "abc", str(2**63)])
def test_cancelling_or_refunding_an_unknown_order_is_404(api, action, raw_id):
    assert_error(api.client.simulate_post(f"/api/orders/{raw_id}/{action}"), 404)


def test_a_success_for_a_cancelled_order_sets_refund_status_required(api):
    pid = api.new_product(stock=10)
    order_id = api.pending_order(pid, 1)
    api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    r = api.webhook(order_id, "success", "late")
    assert (r.json["status"], r.json["outcome"]) == ("cancelled", "ignored")
    assert api.get_order(order_id)["refund_status"] == "required"


def test_a_refund_is_recorded_once(api):
    pid = api.new_product(stock=10)
    order_id = _paid_order(api, pid)
    api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    first = api.client.simulate_post(f"/api/orders/{order_id}/refund")
    assert (first.status_code, first.json["data"]["refund_status"]) == (200, "refunded")
    assert_order(first.json["data"])
    again = api.client.simulate_post(f"/api/orders/{order_id}/refund")
    assert (again.status_code, again.json) == (200, first.json)
    assert [e["data"]["order_id"] for e in api.events("order_refunded")] == [order_id]


@pytest.mark.parametrize("kind", ["created", "pending", "paid", "cancelled"])
def test_refunding_an_order_that_owes_nothing_is_409(api, kind):
    pid = api.new_product(stock=10)
    order_id = {
        "created": lambda: api.purchase(pid, 1)["id"],
        "pending": lambda: api.pending_order(pid, 1),
        "paid": lambda: _paid_order(api, pid),
        "cancelled": lambda: api.pending_order(pid, 1),
    }[kind]()
    if kind == "cancelled":
        api.client.simulate_post(f"/api/orders/{order_id}/cancel")
    before = api.get_order(order_id)
    assert_error(api.client.simulate_post(f"/api/orders/{order_id}/refund"), 409, "No refund is required")
    assert api.get_order(order_id) == before


def test_cancelling_refunding_and_adjusting_need_the_admin_token(api):
    pid = api.new_product(stock=10)
    paid = _paid_order(api, pid)
    created = api.purchase(pid, 1)["id"]
    admin = api.app(admin_token=ADMIN_TOKEN)
    auth = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
    adjust = {"delta": 1, "reason": "r"}
    for headers in ({}, {"Authorization": "Bearer wrong"}):
        assert_error(admin.simulate_post(f"/api/orders/{created}/cancel", headers=headers), 401)
        assert_error(admin.simulate_post(f"/api/orders/{paid}/refund", headers=headers), 401)
        assert_error(admin.simulate_post(f"/api/products/{pid}/adjustments", json=adjust, headers=headers), 401)
        assert_error(admin.simulate_get(f"/api/products/{pid}/adjustments", headers=headers), 401)
    assert api.get_order(created)["status"] == "created" and api.levels(pid) == (8, 0, 8)
    assert admin.simulate_post(f"/api/orders/{created}/cancel", headers=auth).status_code == 200
    assert admin.simulate_post(f"/api/orders/{paid}/cancel", headers=auth).status_code == 200
    assert admin.simulate_post(f"/api/orders/{paid}/refund", headers=auth).status_code == 200
    assert admin.simulate_post(f"/api/products/{pid}/adjustments", json=adjust, headers=auth).status_code == 201
    assert admin.simulate_get(f"/api/products/{pid}/adjustments", headers=auth).status_code == 200


# ================================================================ stock adjustments

ADJUSTMENT_KEYS = {"id", "product_id", "delta", "reason", "stock_after", "created_at"}


def test_an_adjustment_is_201_with_its_shape_and_changes_stock(api):
    pid = api.new_product(stock=10)
    r = api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": 5, "reason": "delivery"})
    assert r.status_code == 201, r.text
    data = r.json["data"]
    assert set(data) == ADJUSTMENT_KEYS
    assert (data["product_id"], data["delta"], data["reason"], data["stock_after"]) == (pid, 5, "delivery", 15)
    assert type(data["id"]) is int and TIMESTAMP.fullmatch(data["created_at"])
    assert api.levels(pid) == (15, 0, 15)  # the read after the write sees it, cache or not
    assert api.adjustments(pid) == [data]


def test_an_adjustment_below_available_is_409_and_changes_nothing(api):
    pid = api.new_product(stock=10)
    api.hold(pid, 4)
    r = api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": -7, "reason": "damaged"})
    assert_error(r, 409, "Adjustment would take available stock below 0")
    assert api.levels(pid) == (10, 4, 6)
    assert api.adjustments(pid) == []
    ok = api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": -6, "reason": "damaged"})
    assert ok.status_code == 201 and api.levels(pid) == (4, 4, 0)


def test_an_adjustment_above_the_largest_stock_is_409(api):
    pid = api.new_product(stock=10)
    r = api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": 2**31 - 10, "reason": "x"})
    assert_error(r, 409, "Adjustment would take stock above 2147483647")
    ok = api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": 2**31 - 11, "reason": "x"})
    assert ok.status_code == 201 and ok.json["data"]["stock_after"] == 2**31 - 1


def test_an_adjustment_blocked_only_by_expired_unswept_holds_applies(api):
    pid = api.new_product(stock=10)
    api.hold(pid, 4)
    api.clock.advance(121)
    r = api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": -10, "reason": "recall"})
    assert r.status_code == 201, r.text
    assert api.levels(pid) == (0, 0, 0)


@pytest.mark.parametrize("method", ["get", "post"])
def test_adjustments_of_an_unknown_or_deleted_product_are_404(api, method):
    deleted = api.new_product()
    api.client.simulate_delete(f"/api/products/{deleted}")
    for pid in (deleted, 999999):
        path = f"/api/products/{pid}/adjustments"
        r = api.client.simulate_post(path, json={"delta": 1, "reason": "r"}) if method == "post" else None
        assert_error(r or api.client.simulate_get(path), 404)


@pytest.mark.parametrize(
    ("body", "field"),
    [
        ({"delta": 0, "reason": "r"}, "delta"),
        ({"delta": "1", "reason": "r"}, "delta"),
        ({"delta": 1.5, "reason": "r"}, "delta"),
        ({"delta": True, "reason": "r"}, "delta"),
        ({"delta": 2**31, "reason": "r"}, "delta"),
        ({"delta": -(2**31), "reason": "r"}, "delta"),
        ({"reason": "r"}, "delta"),
        ({"delta": 1}, "reason"),
        ({"delta": 1, "reason": ""}, "reason"),
        ({"delta": 1, "reason": " \u200b "}, "reason"),
        ({"delta": 1, "reason": "bell\u0007"}, "reason"),
        ({"delta": 1, "reason": "x" * 256}, "reason"),
        ({"delta": 1, "reason": 5}, "reason"),
    ],
)
def test_adjustment_field_rules_are_422(api, body, field):
    pid = api.new_product(stock=10)
    assert_error(api.client.simulate_post(f"/api/products/{pid}/adjustments", json=body), 422, field=field)
    assert api.levels(pid) == (10, 0, 10)


def test_the_largest_deltas_and_reasons_are_accepted(api):
    pid = api.new_product(stock=0)
    path = f"/api/products/{pid}/adjustments"
    assert api.client.simulate_post(path, json={"delta": 2**31 - 1, "reason": "r" * 255}).status_code == 201
    assert api.client.simulate_post(path, json={"delta": -(2**31 - 1), "reason": "é"}).status_code == 201
    assert api.levels(pid) == (0, 0, 0)


def test_a_put_that_changes_stock_is_in_the_trail_as_a_set(api):
    pid = api.new_product(stock=10)
    api.purchase(pid, 3)
    assert api.client.simulate_put(f"/api/products/{pid}", json={"stock": 20}).status_code == 200
    assert api.client.simulate_put(f"/api/products/{pid}", json={"stock": 20, "name": "Same"}).status_code == 200
    [entry] = api.adjustments(pid)
    assert (entry["delta"], entry["reason"], entry["stock_after"]) == (13, "set", 20)


def test_the_trail_is_newest_first_a_page_at_a_time(api):
    pid = api.new_product(stock=10)
    for delta in (1, 2, 3):
        api.client.simulate_post(f"/api/products/{pid}/adjustments", json={"delta": delta, "reason": "r"})
    r = api.client.simulate_get(f"/api/products/{pid}/adjustments", params={"limit": 2})
    assert [a["delta"] for a in r.json["data"]] == [3, 2]
    after = r.json["meta"]["next_before_id"]
    assert after == r.json["data"][-1]["id"]
    r = api.client.simulate_get(f"/api/products/{pid}/adjustments", params={"limit": 2, "before_id": after})
    assert [a["delta"] for a in r.json["data"]] == [1]
    assert r.json["meta"]["next_before_id"] is None
    full = api.client.simulate_get(f"/api/products/{pid}/adjustments", params={"limit": 3})
    assert full.json["meta"]["next_before_id"] is None
    assert len(api.adjustments(pid)) == 3  # default limit 50


@pytest.mark.parametrize(
    ("query", "field"),
    [("limit=0", "limit"), ("limit=201", "limit"), ("limit=", "limit"), ("limit=1&limit=2", "limit"),
     ("before_id=0", "before_id"), ("before_id=x", "before_id")],
)  # fmt: skip
def test_bad_adjustment_queries_are_422(api, query, field):
    pid = api.new_product()
    assert_error(api.client.simulate_get(f"/api/products/{pid}/adjustments", query_string=query), 422, field=field)


def test_an_adjustment_refusal_is_replayed_for_its_key(api):
    pid = api.new_product(stock=1)
    path, body, headers = f"/api/products/{pid}/adjustments", {"delta": -2, "reason": "r"}, {"Idempotency-Key": "a"}
    first = api.client.simulate_post(path, json=body, headers=headers)
    assert first.status_code == 409
    api.client.simulate_put(f"/api/products/{pid}", json={"stock": 10})
    again = api.client.simulate_post(path, json=body, headers=headers)
    assert (again.status_code, again.json, again.headers.get("idempotent-replayed")) == (409, first.json, "true")
    assert api.levels(pid) == (10, 0, 10)


# ================================================================ extending holds


def test_extending_a_hold_is_200_with_the_hold_and_its_new_expiry(api):
    pid = api.new_product(stock=10)
    hold = api.hold(pid, 2)
    before = api.client.simulate_get(f"/api/holds/{hold}").json
    api.clock.advance(100)
    r = api.client.simulate_patch(f"/api/holds/{hold}", json={"extend_seconds": 60})
    assert r.status_code == 200, r.text
    assert set(r.json) == HOLD_KEYS
    assert r.json == {**before, "expires_at": "2026-01-07T08:03:00.000000Z"}
    assert api.client.simulate_get(f"/api/holds/{hold}").json == r.json
    api.clock.advance(60)  # past the first expiry: still active
    api.shop.sweep()
    assert api.client.simulate_get(f"/api/holds/{hold}").json["status"] == "active"
    assert api.levels(pid) == (10, 2, 8)


def test_a_hold_cannot_be_extended_past_its_longest_life(api):
    pid = api.new_product(stock=10)
    hold = api.hold(pid, 2)
    expiries = [
        api.client.simulate_patch(f"/api/holds/{hold}", json={"extend_seconds": 120}).json["expires_at"]
        for _ in range(7)
    ]
    assert expiries[-2:] == ["2026-01-07T08:14:00.000000Z", "2026-01-07T08:15:00.000000Z"]  # 900 s after creation
    r = api.client.simulate_patch(f"/api/holds/{hold}", json={"extend_seconds": 1})
    assert_error(r, 409, "Hold cannot be extended further")
    assert api.client.simulate_get(f"/api/holds/{hold}").json["expires_at"] == expiries[-1]


@pytest.mark.parametrize("end", ["used", "released", "expired", "swept"])
def test_a_hold_that_ended_cannot_be_extended_and_stays_as_it_is(api, end):
    pid = api.new_product(stock=10)
    hold = api.hold(pid, 2)
    if end == "used":
        api.order(hold)
    elif end == "released":
        api.client.simulate_delete(f"/api/holds/{hold}")
    else:
        api.clock.advance(120)
        if end == "swept":
            api.shop.sweep()
    before = api.client.simulate_get(f"/api/holds/{hold}").json
    assert_error(api.client.simulate_patch(f"/api/holds/{hold}", json={"extend_seconds": 60}), 409)
    assert api.client.simulate_get(f"/api/holds/{hold}").json == before
    api.shop.sweep()
    assert api.client.simulate_get(f"/api/holds/{hold}").json["status"] == before["status"]
    assert api.levels(pid)[1] == (2 if end == "used" else 0)


@pytest.mark.parametrize(
    "body",
    [{}, {"extend_seconds": 0}, {"extend_seconds": 121}, {"extend_seconds": "60"}, {"extend_seconds": 1.0},
     {"extend_seconds": None}, {"extend_seconds": True}],
)  # fmt: skip
def test_extension_field_rules_are_422(api, body):
    hold = api.hold(api.new_product(stock=10), 1)
    assert_error(api.client.simulate_patch(f"/api/holds/{hold}", json=body), 422, field="extend_seconds")


@pytest.mark.parametrize("raw_id", ["999999", "0", "01", "abc"])
def test_extending_an_unknown_hold_is_404(api, raw_id):
    assert_error(api.client.simulate_patch(f"/api/holds/{raw_id}", json={"extend_seconds": 1}), 404)


# ================================================================ customers and limits (section 8)


def limited_product(api: Api, limit: int | None, stock: int = 100) -> int:
    r = api.client.simulate_post(
        "/api/products", json={"name": "Sneaker", "price": "10.00", "stock": stock, "max_per_customer": limit}
    )
    assert r.status_code == 201, r.text
    assert r.json["data"]["max_per_customer"] == limit
    return r.json["data"]["id"]


def buy(api: Api, path: str, product_id: int, quantity: int, customer: str | None, **kwargs: Any) -> Result:
    """A purchase (`/api/orders/purchase`) or a hold (`/api/holds`), for `customer` when given."""
    body: dict[str, Any] = {"product_id": product_id, "quantity": quantity}
    if customer is not None:
        body["customer_id"] = customer
    return api.client.simulate_post(path, json=body, **kwargs)


PURCHASE, HOLD = "/api/orders/purchase", "/api/holds"
LIMIT_REACHED = "Limit per customer reached"


def test_a_limit_per_customer_is_set_on_create_changed_by_put_and_removed_by_null(api):
    pid = limited_product(api, 5)
    assert api.product(pid)["max_per_customer"] == 5
    r = api.client.simulate_put(f"/api/products/{pid}", json={"max_per_customer": 2})
    assert r.status_code == 200 and r.json["data"]["max_per_customer"] == 2
    r = api.client.simulate_put(f"/api/products/{pid}", json={"name": "Renamed"})
    assert r.json["data"]["max_per_customer"] == 2  # a PUT without it leaves it alone
    r = api.client.simulate_put(f"/api/products/{pid}", json={"max_per_customer": None})
    assert r.status_code == 200 and r.json["data"]["max_per_customer"] is None
    assert api.product(pid)["max_per_customer"] is None
    assert api.product(api.new_product())["max_per_customer"] is None  # no limit by default


@pytest.mark.parametrize("value", [0, -1, 2**31, "5", 5.0, True, [5]])
def test_a_bad_max_per_customer_is_a_validation_failure(api, value):
    pid = api.new_product()
    body = {"name": "N", "price": 1, "stock": 1, "max_per_customer": value}
    assert_error(api.client.simulate_post("/api/products", json=body), 422, field="max_per_customer")
    r = api.client.simulate_put(f"/api/products/{pid}", json={"max_per_customer": value})
    assert_error(r, 422, field="max_per_customer")
    assert api.product(pid)["max_per_customer"] is None


def test_the_customer_is_stored_on_purchases_and_holds_and_an_order_from_a_hold_takes_the_holds(api):
    pid = api.new_product(stock=10)
    order = buy(api, PURCHASE, pid, 1, "ann@example.com").json["data"]
    assert order["customer_id"] == "ann@example.com" and order["refund_status"] is None
    assert api.get_order(order["id"])["customer_id"] == "ann@example.com"
    r = buy(api, HOLD, pid, 2, "bob:42")
    assert r.status_code == 201 and r.json["customer_id"] == "bob:42"
    assert TIMESTAMP.fullmatch(r.json["created_at"]) and r.json["created_at"] < r.json["expires_at"]
    hold = api.client.simulate_get(f"/api/holds/{r.json['hold_id']}").json
    assert (hold["customer_id"], hold["created_at"]) == ("bob:42", r.json["created_at"])
    order_id = api.order(r.json["hold_id"])
    assert api.get_order(order_id)["customer_id"] == "bob:42"
    anonymous = api.purchase(pid, 1)
    assert anonymous["customer_id"] is None
    assert api.client.simulate_get(f"/api/holds/{api.hold(pid)}").json["customer_id"] is None


@pytest.mark.parametrize("path", [PURCHASE, HOLD])
@pytest.mark.parametrize("customer", ["", "x" * 65, "ann smith", "ann/1", "ænn", "a\n", 42, None, ["a"]])
def test_a_bad_customer_id_is_a_validation_failure(api, path, customer):
    pid = api.new_product(stock=10)
    r = api.client.simulate_post(path, json={"product_id": pid, "quantity": 1, "customer_id": customer})
    assert_error(r, 422, field="customer_id")
    assert api.levels(pid) == (10, 0, 10)


@pytest.mark.parametrize("path", [PURCHASE, HOLD])
def test_customer_ids_of_64_characters_of_every_allowed_kind_are_accepted_and_kept_exactly(api, path):
    pid = limited_product(api, 1)
    longest = "Az09._:@-" * 7 + "x"
    assert len(longest) == 64
    assert buy(api, path, pid, 1, longest).status_code == 201
    # Ids compare exactly: another case is another customer.
    assert buy(api, path, pid, 1, "ANN").status_code == 201
    assert buy(api, path, pid, 1, "ann").status_code == 201
    assert_error(buy(api, path, pid, 1, "ann"), 409, LIMIT_REACHED)


@pytest.mark.parametrize("path", [PURCHASE, HOLD])
def test_a_limited_product_without_a_customer_id_is_a_validation_failure(api, path):
    pid = limited_product(api, 3, stock=10)
    body = assert_error(buy(api, path, pid, 1, None), 422, field="customer_id")
    assert "limit per customer" in body["errors"]["customer_id"][0]
    assert api.levels(pid) == (10, 0, 10)
    assert api.events("purchase_created") == [] and api.events("hold_created") == []


def test_a_customer_cannot_claim_past_the_limit_and_the_refusal_changes_nothing(api):
    pid = limited_product(api, 5, stock=100)
    assert buy(api, PURCHASE, pid, 3, "ann").status_code == 201
    assert buy(api, HOLD, pid, 2, "ann").status_code == 201
    levels, orders = api.levels(pid), len(api.events("purchase_created"))
    for path in (PURCHASE, HOLD):
        assert_error(buy(api, path, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.levels(pid) == levels and len(api.events("purchase_created")) == orders
    assert buy(api, PURCHASE, pid, 5, "bob").status_code == 201  # another customer's claim is their own
    assert_error(buy(api, HOLD, pid, 6, "cat"), 409, LIMIT_REACHED)  # one request alone can pass it too


def test_out_of_stock_is_told_apart_from_the_limit(api):
    pid = limited_product(api, 5, stock=2)
    assert_error(buy(api, PURCHASE, pid, 3, "ann"), 409, "Out of stock")
    assert buy(api, PURCHASE, pid, 2, "ann").status_code == 201
    assert_error(buy(api, PURCHASE, pid, 1, "bob"), 409, "Out of stock")


def test_released_and_expired_holds_give_their_units_back_to_the_claim(api):
    pid = limited_product(api, 2)
    released = buy(api, HOLD, pid, 2, "ann").json["hold_id"]
    assert_error(buy(api, HOLD, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.client.simulate_delete(f"/api/holds/{released}").status_code == 204
    buy(api, HOLD, pid, 2, "ann")  # asserted below: the sweep finds it
    api.clock.advance(api.shop.deps.policy.hold_ttl.total_seconds() + 1)
    assert api.shop.release_expired() == (1, 0)
    assert buy(api, HOLD, pid, 2, "ann").status_code == 201
    api.clock.advance(api.shop.deps.policy.hold_ttl.total_seconds() + 1)
    # Expired but not swept: the buyer's own reclaim gives the units back before a refusal.
    assert buy(api, PURCHASE, pid, 2, "ann").status_code == 201
    assert api.levels(pid) == (98, 0, 98)
    assert api.shop.check().ok


def test_cancelled_orders_give_their_units_back_to_the_claim(api):
    pid = limited_product(api, 2)
    failed = api.order(buy(api, HOLD, pid, 2, "ann").json["hold_id"])
    assert_error(buy(api, PURCHASE, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.webhook(failed, "failure", key="fail-1").json["status"] == "cancelled"
    timed_out = api.order(buy(api, HOLD, pid, 2, "ann").json["hold_id"])
    api.clock.advance(api.shop.deps.policy.payment_ttl.total_seconds() + 1)
    assert api.shop.release_expired() == (0, 1)
    assert api.get_order(timed_out)["status"] == "cancelled"
    assert buy(api, PURCHASE, pid, 2, "ann").status_code == 201
    assert api.shop.check().ok


def test_an_admin_cancel_gives_the_units_back_to_the_claim_whatever_the_orders_status(api):
    pid = limited_product(api, 2)
    created = buy(api, PURCHASE, pid, 2, "ann").json["data"]["id"]
    assert_error(buy(api, HOLD, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.client.simulate_post(f"/api/orders/{created}/cancel").status_code == 200
    pending = api.order(buy(api, HOLD, pid, 2, "ann").json["hold_id"])
    assert api.client.simulate_post(f"/api/orders/{pending}/cancel").status_code == 200
    paid = api.order(buy(api, HOLD, pid, 2, "ann").json["hold_id"])
    assert api.webhook(paid, "success", key="pay-ann").json["status"] == "paid"
    assert api.client.simulate_post(f"/api/orders/{paid}/cancel").status_code == 200
    assert buy(api, PURCHASE, pid, 2, "ann").status_code == 201  # all three gave their 2 back
    assert_error(buy(api, PURCHASE, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.shop.check().ok


def test_an_order_from_a_hold_does_not_count_its_units_twice(api):
    pid = limited_product(api, 3)
    hold_id = buy(api, HOLD, pid, 2, "ann").json["hold_id"]
    order_id = api.order(hold_id)  # the hold's claim of 2 becomes the order's
    assert buy(api, PURCHASE, pid, 1, "ann").status_code == 201
    assert_error(buy(api, PURCHASE, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.webhook(order_id, "success").json["status"] == "paid"
    assert_error(buy(api, HOLD, pid, 1, "ann"), 409, LIMIT_REACHED)  # paid orders still count
    assert api.shop.check().ok


@pytest.mark.parametrize("path", [PURCHASE, HOLD])
def test_an_idempotency_key_replay_counts_nothing(api, path):
    pid = limited_product(api, 2)
    first = buy(api, path, pid, 1, "ann", headers={"Idempotency-Key": "once"})
    assert first.status_code == 201
    for _ in range(3):
        replay = buy(api, path, pid, 1, "ann", headers={"Idempotency-Key": "once"})
        assert replay.status_code == 201 and replay.headers.get("idempotent-replayed") == "true"
        assert replay.json == first.json
    assert buy(api, path, pid, 1, "ann").status_code == 201  # the replays took none of the limit
    assert_error(buy(api, path, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert api.shop.check().ok


def test_a_limit_refusal_is_replayed_for_its_idempotency_key(api):
    pid = limited_product(api, 1)
    assert buy(api, PURCHASE, pid, 1, "ann").status_code == 201
    for replayed in (None, "true"):
        r = buy(api, PURCHASE, pid, 1, "ann", headers={"Idempotency-Key": "late"})
        assert_error(r, 409, LIMIT_REACHED)
        assert r.headers.get("idempotent-replayed") == replayed


def test_lowering_the_limit_blocks_only_new_claims(api):
    pid = limited_product(api, 5)
    order = buy(api, PURCHASE, pid, 4, "ann").json["data"]
    hold_id = buy(api, HOLD, pid, 1, "ann").json["hold_id"]
    assert api.client.simulate_put(f"/api/products/{pid}", json={"max_per_customer": 2}).status_code == 200
    assert api.get_order(order["id"])["status"] == "created"  # what ann claims stays hers
    assert api.order(hold_id)  # her hold still becomes an order
    assert_error(buy(api, PURCHASE, pid, 1, "ann"), 409, LIMIT_REACHED)
    assert buy(api, PURCHASE, pid, 2, "bob").status_code == 201
    assert_error(buy(api, HOLD, pid, 1, "bob"), 409, LIMIT_REACHED)
    assert api.client.simulate_put(f"/api/products/{pid}", json={"max_per_customer": None}).status_code == 200
    assert buy(api, PURCHASE, pid, 1, "ann").status_code == 201
    assert api.shop.check().ok


def test_a_limit_set_after_sales_counts_what_customers_already_claim(api):
    pid = limited_product(api, None)
    assert buy(api, PURCHASE, pid, 2, "ann").status_code == 201
    assert api.client.simulate_put(f"/api/products/{pid}", json={"max_per_customer": 3}).status_code == 200
    assert_error(buy(api, PURCHASE, pid, 2, "ann"), 409, LIMIT_REACHED)
    assert buy(api, PURCHASE, pid, 1, "ann").status_code == 201
    assert_error(buy(api, PURCHASE, pid, 1, None), 422, field="customer_id")


def test_limit_refusals_are_counted_under_their_own_outcome(api):
    pid = limited_product(api, 1)
    buy(api, PURCHASE, pid, 1, "ann")
    buy(api, PURCHASE, pid, 1, "ann")
    buy(api, HOLD, pid, 1, "bob")
    buy(api, HOLD, pid, 1, "bob")
    text = api.client.simulate_get("/metrics").text
    assert 'stockade_purchases_total{outcome="limit_reached"} 1.0' in text
    assert 'stockade_holds_total{outcome="limit_reached"} 1.0' in text


# ================================================================ listing orders and holds (section 9)


def listing(api: Api, path: str, client: DocumentedClient | None = None, **params: Any) -> Result:
    r = (client or api.client).simulate_get(path, params=params)
    assert r.status_code == 200, r.text
    assert set(r.json) == {"data", "meta"} and set(r.json["meta"]) == {"next_after_id"}
    return r


def ids(r: Result, key: str = "id") -> list[int]:
    return [row[key] for row in r.json["data"]]


def test_orders_are_listed_by_id_with_each_filter_a_page_at_a_time(api):
    phone, lamp = api.new_product(stock=50), api.new_product(stock=50, name="Lamp")
    created = [buy(api, PURCHASE, phone, 1, "ann").json["data"]["id"] for _ in range(3)]
    lamp_order = buy(api, PURCHASE, lamp, 1, "bob").json["data"]["id"]
    pending = api.order(buy(api, HOLD, lamp, 2, "ann").json["hold_id"])
    anonymous = api.purchase(phone, 1)["id"]
    everything = [*created, lamp_order, pending, anonymous]

    r = listing(api, "/api/orders")
    assert ids(r) == everything and r.json["meta"]["next_after_id"] is None
    for order in r.json["data"]:
        assert_order(order)
    assert r.json["data"][4]["customer_id"] == "ann" and r.json["data"][4]["product"]["name"] == "Lamp"
    assert ids(listing(api, "/api/orders", status="pending")) == [pending]
    assert ids(listing(api, "/api/orders", status="created", product_id=lamp)) == [lamp_order]
    assert ids(listing(api, "/api/orders", product_id=phone)) == [*created, anonymous]
    assert ids(listing(api, "/api/orders", customer_id="ann")) == [*created, pending]
    assert ids(listing(api, "/api/orders", customer_id="ANN")) == []
    assert ids(listing(api, "/api/orders", status="paid")) == []
    assert ids(listing(api, "/api/orders", refund_status="required")) == []

    first = listing(api, "/api/orders", customer_id="ann", limit=2)
    assert ids(first) == created[:2] and first.json["meta"]["next_after_id"] == created[1]
    rest = listing(api, "/api/orders", customer_id="ann", limit=2, after_id=created[1])
    assert ids(rest) == [created[2], pending] and rest.json["meta"]["next_after_id"] is None


def test_orders_are_listed_by_refund_status(api):
    pid = api.new_product(stock=50)
    owing, refunded = _paid_order(api, pid), _paid_order(api, pid)
    api.purchase(pid, 1)  # owes nothing
    for order_id in (owing, refunded):
        assert api.client.simulate_post(f"/api/orders/{order_id}/cancel").status_code == 200
    assert api.client.simulate_post(f"/api/orders/{refunded}/refund").status_code == 200
    assert ids(listing(api, "/api/orders", refund_status="required")) == [owing]
    assert ids(listing(api, "/api/orders", refund_status="refunded")) == [refunded]
    assert [o["refund_status"] for o in listing(api, "/api/orders", status="cancelled").json["data"]] == [
        "required",
        "refunded",
    ]


def test_holds_are_listed_by_id_with_each_filter_and_the_status_a_client_sees_now(api):
    phone, lamp = api.new_product(stock=50), api.new_product(stock=50, name="Lamp")
    early = buy(api, HOLD, phone, 1, "ann").json["hold_id"]
    used = buy(api, HOLD, lamp, 1, "ann").json["hold_id"]
    api.order(used)
    released = api.hold(phone, 1)
    api.client.simulate_delete(f"/api/holds/{released}")
    api.clock.advance(60)
    late = buy(api, HOLD, lamp, 2, "bob").json["hold_id"]
    api.clock.advance(61)  # `early` is past its TTL, not swept: expired for every client

    r = listing(api, "/api/holds")
    assert ids(r, "hold_id") == [early, used, released, late]
    assert all(set(h) == HOLD_KEYS for h in r.json["data"])
    assert [h["status"] for h in r.json["data"]] == ["expired", "used", "released", "active"]
    assert ids(listing(api, "/api/holds", status="active"), "hold_id") == [late]
    assert ids(listing(api, "/api/holds", status="expired"), "hold_id") == [early]
    assert ids(listing(api, "/api/holds", status="used"), "hold_id") == [used]
    assert ids(listing(api, "/api/holds", status="released"), "hold_id") == [released]
    assert ids(listing(api, "/api/holds", product_id=lamp), "hold_id") == [used, late]
    assert ids(listing(api, "/api/holds", customer_id="ann"), "hold_id") == [early, used]
    page = listing(api, "/api/holds", limit=3)
    assert ids(page, "hold_id") == [early, used, released] and page.json["meta"]["next_after_id"] == released
    assert ids(listing(api, "/api/holds", after_id=released), "hold_id") == [late]


@pytest.mark.parametrize(
    ("path", "params", "field"),
    [
        ("/api/orders", {"status": "shipped"}, "status"),
        ("/api/orders", {"status": "CREATED"}, "status"),
        ("/api/orders", {"product_id": "0"}, "product_id"),
        ("/api/orders", {"product_id": "x"}, "product_id"),
        ("/api/orders", {"customer_id": "a b"}, "customer_id"),
        ("/api/orders", {"customer_id": "x" * 65}, "customer_id"),
        ("/api/orders", {"refund_status": "none"}, "refund_status"),
        ("/api/orders", {"limit": "0"}, "limit"),
        ("/api/orders", {"limit": "201"}, "limit"),
        ("/api/orders", {"after_id": "-1"}, "after_id"),
        ("/api/orders", {"status": ""}, "status"),
        ("/api/holds", {"status": "pending"}, "status"),
        ("/api/holds", {"refund_status": "required", "product_id": "01x"}, "product_id"),
        ("/api/holds", {"customer_id": ""}, "customer_id"),
        ("/api/holds", {"limit": "1.5"}, "limit"),
        ("/api/holds", {"after_id": str(MAX_ID + 1)}, "after_id"),
    ],
)
def test_a_bad_listing_filter_is_a_validation_failure(api, path, params, field):
    assert_error(api.client.simulate_get(path, params=params), 422, field=field)


@pytest.mark.parametrize("path", ["/api/orders", "/api/holds"])
def test_a_listing_filter_given_twice_is_a_validation_failure(api, path):
    assert_error(api.client.simulate_get(path, query_string="status=active&status=used"), 422, field="status")


@pytest.mark.parametrize("path", ["/api/orders", "/api/holds"])
def test_listing_orders_and_holds_needs_the_admin_token_when_one_is_set(api, path):
    admin = api.app(admin_token=ADMIN_TOKEN)
    assert_error(admin.simulate_get(path), 401)
    assert_error(admin.simulate_get(path, headers={"Authorization": "Bearer wrong"}), 401)
    listing(api, path)  # the app without a token: open
    r = admin.simulate_get(path, headers={"Authorization": f"Bearer {ADMIN_TOKEN}"})
    assert r.status_code == 200 and r.json == {"data": [], "meta": {"next_after_id": None}}
