"""No input, however malformed, yields a 5xx: every endpoint answers 4xx JSON and writes nothing."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import attrs
import falcon.testing
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
pytest.register_assert_rewrite("api_contract")

from api_contract import DocumentedClient  # noqa: E402

from stockade.adapters.clock import FixedClock  # noqa: E402
from stockade.application.facade import Shop  # noqa: E402
from stockade.entrypoints.bootstrap import build_services  # noqa: E402
from stockade.entrypoints.http import create_app  # noqa: E402
from stockade.entrypoints.settings import Settings  # noqa: E402

JSON_HEADERS = {"Content-Type": "application/json"}
HUGE = "9" * 5000  # past Python's int() digit limit (4300)


@attrs.frozen
class World:
    """A SQLite-backed public app with one product, one active hold and one pending order.

    Its client checks every response against the OpenAPI document as well.
    """

    client: falcon.testing.TestClient
    shop: Shop
    product_id: int
    hold_id: int
    order_id: int

    def snapshot(self) -> tuple:
        """Everything a request could have written, as seen through the use cases."""
        return (
            self.shop.list_products(200),
            self.shop.logs(1000),
            self.shop.get_hold(self.hold_id),
            self.shop.get_order(self.order_id),
        )


def _world(path, **app_options) -> Iterator[World]:
    clock = FixedClock()
    settings = Settings(database_url=f"sqlite:///{path}/t.db", order_processing_seconds=0)
    with build_services(settings, clock=clock) as services:
        services.publisher.close()  # type: ignore[attr-defined]  # no background task behind the test's back
        shop = services.shop
        product = shop.create_product("Phone", "100.00", 50)
        used = shop.hold(product.id, 1)
        order = shop.order_from_hold(used.id).order
        hold = shop.hold(product.id, 1)
        client = DocumentedClient(create_app(shop, readiness=services.readiness, **app_options))
        yield World(client, shop, product.id, hold.id, order.id)


@pytest.fixture
def world(tmp_path) -> Iterator[World]:
    yield from _world(tmp_path)


@pytest.fixture(scope="module")
def shared_world(tmp_path_factory) -> Iterator[World]:
    """One world for the hypothesis tests (function-scoped fixtures are not reset between examples)."""
    yield from _world(tmp_path_factory.mktemp("bad_input"))


@pytest.fixture(scope="module")
def guarded_world(tmp_path_factory) -> Iterator[World]:
    """A shared world whose app has an admin token and a webhook secret."""
    yield from _world(tmp_path_factory.mktemp("guarded"), admin_token="s3cret", webhook_secret="whsec")


def assert_4xx_json(r: falcon.testing.Result, allowed: set[int] | None = None) -> None:
    assert 400 <= r.status_code < 500, f"{r.status_code}: {r.text[:500]}"
    if allowed is not None:
        assert r.status_code in allowed, f"{r.status_code}: {r.text[:500]}"
    assert r.headers["content-type"].startswith("application/json"), r.headers
    body = json.loads(r.content)
    assert isinstance(body, dict) and isinstance(body.get("message"), str) and body["message"], body
    assert "Traceback" not in r.text


# ---------------------------------------------------------------- endpoints and their fields

#: (method, path template, a valid body, field -> kind)
BODY_ENDPOINTS = [
    (
        "POST",
        "/api/products",
        {"name": "N", "price": "1.00", "stock": 1},
        {"name": "text", "price": "price", "stock": "count"},
    ),
    (
        "PUT",
        "/api/products/{product_id}",
        {"name": "N", "price": "1.00", "stock": 60},
        {"name": "text", "price": "price", "stock": "count"},
    ),
    (
        "POST",
        "/api/orders/purchase",
        {"product_id": "{product_id}", "quantity": 1},
        {"product_id": "id", "quantity": "id"},
    ),
    ("POST", "/api/holds", {"product_id": "{product_id}", "quantity": 1}, {"product_id": "id", "quantity": "id"}),
    ("POST", "/api/orders", {"hold_id": "{hold_id}"}, {"hold_id": "id"}),
    (
        "POST",
        "/api/payments/webhook",
        {"idempotency_key": "k", "order_id": "{order_id}", "status": "success"},
        {"idempotency_key": "text", "order_id": "id", "status": "status"},
    ),
]
BODY_IDS = [f"{m} {p}" for m, p, _, _ in BODY_ENDPOINTS]

#: Raw JSON literals that no field of the given kind accepts.
_BAD_INTEGERS = [
    '"1"',
    "true",
    "false",
    "1.5",
    "1.0",
    "1e2",
    "null",
    "[]",
    "{}",
    "[1]",
    str(10**30),
    HUGE,
    "-" + HUGE,
    str(-(10**30)),
    "-1",
    "NaN",
    "Infinity",
    "-Infinity",
    "1e400",
    '"\\ud800"',
    '""',
]
BAD_VALUES = {
    "count": [*_BAD_INTEGERS, str(2**31)],
    "id": [*_BAD_INTEGERS, "0", str(2**63)],
    "price": [
        "true",
        "null",
        "[]",
        "{}",
        str(10**30),
        HUGE,
        "-1",
        "1e400",
        "NaN",
        "Infinity",
        "-Infinity",
        '"1e400"',
        '"\\ud800"',
        '"abc"',
        '""',
        "0.001",
        '"0.001"',
        '"1,00"',
        '"Infinity"',
        '"NaN"',
        '"0x10"',
        '"1_000"',
        "10000000000000",
        '"10000000000000"',
        "1E13",
    ],
    "text": [
        "true",
        "null",
        "[]",
        "{}",
        "5",
        HUGE,
        '""',
        '"   "',
        '"\\ud800"',
        '"\\udfff"',
        '"a\\ud800b"',
        '"' + "x" * 256 + '"',
        "NaN",
    ],
    "status": ["true", "null", "[]", '"paid"', '"\\ud800"', "1", '""', '"Success"', "NaN"],
}

MALFORMED_BODIES = {
    "truncated": b'{"name": "x"',
    "single-quotes": b"{'name': 'x'}",
    "missing-value": b'{"name":}',
    "trailing-garbage": b"{} x",
    "trailing-comma": b'{"a": 1,}',
    "comment": b'{"a": 1 /* c */}',
    "bad-utf8": b'{"name": "\xff\xfe"}',
    "utf8-surrogate": b'{"name": "\xed\xa0\x80"}',
    "utf16": json.dumps({"name": "x"}).encode("utf-16"),
    "empty": b"",
    "blank": b"   \n",
    "list": b"[]",
    "list-of-object": b'[{"name": "x"}]',
    "string": b'"string"',
    "number": b"42",
    "null": b"null",
    "true": b"true",
    "nan": b"NaN",
    "nan-field": b'{"x": NaN}',
    "infinity-field": b'{"x": Infinity}',
    "minus-infinity-field": b'{"x": -Infinity}',
    "deep-list": b"[" * 60000,
    "deep-object": b'{"a":' * 12000,
    "deep-valid": b'{"a": ' + b"[" * 5000 + b"]" * 5000 + b"}",
    "nul": b"\x00",
}

TOO_BIG_BODIES = {
    "deep-100000": b"[" * 100000,
    "65KiB-object": b'{"name": "' + b"x" * (65 * 1024) + b'"}',
    "65KiB-whitespace": b" " * (65 * 1024) + b"{}",
}

#: (method, path template) of every endpoint with an id in its path
PATH_ENDPOINTS = [
    ("GET", "/api/products/{}"),
    ("PUT", "/api/products/{}"),
    ("DELETE", "/api/products/{}"),
    ("GET", "/api/orders/{}"),
    ("GET", "/api/holds/{}"),
    ("DELETE", "/api/holds/{}"),
]
BAD_PATH_IDS = [
    "999999",
    "0",
    "-1",
    "00",
    "abc",
    "1.0",
    "1e3",
    "+1",
    " 1",
    "0x1",
    str(2**63),
    str(2**64),
    "9" * 40,
    HUGE,
    "%00",
    "%F0%9F%9B%92",
    "%ED%A0%80",
    "%FF",
    "１",
    "NaN",
    "null",
    "true",
    "[1]",
]

QUERY_ENDPOINTS = {
    "/api/products": {
        "limit": ["0", "201", "-1", "abc", "1.5", "", "%00", HUGE, str(2**64), "１"],
        "after_id": ["-1", "x", HUGE, str(2**63), "1.0", "", "+1", " 1", "01x"],
    },
    "/api/logs": {
        "limit": ["0", "1001", "-5", "many", HUGE, ""],
        "before_id": ["0", "y", HUGE, str(2**63), ""],
        "event": ["e" * 65, "e" * 5000, ""],
    },
}


def _path(world: World, template: str) -> str:
    return template.format(product_id=world.product_id, hold_id=world.hold_id, order_id=world.order_id)


def _valid(world: World, valid: dict) -> dict:
    """The valid body with the world's ids filled in."""
    return {k: (int(_path(world, v)) if isinstance(v, str) and v.startswith("{") else v) for k, v in valid.items()}


