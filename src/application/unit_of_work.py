"""The after-commit half of every unit of work: publish outbox messages, drop cache entries."""

from __future__ import annotations

import logging

from stockade.application.ports import ProductCache, TaskMessage, TaskPublisher, resolved

log = logging.getLogger(__name__)


class AbstractUnitOfWork:
    """Base for the SQL and in-memory units of work.

    Subclasses implement `_begin`, `_commit` and `_rollback`; this class makes sure side
    effects happen only after a successful commit, in one place for every adapter.
    """

    def __init__(self, publisher: TaskPublisher, cache: ProductCache) -> None:
        self._publisher = publisher
        self._cache = cache
        self._new_messages: list[TaskMessage] = []
        self._changed_products: set[int] = set()
        self._open = False

    def __enter__(self):
        self._new_messages = []
        self._changed_products = set()
        self._begin()
        self._open = True
        return self

    def __exit__(self, exc_type: object, exc: object, tb: object) -> None:
        if self._open:
            self._open = False
            self._rollback()

    def commit(self) -> None:
        self._commit()
        self._open = False
        if self._changed_products:
            self._cache.invalidate(sorted(self._changed_products))
        if self._new_messages:
            # Their ids (and ids in their payloads) may have been Refs until the commit.
            self._publisher.publish([resolved(m) for m in self._new_messages])

    def product_changed(self, product_id: int) -> None:
        self._changed_products.add(product_id)

    def message_added(self, message: TaskMessage) -> None:
        self._new_messages.append(message)

    def _begin(self) -> None:
        raise NotImplementedError

    def _commit(self) -> None:
        raise NotImplementedError

    def _rollback(self) -> None:
        raise NotImplementedError
