"""Holds: read one, extend one, release one (placing a hold is buying)."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from stockade.application.commands import HoldView
from stockade.entrypoints.http.body import json_body, path_id
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.schemas import HoldBody, RequestBody


class HoldResource:
    def __init__(
        self,
        get_hold: Callable[[int], HoldView],
        extend_hold: Callable[[int, int], HoldView],
        release_hold: Callable[[int], None],
        extension: type[RequestBody],
    ) -> None:
        self.get_hold = get_hold
        self.extend_hold = extend_hold
        self.release_hold = release_hold
        self.extension = extension

    def on_get(self, req: falcon.Request, resp: falcon.Response, hold_id: str) -> None:
        send(resp, 200, HoldBody.of(self.get_hold(path_id(hold_id))))

    def on_patch(self, req: falcon.Request, resp: falcon.Response, hold_id: str) -> None:
        hid = path_id(hold_id)
        body = json_body(req, self.extension)
        send(resp, 200, HoldBody.of(self.extend_hold(hid, body.extend_seconds)))  # type: ignore[attr-defined]

    def on_delete(self, req: falcon.Request, resp: falcon.Response, hold_id: str) -> None:
        self.release_hold(path_id(hold_id))
        resp.status = 204
