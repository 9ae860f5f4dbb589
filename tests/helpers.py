"""Small helpers shared by the tests."""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import psutil

from skalds.errors import BackendUnavailableError
from skalds.memory import MemoryCache
from skalds.model.task import Task
from skalds.plugins import Backends
from skalds.utils.logging import logger

T = TypeVar("T")


def wait_for(predicate: Callable[[], T], timeout: float = 10.0, interval: float = 0.01) -> T:
    """Poll ``predicate`` until it returns something truthy; fail the test on timeout."""
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"condition not met within {timeout} s: {predicate}")
        time.sleep(interval)


def read_lines(path: Path) -> list[str]:
    """Lines of a trace file written by a test worker (empty when it does not exist yet)."""
    try:
        return path.read_text().splitlines()
    except FileNotFoundError:
        return []


def process_alive(pid: int) -> bool:
    """True when ``pid`` runs (a zombie waiting to be reaped counts as gone)."""
    try:
        return psutil.Process(pid).status() != psutil.STATUS_ZOMBIE
    except psutil.NoSuchProcess:
        return False


class SwitchableCache(MemoryCache):
    """An in-memory cache that can stop answering, like a Redis that is down.

    Its keys keep expiring meanwhile, as Redis's do: after a long outage the node
    registry is empty until the nodes report again.
    """

    def __init__(self) -> None:
        super().__init__()
        self.down = False

    def _check(self) -> None:
        if self.down:
            raise BackendUnavailableError("cache at memory:// is down (test)")

    def apply(self, ops):
        self._check()
        super().apply(ops)

    def get(self, key):
        self._check()
        return super().get(key)

    def hash_get_all(self, key):
        self._check()
        return super().hash_get_all(key)

    def list_get(self, key):
        self._check()
        return super().list_get(key)


@contextlib.contextmanager
def collected_log(level: int = logging.INFO) -> Iterator[list[str]]:
    """Messages of the ``skalds`` logger at ``level`` and above, while inside.

    The logger does not propagate to pytest's capture; a ``level`` below the logger's
    own is let through for the duration.
    """
    lines: list[str] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            lines.append(record.getMessage())

    handler = Collect(level)
    previous = logger.level
    if level < logger.getEffectiveLevel():
        logger.setLevel(level)
    logger.addHandler(handler)
    try:
        yield lines
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def post_probe_task(client: Any, task_id: str, trace: Path, **fields: Any) -> dict[str, Any]:
    """``POST /api/tasks`` a ProbeWorker task that traces to ``trace``; 201 or the test fails.

    ``attachments`` are added to (and may override) the trace file; other ``fields``
    go into the body as given (camelCase API names). Returns the created task (JSON).
    """
    attachments = {"traceFile": str(trace), **fields.pop("attachments", {})}
    body = {"id": task_id, "className": "ProbeWorker", "attachments": attachments, **fields}
    res = client.post("/api/tasks", json=body)
    assert res.status_code == 201, res.text
    created: dict[str, Any] = res.json()
    return created


def stored(backends: Backends, task_id: str) -> Task:
    """The task as the store holds it now (it must exist)."""
    task = backends.store.get_task(task_id)
    assert task is not None
    return task
