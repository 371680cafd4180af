"""Holds: list them, read one, extend one, release one (placing a hold is buying)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import falcon

from stockade.application.commands import HoldView
from stockade.application.idempotency import Answer
from stockade.entrypoints.http.auth import AdminGuard
from stockade.entrypoints.http.body import json_body, path_id, query
from stockade.entrypoints.http.buying import TakeUnitsResource
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.metrics import Outcomes
from stockade.entrypoints.http.schemas import HoldBody, HoldListQuery, HoldPage, NewHold, RequestBody


class HoldsResource(TakeUnitsResource):
    """POST places a hold (a take of units); GET: a page of holds (admin)."""

    def __init__(
        self,
        model: type[RequestBody],
        hold_once: Callable[[Any, str | None], Answer[Any]],
        outcomes: Outcomes,
        list_holds: Callable[..., tuple[list[HoldView], int | None]],
        guard: AdminGuard,
    ) -> None:
        super().__init__(model, hold_once, NewHold.of, outcomes)
        self.list_holds = list_holds
        self.guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard(req)
        send(resp, 200, HoldPage.of(*self.list_holds(**query(req, HoldListQuery).model_dump())))


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
