"""Contract section 3's conventions at the HTTP edge: media types, chunked bodies, HEAD, canonical
ids, X-Request-ID and the access log, CORS, timestamps with Z in every body; and what operators
read: metrics, JSON log lines, the request id in the log lines of the background work it caused."""

from __future__ import annotations

import io
import json
import logging
import re
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from decimal import Decimal
from pathlib import Path

import falcon.testing
import pytest

_TESTS = str(Path(__file__).resolve().parents[1])
if _TESTS not in sys.path:
    sys.path.insert(0, _TESTS)
pytest.register_assert_rewrite("api_contract")

from api_contract import Api, make_api, settings_for  # noqa: E402

from stockade.adapters.clock import FixedClock  # noqa: E402
from stockade.domain.model import Product  # noqa: E402
from stockade.entrypoints.bootstrap import build_services  # noqa: E402
from stockade.entrypoints.http import create_app  # noqa: E402
from stockade.entrypoints.http.products import RenderedProducts  # noqa: E402
from stockade.entrypoints.logs import JsonFormatter, RequestIdFilter  # noqa: E402
from stockade.entrypoints.settings import Settings, SettingsError  # noqa: E402

NOW = datetime(2026, 1, 7, 8, 0, tzinfo=timezone.utc)
BODY_POSTS = ["/api/products", "/api/orders/purchase", "/api/holds", "/api/orders", "/api/payments/webhook"]


@pytest.fixture
def api(tmp_path) -> Iterator[Api]:
    clock = FixedClock()
    with build_services(settings_for(f"sqlite:///{tmp_path}/t.db"), clock=clock) as services:
        yield make_api(services, clock)


def _wsgi(app: falcon.App, environ: dict) -> tuple[int, dict[str, str], bytes]:
    started: list = []
    body = b"".join(app(environ, lambda status, headers, exc_info=None: started.append((status, headers))))
    status, headers = started[0]
    return int(status.split()[0]), {k.lower(): v for k, v in headers}, body


# ---------------------------------------------------------------- media types


@pytest.mark.parametrize(
    "content_type",
    ["text/plain", "application/x-www-form-urlencoded", "multipart/form-data", "application/jsonx", "text/json"],
)
@pytest.mark.parametrize("path", BODY_POSTS)
def test_a_body_declared_as_anything_but_json_is_415_and_not_parsed(api, path, content_type):
    pid = api.new_product()
    body = json.dumps(
        {
            "name": "N",
            "price": "1.00",
            "stock": 1,
            "product_id": pid,
            "quantity": 1,
            "hold_id": 1,
            "idempotency_key": "k",
            "order_id": 1,
            "status": "success",
        }
    )
    r = api.client.simulate_post(path, body=body, headers={"Content-Type": content_type})
    assert r.status_code == 415 and r.json["message"], r.text
    assert api.levels(pid) == (10, 0, 10) and len(api.shop.list_products()[0]) == 1


@pytest.mark.parametrize(
    "content_type", [None, "application/json", "application/json; charset=utf-8", "Application/JSON;charset=UTF-8"]
)
def test_a_json_body_may_name_its_charset_or_no_content_type_at_all(api, content_type):
    pid = api.new_product()
    headers = {} if content_type is None else {"Content-Type": content_type}
    r = api.client.simulate_post(
        "/api/orders/purchase", body=json.dumps({"product_id": pid, "quantity": 1}), headers=headers
    )
    assert r.status_code == 201, r.text


def test_a_chunked_body_is_read_like_any_other(api):
    pid = api.new_product()
    app = api.client.app
    raw = json.dumps({"product_id": pid, "quantity": 2}).encode()
    environ = falcon.testing.create_environ(
        "/api/orders/purchase",
        method="POST",
        headers={"Content-Type": "application/json", "Transfer-Encoding": "chunked"},
    )
    environ.pop("CONTENT_LENGTH", None)  # a chunked request has none; the server decodes the chunks
    environ["wsgi.input"] = io.BytesIO(raw)
    status, _, body = _wsgi(app, environ)
    assert status == 201, body
    assert api.levels(pid) == (8, 0, 8)


# ---------------------------------------------------------------- HEAD, canonical ids


def test_every_get_route_answers_head_with_the_headers_and_no_body(api):
    pid = api.new_product()
    hold = api.hold(pid)
    order = api.order(hold)
    document = api.client.simulate_get("/api/openapi.json").json
    gets = [path for path, item in document["paths"].items() if "get" in item]
    assert len(gets) == 12
    for template in gets:
        path = template.format(product_id=pid, hold_id=hold, order_id=order)
        got, head = api.client.simulate_get(path), api.client.simulate_head(path)
        assert head.status_code == got.status_code == 200, (path, head.status_code)
        assert head.content == b"", path
        assert head.headers["content-type"] == got.headers["content-type"], path
        assert head.headers.get("etag") == got.headers.get("etag"), path