def _body_with(world: World, valid: dict, field: str, raw_literal: str) -> bytes:
    """The valid body with `field` set to a raw JSON literal."""
    return json.dumps({**_valid(world, valid), field: "@@@"}).replace('"@@@"', raw_literal).encode()


# ---------------------------------------------------------------- body endpoints


@pytest.mark.parametrize("kind", list(MALFORMED_BODIES))
@pytest.mark.parametrize("method, path, valid, fields", BODY_ENDPOINTS, ids=BODY_IDS)
def test_malformed_or_non_object_bodies_are_400(world, method, path, valid, fields, kind):
    before = world.snapshot()
    r = world.client.simulate_request(method, _path(world, path), body=MALFORMED_BODIES[kind], headers=JSON_HEADERS)
    assert_4xx_json(r, {400})
    assert world.snapshot() == before


@pytest.mark.parametrize("kind", list(TOO_BIG_BODIES))
@pytest.mark.parametrize("method, path, valid, fields", BODY_ENDPOINTS, ids=BODY_IDS)
def test_bodies_over_64_kib_are_413(world, method, path, valid, fields, kind):
    before = world.snapshot()
    r = world.client.simulate_request(method, _path(world, path), body=TOO_BIG_BODIES[kind], headers=JSON_HEADERS)
    assert_4xx_json(r, {413})
    assert world.snapshot() == before


