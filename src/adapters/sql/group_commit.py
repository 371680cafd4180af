"""Group commit: the writers of a process that commit at the same time commit together.

Each writer's COMMIT costs the database more than its statements do: on SQLite, with one
writer at a time and `synchronous=FULL`, an fsync each, one after the other; on MySQL a
round trip, a log write and a wake-up of the server thread each. Instead, the first writer
that arrives leads: it takes the group of every writer queued by then (on SQLite after it
holds the write lock), runs each writer's statements inside a SAVEPOINT of its own on its
connection, and makes them all durable with one COMMIT (session.py: on MySQL the whole group
goes in one round trip). Each writer is told its own outcome only after that COMMIT:

- a writer whose statements failed (a lost condition, a duplicate key) is rolled back to its
  savepoint and gets its error, and the others are not affected;
- a COMMIT that fails fails every writer of the group that had not failed already.

A writer's statements run as they would alone, in one transaction, after every writer before
it in the group: the group is the same history as those writers one after the other. (On
MySQL the takes of units that end every writer of a group may instead run last, one
statement per product for all of them: no other statement of those writers touches a product
row, so the history is still the same, and if the total does not fit, the group is sent
again the plain way; see session.py.) The
writer after the group leads the next one. A group takes at most MAX_GROUP writers: queued
writers hold no connection (session.py), so under a gevent worker hundreds may queue, and one
transaction of them all would fail all of them on one deadlock or lost connection, and could
outgrow the server's largest packet.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Generic, TypeVar

from stockade.adapters.forks import call_in_forked_children

#: The most writers one group takes; the rest wait for the next group (led by the first of them).
MAX_GROUP = 64

#: What a writer asks to commit (its statements); the leader runs it on the group's connection.
W = TypeVar("W")
#: Takes the group (by calling its argument; on SQLite after the write lock), runs the group's
#: statements in one transaction and commits it: one error (or None) per writer of the group.
Lead = Callable[[Callable[[], list[W]]], list[BaseException | None]]


class _Writer(Generic[W]):
    __slots__ = ("statements", "lead", "leads", "turn", "error")

    def __init__(self, statements: W, lead: Lead[W]) -> None:
        self.statements = statements
        self.lead = lead
        self.leads = False
        self.turn = threading.Event()  # set when its group is done, or when it is to lead
        self.error: BaseException | None = None


class GroupCommit(Generic[W]):
    """The queue of one process's writers (see the module's docstring)."""

    def __init__(self, max_group: int = MAX_GROUP) -> None:
        self._max_group = max_group
        self._start_over()
        call_in_forked_children(self._start_over)  # a child has no writers of its parent

    def _start_over(self) -> None:
        self._lock = threading.Lock()
        self._queue: list[_Writer[W]] = []
        self._leading = False

    def commit(self, statements: W, lead: Lead[W]) -> None:
        """Commit `statements` with the writers queued with them; raises their own error.

        `lead` is this writer's way to run a group (its connection): it is called when this
        writer leads, with every queued writer's statements, its own first."""
        writer = _Writer(statements, lead)
        with self._lock:
            self._queue.append(writer)
            if not self._leading:
                self._leading = writer.leads = True
        if not writer.leads:
            writer.turn.wait()
        if writer.leads:
            self._lead(writer)
        if writer.error is not None:
            raise writer.error

    def _lead(self, leader: _Writer[W]) -> None:
        group: list[_Writer[W]] = []

        def take_group() -> list[W]:
            # Called once the write lock is held, so whoever queued meanwhile joins.
            with self._lock:
                group[:], self._queue = self._queue[: self._max_group], self._queue[self._max_group :]
            # The leader is first in the queue it leads: it queued before anyone it finds there.
            assert group[0] is leader
            return [writer.statements for writer in group]

        try:
            errors = leader.lead(take_group)
            for writer, error in zip(group, errors, strict=True):
                writer.error = error
        except BaseException as exc:  # interrupted: no writer may believe it committed
            leader.error = exc
            for writer in group:
                if writer is not leader:
                    writer.error = _Interrupted(exc)
        finally:
            with self._lock:
                if not group:  # failed before it took its group: it leaves the queue alone
                    self._queue.remove(leader)
                following = self._queue[0] if self._queue else None
                if following is None:
                    self._leading = False
                else:
                    following.leads = True
            for writer in group:
                if writer is not leader:
                    writer.turn.set()
            if following is not None:
                following.turn.set()


class _Interrupted(RuntimeError):
    """The group this writer was in was interrupted (its leader stopped): whether it
    committed is unknown, so it must not be retried as if it had not."""

    def __init__(self, cause: BaseException) -> None:
        super().__init__(f"the group commit was interrupted ({type(cause).__name__}); its outcome is unknown")
