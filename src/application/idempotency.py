"""Idempotency-Key on the POST endpoints: one effect per key, the first answer replayed."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable
from typing import Any, Generic, TypeVar

import attrs

from stockade.application.ports import IdempotencyKeyTaken, RequestKey
from stockade.application.records import decode, encode_refusal
from stockade.application.services import Deps, transaction
from stockade.domain.errors import DomainError, IdempotencyKeyInFlight, IdempotencyKeyReused

T = TypeVar("T")


@attrs.frozen
class Answer(Generic[T]):
    """What a request came to: its result or the domain's refusal; `replayed` when it is
    the first answer to an earlier request with the same Idempotency-Key."""

    result: T | None = None
    refusal: DomainError | None = None
    replayed: bool = False


def request_key(scope: str, key: str, command: Any) -> RequestKey:
    """The key of a request, with a fingerprint of its command (attrs value). Fields left out
    (None) are not part of it: a command keeps its fingerprint when optional fields are added."""
    given = attrs.asdict(command, filter=lambda _, value: value is not None)
    digest = hashlib.sha256(json.dumps(given, sort_keys=True, default=str).encode()).hexdigest()
    return RequestKey(scope, key, digest)


def answer_once(deps: Deps, key: RequestKey | None, action: Callable[[RequestKey | None], T]) -> Answer[T]:
    """Run `action` (a use case that claims `key` in its own transaction) once per key.

    The claim, the effect and the stored answer commit together, so there is no claim
    of its own to take or to free. A concurrent request with the same key waits for the
    first to commit and replays its answer. A refusal is an answer too: it is recorded
    (in a transaction of its own, as it changed nothing) and replayed.
    Raises IdempotencyKeyReused when the key came before with another command.
    """
    try:
        return Answer(result=action(key))
    except IdempotencyKeyTaken:
        return _replay(deps, key)
    except (IdempotencyKeyReused, IdempotencyKeyInFlight):
        raise
    except DomainError as refusal:
        # An answer now, not an error in flight: without its traceback, whose frames reach
        # the caller that keeps the answer (a reference cycle for the garbage collector).
        refusal.__traceback__ = None
        if key is None:
            return Answer(refusal=refusal)
        record = encode_refusal(refusal)
        try:
            transaction(deps, lambda uow, now: uow.idempotency.claim(key, now, record))
        except IdempotencyKeyTaken:
            return _replay(deps, key)
        return Answer(refusal=refusal)


def _replay(deps: Deps, key: RequestKey | None) -> Answer[Any]:
    assert key is not None, "only a keyed request finds its key taken"
    with deps.read() as uow:
        record = uow.idempotency.find(key)
    if record is None:
        # Taken but not readable yet: the other transaction has not committed.
        raise IdempotencyKeyInFlight()
    if record.fingerprint != key.fingerprint:
        raise IdempotencyKeyReused()
    value = decode(record.answer)
    if isinstance(value, DomainError):
        return Answer(refusal=value, replayed=True)
    return Answer(result=value, replayed=True)
