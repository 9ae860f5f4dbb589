"""Decorators that mark a worker's lifecycle handlers.

A decorator only tags the function; :class:`~skalds.worker.baseclass.AbstractTaskWorker`
collects the tags when the class is defined, so handlers are found without naming
conventions and a subclass can override one by defining its own.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any, Literal, TypeVar

__all__ = [
    "HANDLER_ATTR",
    "HandlerKind",
    "release_handler",
    "run_after_handler",
    "run_before_handler",
    "run_main_handler",
    "update_event_handler",
]

HandlerKind = Literal["before", "main", "after", "release", "update"]
HANDLER_ATTR = "__skalds_handler__"

F = TypeVar("F", bound=Callable[..., Any])


def _marker(kind: HandlerKind) -> Callable[[F], F]:
    def mark(func: F) -> F:
        if not callable(func):
            raise TypeError(f"@{kind} handler decorator needs a function, got {func!r}")
        setattr(func, HANDLER_ATTR, kind)
        return func

    mark.__name__ = f"{kind}_handler"
    return mark


run_before_handler = _marker("before")
"""Runs first, before the main handler (open streams, load models)."""
run_main_handler = _marker("main")
"""The task itself. Required: a worker class without one is rejected at registration."""
run_after_handler = _marker("after")
"""Runs after the main handler returned normally."""
release_handler = _marker("release")
"""Always runs last: after success, failure, or a cancel (SIGTERM). Free resources here."""
update_event_handler = _marker("update")
"""Receives new, validated attachments while the task runs (on a background thread)."""