@pytest.mark.parametrize("method, path, valid, fields", BODY_ENDPOINTS, ids=BODY_IDS)
def test_a_content_length_over_64_kib_is_413_before_reading(world, method, path, valid, fields):
    r = world.client.simulate_request(
        method, _path(world, path), body=b"{}", headers={**JSON_HEADERS, "Content-Length": str(10**9)}
    )
    assert_4xx_json(r, {413})


@pytest.mark.parametrize("method, path, valid, fields", BODY_ENDPOINTS, ids=BODY_IDS)
def test_wrong_types_and_out_of_range_values_are_422(world, method, path, valid, fields):
    before = world.snapshot()
    for field, kind in fields.items():
        for literal in BAD_VALUES[kind]:
            body = _body_with(world, valid, field, literal)
            r = world.client.simulate_request(method, _path(world, path), body=body, headers=JSON_HEADERS)
            expected = {400} if literal.lstrip("-") in ("NaN", "Infinity") else {422}
            assert_4xx_json(r, expected)
            if r.status_code == 422:
                assert field in r.json.get("errors", {}), (field, literal, r.json)
    assert world.snapshot() == before


@pytest.mark.parametrize("method, path, valid, fields", BODY_ENDPOINTS, ids=BODY_IDS)
def test_a_body_without_any_known_field_is_422(world, method, path, valid, fields):
    before = world.snapshot()
    for body in (b"{}", b'{"unknown": 1}', json.dumps({f.upper(): 1 for f in fields}).encode()):
        assert_4xx_json(
            world.client.simulate_request(method, _path(world, path), body=body, headers=JSON_HEADERS), {422}
        )
    assert world.snapshot() == before


@pytest.mark.parametrize(
    "path, field", [("/api/orders/purchase", "product_id"), ("/api/holds", "product_id"), ("/api/orders", "hold_id")]
)
@pytest.mark.parametrize("unknown", [999999, 2**63 - 1])
def test_ids_in_the_body_that_name_nothing_are_422(world, path, field, unknown):
    before = world.snapshot()
    body = {"quantity": 1, field: unknown} if field == "product_id" else {field: unknown}
    r = world.client.simulate_post(path, json=body)
    assert_4xx_json(r, {422})
    assert field in r.json["errors"]
    assert world.snapshot() == before


@pytest.mark.parametrize("path", ["/api/orders/purchase", "/api/holds", "/api/orders"])
def test_a_refused_request_does_not_burn_its_idempotency_key(world, path):
    headers = {**JSON_HEADERS, "Idempotency-Key": "retry-me"}
    for body in (b"{", b"[]", b'{"product_id": "1", "hold_id": "1", "quantity": 0}'):
        assert_4xx_json(world.client.simulate_post(path, body=body, headers=headers))
    valid = (
        {"hold_id": world.shop.hold(world.product_id, 1).id}
        if path == "/api/orders"
        else {"product_id": world.product_id, "quantity": 1}
    )
    r = world.client.simulate_post(path, json=valid, headers=headers)
    assert r.status_code == 201 and "idempotent-replayed" not in r.headers