@pytest.mark.parametrize(
    "path",
    [
        "/api/products/01",
        "/api/products/1/",
        "/api/products/+1",
        "/api/products/1.",
        "/api/orders/01",
        "/api/holds/001",
        "/api/products/",
        "/api/products/1//",
    ],
)
def test_path_ids_are_canonical_decimal_integers(api, path):
    api.new_product()
    api.pending_order(1)
    r = api.client.simulate_get(path)
    assert r.status_code == 404 and r.json["message"], (path, r.status_code, r.text)


@pytest.mark.parametrize(
    "path, query, fields",
    [
        ("/api/products", "limit=0&after_id=x", {"limit", "after_id"}),
        ("/api/logs", "limit=1001&before_id=0&event=" + "e" * 65, {"limit", "before_id", "event"}),
        ("/api/logs", "limit=&limit=2&before_id=y", {"limit", "before_id"}),
    ],
)
def test_every_invalid_query_parameter_is_named(api, path, query, fields):
    r = api.client.simulate_get(path, query_string=query)
    assert r.status_code == 422 and set(r.json["errors"]) == fields, r.text


# ---------------------------------------------------------------- request ids and the access log


def test_every_response_carries_a_new_request_id(api):
    seen = set()
    for path in ("/healthz", "/api/products", "/api/nope", "/api/products/999"):
        r = api.client.simulate_get(path)
        assert re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"]), r.headers
        seen.add(r.headers["x-request-id"])
    assert len(seen) == 4


@pytest.mark.parametrize("given", ["abc-123", "x" * 128, "!~", "0f8fad5b-d9cb-469f-a165-70867728950e"])
def test_a_sane_client_request_id_is_echoed(api, given):
    r = api.client.simulate_post(
        "/api/orders/purchase", json={"product_id": 1, "quantity": 0}, headers={"X-Request-ID": given}
    )
    assert r.status_code == 422 and r.headers["x-request-id"] == given


@pytest.mark.parametrize("given", ["", "x" * 129, "has space", "caf\u00e9", "tab\there"])
def test_an_insane_client_request_id_is_replaced(api, given):
    r = api.client.simulate_get("/healthz", headers={"X-Request-ID": given})
    assert r.headers["x-request-id"] != given and re.fullmatch(r"[0-9a-f]{32}", r.headers["x-request-id"])


def test_each_request_has_one_access_log_line_with_method_route_status_duration_and_id(api, caplog):
    pid = api.new_product()
    with caplog.at_level(logging.INFO, logger="stockade.access"):
        r = api.client.simulate_post(
            "/api/orders/purchase", json={"product_id": pid, "quantity": 1}, headers={"X-Request-ID": "trace-me"}
        )
        api.client.simulate_get("/api/nope")
    lines = [rec for rec in caplog.records if rec.name == "stockade.access"]
    assert len(lines) == 2
    sale, unknown = lines
    assert (sale.method, sale.route, sale.status, sale.request_id) == ("POST", "/api/orders/purchase", 201, "trace-me")
    assert r.status_code == 201 and sale.duration_ms >= 0
    assert "POST /api/orders/purchase 201" in sale.getMessage()
    assert (unknown.route, unknown.status) == ("unmatched", 404)


# ---------------------------------------------------------------- CORS


def test_no_cors_headers_unless_origins_are_configured(api):
    r = api.client.simulate_get("/api/products", headers={"Origin": "https://shop.example"})
    assert "access-control-allow-origin" not in r.headers


def test_configured_origins_get_cors_headers_and_preflights(api):
    client = falcon.testing.TestClient(create_app(api.shop, cors_origins=("https://shop.example",)))
    r = client.simulate_get("/api/products", headers={"Origin": "https://shop.example"})
    assert r.headers["access-control-allow-origin"] == "https://shop.example"
    assert "x-request-id" in r.headers["access-control-expose-headers"].lower()
    other = client.simulate_get("/api/products", headers={"Origin": "https://evil.example"})
    assert "access-control-allow-origin" not in other.headers
    preflight = client.simulate_options(
        "/api/orders/purchase",
        headers={
            "Origin": "https://shop.example",
            "Access-Control-Request-Method": "POST",
            "Access-Control-Request-Headers": "content-type",
        },
    )
    assert preflight.status_code == 200
    assert "POST" in preflight.headers["access-control-allow-methods"]


# ---------------------------------------------------------------- timestamps

_OFFSET_TIMESTAMP = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(\+00:00|[+-]\d\d:\d\d)")


def test_every_timestamp_in_the_event_log_ends_in_z(api):
    pid = api.new_product()
    api.pending_order(pid)
    api.hold(pid)
    text = api.client.simulate_get("/api/logs").text
    assert "expires_at" in text
    assert not _OFFSET_TIMESTAMP.search(text), text


