"""Products: list, read (with an ETag), create, change (with If-Match), delete, adjust stock."""

from __future__ import annotations

import re
from collections.abc import Callable

import falcon

from stockade.application.commands import AdjustStock
from stockade.application.idempotency import Answer
from stockade.domain.model import Product, StockAdjustment
from stockade.entrypoints.http.auth import AdminGuard
from stockade.entrypoints.http.body import json_body, path_id, query
from stockade.entrypoints.http.buying import first_answer
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.schemas import (
    AdjustmentEnvelope,
    AdjustmentPage,
    AdjustmentQuery,
    AdjustStockRequest,
    ProductCreate,
    ProductEnvelope,
    ProductListQuery,
    ProductPage,
    ProductUpdate,
)

_VERSION = re.compile(r"[0-9]{1,19}")


def if_match_versions(header: str | None, product_id: int) -> tuple[int, ...] | None:
    """Versions named by If-Match (our ETags are "<id>-<version>"); None when absent or *."""
    if header is None or header.strip() == "*":
        return None
    versions = []
    for tag in header.split(","):
        tag = tag.strip()
        if tag.startswith("W/"):
            continue  # If-Match uses strong comparison: a weak tag never matches
        ident, _, version = tag.strip('"').partition("-")
        if ident == str(product_id) and _VERSION.fullmatch(version):
            versions.append(int(version))
    return tuple(versions)


def _send_product(resp: falcon.Response, status: int, product: Product) -> None:
    resp.set_header("ETag", product.etag)
    send(resp, status, ProductEnvelope.of(product))


class RenderedProducts:
    """The body last rendered for each product, kept while reads return the same snapshot.

    A read from memory hands every request the same Product object until a write outdates
    it, so rendering it once serves them all. The object itself is the key (identity, not
    equality): a new snapshot is rendered anew. At most `max_entries` products are kept."""

    def __init__(self, max_entries: int = 10_000) -> None:
        self.max_entries = max_entries
        self._bodies: dict[int, tuple[Product, str]] = {}

    def send(self, resp: falcon.Response, product: Product) -> None:
        found = self._bodies.get(product.id)
        if found is None or found[0] is not product:
            if found is None and len(self._bodies) >= self.max_entries:
                del self._bodies[next(iter(self._bodies))]  # the oldest kept
            found = self._bodies[product.id] = (product, ProductEnvelope.of(product).model_dump_json())
        resp.set_header("ETag", product.etag)
        send(resp, 200, found[1])


class ProductsResource:
    def __init__(
        self,
        list_products: Callable[..., tuple[list[Product], int | None]],
        create_product: Callable[..., Product],
        guard: AdminGuard,
    ) -> None:
        self.list_products = list_products
        self.create_product = create_product
        self.guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        asked = query(req, ProductListQuery)
        page, next_after = self.list_products(asked.limit, asked.after_id)
        send(resp, 200, ProductPage.of(page, next_after))

    def on_post(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard(req)
        body = json_body(req, ProductCreate)
        _send_product(resp, 201, self.create_product(body.name, body.price, body.stock, body.max_per_customer))


class ProductResource:
    def __init__(
        self,
        get_product: Callable[[int], Product],
        update_product: Callable[..., Product],
        delete_product: Callable[[int], None],
        guard: AdminGuard,
    ) -> None:
        self.get_product = get_product
        self.update_product = update_product
        self.delete_product = delete_product
        self.guard = guard
        self.rendered = RenderedProducts()

    def on_get(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        self.rendered.send(resp, self.get_product(path_id(product_id)))

    def on_put(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        self.guard(req)
        pid = path_id(product_id)
        body = json_body(req, ProductUpdate)
        changes = {field: getattr(body, field) for field in body.model_fields_set}
        product = self.update_product(pid, **changes, if_match=if_match_versions(req.get_header("If-Match"), pid))
        _send_product(resp, 200, product)

    def on_delete(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        self.guard(req)
        self.delete_product(path_id(product_id))
        resp.status = 204


class AdjustmentsResource:
    """A product's stock adjustments (admin): the trail, newest first, and a new one."""

    def __init__(
        self,
        list_adjustments: Callable[[int, int, int | None], tuple[list[StockAdjustment], int | None]],
        adjust_stock_once: Callable[[AdjustStock, str | None], Answer[StockAdjustment]],
        guard: AdminGuard,
    ) -> None:
        self.list_adjustments = list_adjustments
        self.adjust_stock_once = adjust_stock_once
        self.guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        self.guard(req)
        pid = path_id(product_id)
        asked = query(req, AdjustmentQuery)
        page, next_before = self.list_adjustments(pid, asked.limit, asked.before_id)
        send(resp, 200, AdjustmentPage.of(page, next_before))

    def on_post(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        self.guard(req)
        command = json_body(req, AdjustStockRequest).command(path_id(product_id))
        adjustment = first_answer(req, resp, lambda key: self.adjust_stock_once(command, key))
        send(resp, 201, AdjustmentEnvelope.of(adjustment))
