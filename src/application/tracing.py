"""The id of the request a piece of work serves, so that every log line of it can carry the id."""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

#: Set by an entrypoint (the HTTP request's X-Request-ID, or the one a background task was
#: given) for as long as it works on that request; None outside any request.
request_id: ContextVar[str | None] = ContextVar("stockade_request_id", default=None)


def traced(payload: dict[str, Any]) -> dict[str, Any]:
    """A task payload with the id of the request that caused the task, when there is one."""
    current = request_id.get()
    return payload if current is None else {**payload, "request_id": current}


@contextmanager
def serving(given: str | None) -> Iterator[None]:
    """Within the block, log lines carry `given` (a task's request id) as their request id."""
    token = request_id.set(given)
    try:
        yield
    finally:
        request_id.reset(token)