# ---------------------------------------------------------------- metrics and logs


def test_metrics_have_process_metrics_and_no_created_series(api):
    api.client.simulate_get("/healthz")
    text = api.client.simulate_get("/metrics").text
    assert "process_cpu_seconds_total" in text and "process_start_time_seconds" in text
    assert "stockade_http_requests_total" in text
    assert "_created" not in text


def test_requests_with_invented_methods_are_counted_under_one_label(api):
    app = api.client.app
    for method in ("BREW", "WHEN", "FOO"):
        assert _wsgi(app, falcon.testing.create_environ("/healthz", method=method))[0] == 400
    text = api.client.simulate_get("/metrics").text
    counted = re.findall(r'stockade_http_requests_total\{method="([^"]+)",route="[^"]+",status="400"\} (\S+)', text)
    assert counted == [("other", "3.0")]


def test_a_product_read_after_a_change_shows_the_change(api):
    pid = api.new_product()
    first = api.client.simulate_get(f"/api/products/{pid}")
    assert api.client.simulate_get(f"/api/products/{pid}").text == first.text  # the same body again
    changed = api.client.simulate_put(f"/api/products/{pid}", json={"name": "renamed"})
    assert changed.status_code == 200
    again = api.client.simulate_get(f"/api/products/{pid}")
    assert again.json["data"]["name"] == "renamed"
    assert again.headers["etag"] == changed.headers["etag"] != first.headers["etag"]


def test_rendered_product_bodies_are_kept_for_a_bounded_number_of_products():
    rendered = RenderedProducts(max_entries=2)
    products = [Product(i, f"P{i}", Decimal("1.00"), 5, 0, 1, NOW, NOW) for i in (1, 2, 3)]
    for product in products:
        rendered.send(falcon.Response(), product)
    resp = falcon.Response()
    rendered.send(resp, products[0])  # rendered anew: the oldest was let go
    assert json.loads(resp.text)["data"]["name"] == "P1"
    assert len(rendered._bodies) == 2


@pytest.fixture
def json_lines() -> Iterator[io.StringIO]:
    """Every log line of the process, as STOCKADE_LOG_FORMAT=json writes it, into a buffer."""
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    handler.addFilter(RequestIdFilter())
    handler.setFormatter(JsonFormatter())
    root = logging.getLogger()
    root.addHandler(handler)
    level = root.level
    root.setLevel(logging.INFO)
    yield stream
    root.removeHandler(handler)
    root.setLevel(level)


def test_a_background_task_logs_with_the_request_id_that_caused_it(api, json_lines):
    pid = api.new_product()
    r = api.client.simulate_post(
        "/api/orders/purchase", json={"product_id": pid, "quantity": 1}, headers={"X-Request-ID": "cause-7"}
    )
    assert r.status_code == 201
    assert [m.payload.get("request_id") for m in api.pending_tasks()] == ["cause-7"]
    assert api.run_tasks() == 1
    records = [json.loads(line) for line in json_lines.getvalue().splitlines()]
    access = [x for x in records if x["logger"] == "stockade.access" and x["route"] == "/api/orders/purchase"]
    assert [(x["status"], x["request_id"]) for x in access] == [(201, "cause-7")]
    processed = [x for x in records if x["message"] == f"Order #{r.json['data']['id']} Processed."]
    assert [(x["level"], x["request_id"]) for x in processed] == [("WARNING", "cause-7")]
    assert all(x["time"].endswith("Z") for x in records)


def test_work_outside_any_request_logs_without_a_request_id(api, json_lines):
    logging.getLogger("stockade").warning("sweeping")
    assert json.loads(json_lines.getvalue())["request_id"] is None


@pytest.mark.parametrize(
    "env, problem",
    [
        ({"STOCKADE_LOG_FORMAT": "xml"}, "STOCKADE_LOG_FORMAT"),
        ({"STOCKADE_CORS_ORIGINS": "shop.example"}, "STOCKADE_CORS_ORIGINS"),
        ({"STOCKADE_CORS_ORIGINS": "https://shop.example/path"}, "STOCKADE_CORS_ORIGINS"),
    ],
)
def test_unusable_log_format_or_cors_origins_are_refused_naming_the_variable(env, problem):
    with pytest.raises(SettingsError, match=problem):
        Settings.from_env(env)


def test_cors_origins_are_read_as_a_comma_separated_list():
    settings = Settings.from_env(
        {"STOCKADE_CORS_ORIGINS": " https://a.example, http://localhost:3000/ ,", "STOCKADE_LOG_FORMAT": "JSON"}
    )
    assert settings.cors_origins == ("https://a.example", "http://localhost:3000")
    assert settings.log_format == "json"
