"""The request schemas of the served document and the server agree on what is valid.

Hypothesis draws bodies near each field's rules (and far from them); a standard JSON Schema
validator (jsonschema-rs, draft 2020-12) judges each body against the document, and the
server judges it by answering. The licensed disagreements are the two the document states,
where JSON Schema cannot see what the contract asks: a JSON *number* price's decimal places
and minus sign, and a float with no fraction (1.0) given for an integer, which JSON Schema
counts as an integer and the contract does not.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from decimal import Decimal

import falcon.testing
import jsonschema_rs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from stockade.adapters.clock import FixedClock
from stockade.entrypoints.bootstrap import build_services
from stockade.entrypoints.http import create_app
from stockade.entrypoints.settings import Settings

MAX_QUANTITY = 5


@pytest.fixture(scope="module")
def client(tmp_path_factory) -> Iterator[falcon.testing.TestClient]:
    folder = tmp_path_factory.mktemp("agreement")
    settings_ = Settings(database_url=f"sqlite:///{folder}/t.db", order_processing_seconds=0, max_quantity=MAX_QUANTITY)
    with build_services(settings_, clock=FixedClock()) as services:
        services.publisher.close()  # type: ignore[attr-defined]
        assert services.shop.create_product("Stock for every hold drawn", "1.00", 2**31 - 1).id == 1
        yield falcon.testing.TestClient(create_app(services.shop))


def _validator(client: falcon.testing.TestClient, name: str) -> jsonschema_rs.Draft202012Validator:
    document = client.simulate_get("/api/openapi.json").json
    return jsonschema_rs.Draft202012Validator(
        {"$ref": f"#/components/schemas/{name}", "components": document["components"]}
    )


_names = st.one_of(
    st.text(max_size=260),
    st.text(
        st.sampled_from(" \t\u00a0\u200b\u200e\u2060\ufeff\u202a\u202e\u2066\u2069\x00\x1f\x7f\x85a🛒"), max_size=6
    ),
    st.sampled_from(["", " ", "\u200b", "a\u0000b", "\u202eevil\u202c", "x" * 255, "x" * 256, "🛒" * 255]),
)
_price_text = st.one_of(
    st.from_regex(r"\A-?[0-9]{1,15}(\.[0-9]{0,4})?\Z"),
    st.sampled_from(
        [
            "-0",
            "0",
            "19.99",
            "0.07",
            "1.500",
            "1.005",
            "1e3",
            " 1",
            "9999999999999.99",
            "10000000000000",
            "00000000000001.00",
            ".5",
            "1.",
        ]
    ),
    st.text(max_size=6),
)
_price_number = st.one_of(
    st.integers(min_value=-5, max_value=10**14),
    st.floats(min_value=-1, max_value=10**13 + 1),
    st.sampled_from([19.99, 0.07, 0.001, -0.0, 1e2, 9999999999999.99]),
)
_integers = st.one_of(
    st.integers(min_value=-3, max_value=2**63 + 3),
    st.booleans(),
    st.floats(allow_nan=False, allow_infinity=False),
    st.text(max_size=3),
    st.none(),
)


def _body(fields: dict) -> st.SearchStrategy[dict]:
    return st.fixed_dictionaries({}, optional=fields)


def _unseen_by_json_schema(body: dict) -> bool:
    """True when the body holds something whose fault JSON Schema cannot see (see above)."""
    for field, value in body.items():
        if isinstance(value, float) and value.is_integer():
            return True
        if field == "price" and not isinstance(value, (bool, str)) and isinstance(value, (int, float)):
            amount = Decimal(repr(value))
            if amount != amount.quantize(Decimal("0.01")) or amount.is_signed():
                return True
    return False


def _agree(client, schema: str, method: str, path: str, body: dict) -> None:
    raw = json.dumps(body).encode()
    expected = _validator(client, schema).is_valid(json.loads(raw))
    r = client.simulate_request(method, path, body=raw, headers={"Content-Type": "application/json"})
    accepted = not (r.status_code == 422 and "errors" in r.json)  # a reused webhook key is 422 without
    if expected != accepted and _unseen_by_json_schema(body):
        return
    assert accepted == expected, (body, r.status_code, r.text[:300])


AGREE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])


@AGREE
@given(body=_body({"name": _names, "price": st.one_of(_price_text, _price_number), "stock": _integers}))
def test_product_create_schema_and_server_agree(client, body):
    _agree(client, "ProductCreate", "POST", "/api/products", body)


@AGREE
@given(body=_body({"product_id": _integers, "quantity": st.one_of(st.integers(-1, MAX_QUANTITY + 2), _integers)}))
def test_buy_request_schema_and_server_agree(client, body):
    # an id that passes validation but names no product is 422 too: leave only shape failures
    if body.get("product_id") is not None and type(body.get("product_id")) is int and 1 <= body["product_id"] < 2**63:
        body = {**body, "product_id": 1}
    _agree(client, "BuyRequest", "POST", "/api/holds", body)


@AGREE
@given(
    body=_body(
        {
            "idempotency_key": st.one_of(_names, st.text(max_size=3)),
            "order_id": _integers,
            "status": st.sampled_from(["success", "failure", "failed", "paid", "", "Success"]),
        }
    )
)
def test_payment_notification_schema_and_server_agree(client, body):
    _agree(client, "PaymentNotificationBody", "POST", "/api/payments/webhook", body)