# ---------------------------------------------------------------- ids in paths, query strings


@pytest.mark.parametrize("raw_id", BAD_PATH_IDS)
@pytest.mark.parametrize("method, template", PATH_ENDPOINTS, ids=[f"{m} {p}" for m, p in PATH_ENDPOINTS])
def test_ids_in_the_path_that_name_nothing_are_404(world, method, template, raw_id):
    before = world.snapshot()
    r = world.client.simulate_request(method, template.format(raw_id), json={"stock": 1})
    assert_4xx_json(r, {404})
    assert world.snapshot() == before


@pytest.mark.parametrize(
    "path, param, value",
    [
        (path, param, value)
        for path, params in QUERY_ENDPOINTS.items()
        for param, values in params.items()
        for value in values
    ],
    ids=lambda v: v[:20] if isinstance(v, str) else v,
)
def test_bad_query_parameters_are_422(world, path, param, value):
    r = world.client.simulate_get(path, query_string=f"{param}={value}")
    assert_4xx_json(r, {422})
    assert param in r.json["errors"]


@pytest.mark.parametrize(
    "path, param, value",
    [
        (path, param, value)
        for path, params in QUERY_ENDPOINTS.items()
        for param, values in params.items()
        for value in [values[0]]
    ],
)
@pytest.mark.parametrize("form", ["{param}=", "{param}", "{param}=1&{param}=2", "{param}=2&{param}=2"])
def test_an_empty_or_repeated_query_parameter_is_422(world, path, param, value, form):
    r = world.client.simulate_get(path, query_string=form.format(param=param))
    assert_4xx_json(r, {422})
    assert param in r.json["errors"]


@pytest.mark.parametrize("query", ["limit=1&limit=2", "after_id=1&after_id=x", "limit", "%FF=1", "limit=%FF"])
def test_odd_query_strings_never_fail_the_server(world, query):
    r = world.client.simulate_get("/api/products", query_string=query)
    assert r.status_code < 500
    if r.status_code >= 400:
        assert_4xx_json(r)


@pytest.mark.parametrize(
    "header, value",
    [
        ("If-Match", '"x"' * 5000),
        ("If-Match", '"1-' + HUGE + '"'),
        ("If-Match", 'W/"1-1", ""'),
        ("If-Match", '"1-\u00b2"'),
        ("If-Match", "\u00ff"),
        ("Idempotency-Key", "\u00b2"),
        ("Idempotency-Key", "\x7f"),
        ("Authorization", "Bearer " + "x" * 10000),
        ("Content-Type", "text/plain"),
        ("Content-Type", "application/json; charset=latin-1"),
    ],
)
def test_odd_headers_never_fail_the_server(world, header, value):
    for method, path, valid, _ in BODY_ENDPOINTS:
        body = json.dumps(_valid(world, valid)).encode()
        r = world.client.simulate_request(method, _path(world, path), body=body, headers={header: value})
        assert r.status_code < 500, (method, path, r.status_code, r.text)
        if r.status_code >= 400:
            assert_4xx_json(r)


@pytest.mark.parametrize("content_length", ["abc", "-1", "1.5", " ", "9" * 100])
@pytest.mark.parametrize("method, path, valid, fields", BODY_ENDPOINTS, ids=BODY_IDS)
def test_an_invalid_content_length_is_4xx(world, method, path, valid, fields, content_length):
    # Called as a bare WSGI app: falcon's test client refuses to send such a header.
    environ = falcon.testing.create_environ(_path(world, path), method=method, body=b"{}", headers=JSON_HEADERS)
    environ["CONTENT_LENGTH"] = content_length
    started: list[str] = []
    chunks = world.client.app(environ, lambda status, headers, exc_info=None: started.append(status))
    body = b"".join(chunks)
    status = int(started[0].split()[0])
    assert 400 <= status < 500, (status, body)
    assert json.loads(body)["message"]


# ---------------------------------------------------------------- property-based: random JSON

_scalars = (
    st.none()
    | st.booleans()
    | st.integers()
    | st.integers(min_value=-(2**64), max_value=2**64)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=20)
    | st.sampled_from(
        [
            "\ud800",
            "\udfff",
            "",
            " ",
            "1",
            "1.00",
            "1e3",
            "-0",
            "success",
            "failure",
            "failed",
            "x" * 256,
            "0.001",
            "9999999999999.99",
            "10000000000000",
        ]
    )
)
json_values = st.recursive(
    _scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=15,
)

