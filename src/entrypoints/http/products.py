"""Products: list, read (with an ETag), create, change (with If-Match), delete."""

from __future__ import annotations

import re
from collections.abc import Callable

import falcon

from stockade.domain.model import Product
from stockade.entrypoints.http.auth import AdminGuard
from stockade.entrypoints.http.body import json_body, path_id, query
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.schemas import (
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

    def on_get(self, req: falcon.Request, resp: falcon.Response, product_id: str) -> None:
        _send_product(resp, 200, self.get_product(path_id(product_id)))

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
