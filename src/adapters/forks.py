"""What a process-wide adapter must redo in a forked child (a prefork worker)."""

from __future__ import annotations

import os
import weakref
from collections.abc import Callable


def call_in_forked_children(method: Callable[[], None]) -> None:
    """Call the bound `method` in every child forked from now on, while its object lives."""
    ref = weakref.WeakMethod(method)

    def in_child() -> None:
        alive = ref()
        if alive is not None:
            alive()

    os.register_at_fork(after_in_child=in_child)
