"""Holds: read one, release one (placing a hold is buying)."""

from __future__ import annotations

from collections.abc import Callable

import falcon

from stockade.application.commands import HoldView
from stockade.entrypoints.http.body import path_id
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.schemas import HoldBody


class HoldResource:
    def __init__(self, get_hold: Callable[[int], HoldView], release_hold: Callable[[int], None]) -> None:
        self.get_hold = get_hold
        self.release_hold = release_hold

    def on_get(self, req: falcon.Request, resp: falcon.Response, hold_id: str) -> None:
        send(resp, 200, HoldBody.of(self.get_hold(path_id(hold_id))))

    def on_delete(self, req: falcon.Request, resp: falcon.Response, hold_id: str) -> None:
        self.release_hold(path_id(hold_id))
        resp.status = 204
