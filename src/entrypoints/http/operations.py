"""For operators: the business event log, liveness, readiness and this API's own document."""

from __future__ import annotations

import json
import re
from collections.abc import Callable

import falcon

from stockade.domain.model import LoggedEvent
from stockade.entrypoints.http.auth import AdminGuard
from stockade.entrypoints.http.body import query
from stockade.entrypoints.http.errors import send
from stockade.entrypoints.http.schemas import Health, LogPage, LogQuery, NotReady, Ready

_EVENT_NAME = re.compile(r"[a-z0-9_]{1,64}")


class LogsResource:
    def __init__(self, logs: Callable[[int, str | None, int | None], list[LoggedEvent]], guard: AdminGuard) -> None:
        self.logs = logs
        self.guard = guard

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        self.guard(req)
        asked = query(req, LogQuery)
        if asked.event is not None and not _EVENT_NAME.fullmatch(asked.event):
            events = []  # no event has such a name; a case-insensitive collation must not say otherwise
        else:
            events = self.logs(asked.limit, asked.event, asked.before_id)
        send(resp, 200, LogPage.of(events, events[-1].id if len(events) == asked.limit else None))


class HealthResource:
    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        send(resp, 200, Health(status="ok"))


class ReadyResource:
    def __init__(self, readiness: Callable[[], dict[str, str | None]]) -> None:
        self.readiness = readiness

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        checks = self.readiness()
        failed = [name for name, reason in checks.items() if reason is not None]
        shown = {name: reason or "ok" for name, reason in checks.items()}
        if failed:
            send(
                resp,
                503,
                NotReady(message="Not ready: " + "; ".join(f"{name}: {shown[name]}" for name in failed), checks=shown),
            )
        else:
            send(resp, 200, Ready(status="ok", checks=shown))


class OpenApiResource:
    def __init__(self, document: dict) -> None:
        self.body = json.dumps(document)

    def on_get(self, req: falcon.Request, resp: falcon.Response) -> None:
        resp.content_type = falcon.MEDIA_JSON
        resp.text = self.body