POSTS = [(m, p, fields) for m, p, _, fields in BODY_ENDPOINTS]


def _field_values(kind: str):
    near = {
        "id": st.integers(min_value=-2, max_value=2**63 + 2),
        "count": st.integers(min_value=-2, max_value=2**31 + 2),
        "price": st.decimals(allow_nan=False, allow_infinity=False).map(str),
        "text": st.text(max_size=300),
        "status": st.sampled_from(["success", "failure", "failed"]),
    }
    return near[kind] | json_values


def _dicts_with_fields(fields: dict[str, str]):
    return st.fixed_dictionaries({}, optional={f: _field_values(kind) for f, kind in fields.items()})


HYPOTHESIS = settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow]
)


def _post_and_check(world: World, method: str, path: str, body: bytes) -> None:
    r = world.client.simulate_request(method, _path(world, path), body=body, headers=JSON_HEADERS)
    assert r.status_code < 500, (body[:300], r.status_code, r.text[:300])
    assert r.headers["content-type"].startswith("application/json")
    payload = json.loads(r.content) if r.content else None
    if r.status_code >= 400:
        assert isinstance(payload, dict) and isinstance(payload.get("message"), str), payload
    else:
        assert isinstance(payload, dict), payload


@pytest.mark.parametrize("method, path, fields", POSTS, ids=BODY_IDS)
@HYPOTHESIS
@given(value=json_values)
def test_random_json_never_fails_the_server(shared_world, method, path, fields, value):
    _post_and_check(shared_world, method, path, json.dumps(value).encode())


@pytest.mark.parametrize("method, path, fields", POSTS, ids=BODY_IDS)
@HYPOTHESIS
@given(data=st.data())
def test_random_values_of_the_real_fields_never_fail_the_server(shared_world, method, path, fields, data):
    body = data.draw(_dicts_with_fields(fields))
    _post_and_check(shared_world, method, path, json.dumps(body).encode())


@pytest.mark.parametrize("method, path, fields", POSTS, ids=BODY_IDS)
@HYPOTHESIS
@given(raw=st.binary(max_size=200))
def test_random_bytes_never_fail_the_server(shared_world, method, path, fields, raw):
    _post_and_check(shared_world, method, path, raw)


# Header values as a WSGI server delivers them: any Latin-1 text (superscript digits included).
_header_text = st.text(st.characters(min_codepoint=0x20, max_codepoint=0xFF, exclude_characters="\x7f"), max_size=80)
#: digit-like text: str.isdigit() is true for "¹²³", int() refuses them
_digits = st.text(st.sampled_from("0123456789\u00b9\u00b2\u00b3"), min_size=1, max_size=14)
_stamps = st.one_of(st.integers(min_value=-(10**13), max_value=10**13).map(str), _digits, _header_text)


@HYPOTHESIS
@given(
    if_match=st.one_of(
        _header_text,
        st.tuples(st.sampled_from(["1", "2", "x"]), st.one_of(_digits, _header_text)).map(
            lambda iv: f'"{iv[0]}-{iv[1]}"'
        ),
    ),
    key=_header_text,
    authorization=st.one_of(st.just("Bearer s3cret"), _header_text, _header_text.map(lambda v: f"Bearer {v}")),
    signature=st.one_of(_header_text, st.tuples(_stamps, _header_text).map(lambda tv: f"t={tv[0]},v1={tv[1]}")),
)
def test_random_header_values_never_fail_the_server(guarded_world, if_match, key, authorization, signature):
    w = guarded_world
    headers = {
        "If-Match": if_match,
        "Idempotency-Key": key,
        "Authorization": authorization,
        "Stockade-Signature": signature,
        **JSON_HEADERS,
    }
    for method, path, valid, _ in BODY_ENDPOINTS:
        r = w.client.simulate_request(
            method, _path(w, path), body=json.dumps(_valid(w, valid)).encode(), headers=headers
        )
        assert r.status_code < 500, (method, path, headers, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert_4xx_json(r)
    for path in ("/api/logs", f"/api/products/{w.product_id}"):
        r = w.client.simulate_request("DELETE" if "products" in path else "GET", path, headers=headers)
        assert r.status_code < 500, (path, headers, r.status_code, r.text[:300])
