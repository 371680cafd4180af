"""Idempotency-Key on the POST endpoints: replay the first response, never a second effect."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import TypeVar

import attrs

from stockade.application.claim import BeforeCommit
from stockade.application.ports import StoredResponse, UnitOfWork
from stockade.application.services import Deps, retrying
from stockade.domain.errors import DomainError, IdempotencyKeyInFlight, IdempotencyKeyReused

T = TypeVar("T")
log = logging.getLogger(__name__)


@attrs.frozen
class Replay:
    """The stored first response for a repeated key."""

    response: StoredResponse


def run_idempotent(
    deps: Deps,
    scope: str,
    key: str,
    fingerprint: str,
    action: Callable[[BeforeCommit], T],
    render: Callable[[T], StoredResponse],
    render_error: Callable[[DomainError], StoredResponse],
) -> T | Replay:
    """Run `action` once per (scope, key); its response is stored in its own transaction.

    The key is claimed in a short committed transaction first, so a concurrent request
    with the same key sees it in flight (IdempotencyKeyInFlight). A domain refusal is a
    response too and is replayed. Any other failure drops the claim: nothing took effect.
    """
    now = deps.clock.now()

    def claim():
        with deps.uow() as uow:
            found = uow.idempotency.claim(scope, key, fingerprint, now, now - deps.policy.idempotency_stale)
            uow.commit()
            return found

    found = retrying(claim)
    if not found.fresh:
        if found.fingerprint != fingerprint:
            raise IdempotencyKeyReused()
        if found.response is None:
            raise IdempotencyKeyInFlight()
        return Replay(found.response)

    token = found.token
    assert token is not None

    def record(uow: UnitOfWork, result: object) -> None:
        # Conditional on still owning the claim: if a takeover happened while this request
        # stalled, the effect rolls back with this transaction and only one request's counts.
        if not uow.idempotency.complete(scope, key, token, render(result), deps.clock.now()):  # type: ignore[arg-type]
            raise IdempotencyKeyInFlight()

    try:
        return action(record)
    except DomainError as refusal:
        def store_refusal() -> None:
            with deps.uow() as uow:
                uow.idempotency.complete(scope, key, token, render_error(refusal), deps.clock.now())
                uow.commit()
        retrying(store_refusal)
        raise
    except BaseException:
        try:
            with deps.uow() as uow:
                uow.idempotency.abandon(scope, key, token)
                uow.commit()
        except Exception:  # the claim goes stale and is taken over later
            log.warning("could not drop idempotency claim %s %s", scope, key, exc_info=True)
        raise
