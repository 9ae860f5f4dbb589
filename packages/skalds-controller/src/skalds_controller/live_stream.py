"""Live events and the per-connection queues that carry them to SSE clients.

Each connection gets a bounded queue on its event loop: a client that reads too
slowly loses its oldest events (it is told how many, so it can re-read the state)
instead of making the controller's memory grow without limit.
"""

from __future__ import annotations

import asyncio
import json
import threading
from dataclasses import dataclass, field
from typing import Any

__all__ = ["STREAMS", "LiveClient", "LiveEvent", "UpdateWaiter", "sse_comment"]

STREAMS = ("skalds", "tasks", "status")
"""The streams a client can follow: ``/api/events/{stream}``."""


@dataclass(frozen=True)
class LiveEvent:
    """One change, for the clients of ``stream`` (and of ``task_id`` when they filter)."""

    stream: str
    name: str
    data: dict[str, Any]
    task_id: str | None = None
    seq: int = 0

    def to_sse(self) -> str:
        """The event in the ``text/event-stream`` wire format."""
        payload = json.dumps(self.data, separators=(",", ":"), default=str)
        return f"id: {self.seq}\nevent: {self.name}\ndata: {payload}\n\n"


def sse_comment(text: str) -> str:
    """A comment line: keeps proxies and browsers from closing an idle stream."""
    return f": {text}\n\n"


@dataclass(eq=False)
class LiveClient:
    """One SSE connection: what it follows and its bounded queue (used on ``loop`` only)."""

    stream: str
    loop: asyncio.AbstractEventLoop
    max_queue: int
    task_id: str | None = None
    dropped: int = 0
    queue: asyncio.Queue[LiveEvent] = field(init=False)

    def __post_init__(self) -> None:
        self.queue = asyncio.Queue(maxsize=self.max_queue)

    def wants(self, event: LiveEvent) -> bool:
        """Whether the event belongs to this client's stream (and task filter)."""
        if event.stream != self.stream:
            return False
        return self.task_id is None or event.task_id == self.task_id

    def offer(self, event: LiveEvent) -> None:
        """Queue the event; when full, drop the oldest one (runs on the client's loop)."""
        if self.queue.full():
            self.queue.get_nowait()
            self.dropped += 1
        self.queue.put_nowait(event)

    async def next(self, timeout: float) -> LiveEvent | None:
        """The next event, or ``None`` after ``timeout`` seconds without one."""
        try:
            return await asyncio.wait_for(self.queue.get(), timeout)
        except TimeoutError:
            return None

    def take_dropped(self) -> int:
        """How many events were dropped since the last call."""
        dropped, self.dropped = self.dropped, 0
        return dropped


class UpdateWaiter:
    """Waits for a node's ``UpdateApplied``/``UpdateFailed`` about one task."""

    def __init__(self, task_id: str) -> None:
        self.task_id = task_id
        self.applied: bool | None = None
        self.node: str | None = None
        self.reason: str | None = None
        """Why the worker refused the update (``UpdateFailed``'s message), when it said."""
        self._done = threading.Event()

    def resolve(self, applied: bool, node: str | None, reason: str | None = None) -> None:
        """Record the node's answer (the first one wins)."""
        if not self._done.is_set():
            self.applied, self.node, self.reason = applied, node, reason
            self._done.set()

    def wait(self, timeout: float) -> bool:
        """True when an answer came within ``timeout`` seconds."""
        return self._done.wait(timeout)
