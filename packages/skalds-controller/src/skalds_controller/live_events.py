"""The live-events hub: turns bus events and registry changes into pushes to SSE clients.

Task changes arrive on the bus (``taskworker.update`` from the nodes; ``task.created``,
``task.assign`` and ``task.cancel`` from controllers) under a consumer group unique to
this controller, so every controller sees every event. Node changes come from a
:class:`~skalds_controller.live_nodes.NodeWatcher`. Clients get an event only when
something changed; an idle stream carries a keep-alive comment and nothing else.

The hub also answers "did the running worker get the new attachments?" for the
attachments endpoint: :meth:`LiveEvents.expect_update`.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import threading
import time
from collections import OrderedDict
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from pydantic import ValidationError

from skalds.model.event import TaskEvent
from skalds.model.task import TaskLifecycleStatus
from skalds.plugins import Backends
from skalds.ports.event_bus import BusMessage, Topic
from skalds.shared_subscription import SharedSubscription
from skalds.utils.logging import logger
from skalds.utils.time import now_ms
from skalds_controller.api_summary import nodes_by_mode, tasks_by_status
from skalds_controller.errors import ApiError
from skalds_controller.live_metrics import Metrics, metrics_of
from skalds_controller.live_nodes import NodeWatcher
from skalds_controller.live_stream import LiveClient, LiveEvent, UpdateWaiter

if TYPE_CHECKING:
    from fastapi import FastAPI

__all__ = ["LiveEvents", "live_events_of"]

_TOPIC_NAMES = [
    t.value
    for t in (Topic.TASKWORKER_UPDATE, Topic.TASK_CREATED, Topic.TASK_ASSIGN, Topic.TASK_CANCEL)
]
_UPDATE_TITLES = {"UpdateApplied": True, "UpdateFailed": False}
_STATUSES = {s.value: s for s in TaskLifecycleStatus}
_SOURCE = "live"
_STATUS_GAP_SECONDS = 0.1
_STATUS_SHARE = 0.1
"""At most this share of the time goes to recounting tasks for the status stream: a
store where counting is a scan (FerretDB) gets fewer summaries, not a busy server."""
_install_lock = threading.Lock()


class LiveEvents:
    """Fans task and node changes out to SSE clients, each with a bounded queue."""

    def __init__(
        self,
        backends: Backends,
        *,
        group: str,
        metrics: Metrics | None = None,
        poll_interval: float = 0.5,
        keepalive_seconds: float = 15.0,
        queue_size: int = 1000,
        max_clients: int = 1000,
        max_tracked_tasks: int = 10_000,
        events: SharedSubscription | None = None,
    ) -> None:
        self.backends = backends
        self.group = group
        self.metrics = metrics or Metrics()
        self.poll_interval = poll_interval
        self.keepalive_seconds = keepalive_seconds
        self.queue_size = queue_size
        self.max_clients = max_clients
        self.max_tracked_tasks = max_tracked_tasks
        self.watcher = NodeWatcher(backends.cache, max_tasks=max_tracked_tasks)
        self._lock = threading.Lock()
        self._clients: list[LiveClient] = []
        self._waiters: dict[str, list[UpdateWaiter]] = {}
        self._last_status: OrderedDict[str, str] = OrderedDict()
        self._seq = itertools.count(1)
        self._status_dirty = threading.Event()
        self._last_summary: dict[str, Any] | None = None
        self._stop = threading.Event()
        self._started = False
        self._own_events = events is None
        self._events = events or SharedSubscription(
            backends.event_bus, group, _TOPIC_NAMES, name="live events"
        )
        self._thread: threading.Thread | None = None

    # -- lifecycle ----------------------------------------------------------------------

    def start(self) -> None:
        """Subscribe to the bus and start watching the registry (idempotent)."""
        with self._lock:
            if self._started:
                return
            self._started = True
        self._events.follow(_TOPIC_NAMES, self._on_message)
        self._thread = threading.Thread(target=self._loop, name="skalds-live-events", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop following the bus and the watcher thread."""
        self._stop.set()
        self._status_dirty.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self._events.unfollow(self._on_message)
        if self._own_events:
            self._events.close()

    def _loop(self) -> None:
        next_poll = 0.0
        while not self._stop.is_set():
            if time.monotonic() >= next_poll:
                next_poll = time.monotonic() + self.poll_interval
                self._poll_nodes()
            if self._status_dirty.is_set():
                self._status_dirty.clear()
                began = time.monotonic()
                self._push_status()
                took = time.monotonic() - began
                # one summary for a burst of changes
                self._stop.wait(max(_STATUS_GAP_SECONDS, took / _STATUS_SHARE))
            # Task changes wake the loop early; the registry is re-read on its own cadence.
            self._status_dirty.wait(max(0.0, next_poll - time.monotonic()))

    def _poll_nodes(self) -> None:
        try:
            changes = self.watcher.poll()
        except Exception as exc:
            logger.warning("live events: cannot read the node registry: %s", exc)
            return
        for change in changes:
            self.emit("skalds", change.kind, change.node)
        if any(change.kind != "skald.heartbeat" for change in changes):
            self._status_dirty.set()  # online counts or capacity may have changed

    # -- clients ------------------------------------------------------------------------

    def connect(self, stream: str, task_id: str | None = None) -> LiveClient:
        """Register an SSE client; call it on the client's event loop."""
        client = LiveClient(stream, asyncio.get_running_loop(), self.queue_size, task_id)
        with self._lock:
            self._clients.append(client)
        self.metrics.sse_client(+1)
        return client

    def check_capacity(self) -> None:
        """Refuse a new connection (503) when ``max_clients`` are connected."""
        if self.client_count >= self.max_clients:
            raise ApiError(
                503, "SERVICE_UNAVAILABLE", f"too many live connections ({self.max_clients})"
            )

    def disconnect(self, client: LiveClient) -> None:
        """Forget a client (its connection closed)."""
        with self._lock:
            if client not in self._clients:
                return
            self._clients.remove(client)
        self.metrics.sse_client(-1)
        self.metrics.sse_dropped_events(client.take_dropped())

    @property
    def client_count(self) -> int:
        with self._lock:
            return len(self._clients)

    def emit(
        self, stream: str, name: str, data: dict[str, Any], task_id: str | None = None
    ) -> None:
        """Send an event to every client following ``stream`` (thread-safe)."""
        event = LiveEvent(stream, name, data, task_id, next(self._seq))
        with self._lock:
            targets = [c for c in self._clients if c.wants(event)]
        for client in targets:
            try:
                client.loop.call_soon_threadsafe(client.offer, event)
            except RuntimeError:  # its event loop is gone: so is the connection
                self.disconnect(client)

    # -- status summary -----------------------------------------------------------------

    def summary(self, *, fresh: bool = False) -> dict[str, Any]:
        """Tasks by status and nodes online/offline, as the status stream sends them.

        Args:
            fresh: re-read the node registry first (the hub's own loop just did).
        """
        nodes = self.watcher.refresh() if fresh else self.watcher.nodes()
        online = sum(1 for n in nodes if n.online)
        return {
            "tasks": tasks_by_status(self.backends.store),
            "nodes": {
                "online": online,
                "offline": len(nodes) - online,
                "byMode": nodes_by_mode(nodes),
            },
        }

    def _push_status(self) -> None:
        with self._lock:
            wanted = any(c.stream == "status" for c in self._clients)
        if not wanted:
            self._last_summary = None  # the next client starts from its own snapshot
            return
        try:
            summary = self.summary()
        except Exception as exc:
            logger.warning("live events: cannot compute the status summary: %s", exc)
            return
        if summary != self._last_summary:
            self._last_summary = summary
            self.emit("status", "status", {**summary, "at": now_ms()})

    # -- attachment update acknowledgements ---------------------------------------------

    @contextlib.contextmanager
    def expect_update(self, task_id: str) -> Iterator[UpdateWaiter]:
        """Wait for the node's answer to an update published inside this block."""
        waiter = UpdateWaiter(task_id)
        with self._lock:
            self._waiters.setdefault(task_id, []).append(waiter)
        try:
            yield waiter
        finally:
            with self._lock:
                waiting = self._waiters.get(task_id, [])
                if waiter in waiting:
                    waiting.remove(waiter)
                if not waiting:
                    self._waiters.pop(task_id, None)

    # -- bus events ---------------------------------------------------------------------

    def _on_message(self, msg: BusMessage) -> None:
        try:
            event = TaskEvent.model_validate_json(msg.value)
        except ValidationError:
            logger.warning("live events: %s is not a task event; skipped", msg.where())
            self.metrics.event_failed(_SOURCE)
            return
        try:
            for task_id in event.task_ids:
                if msg.topic == Topic.TASKWORKER_UPDATE.value:
                    self._on_worker_update(task_id, event)
                else:
                    self._on_command(task_id, msg.topic)
        except Exception as exc:
            logger.warning("live events: cannot handle %s: %s", msg.where(), exc)
            self.metrics.event_failed(_SOURCE)
            return
        self.metrics.event_handled(_SOURCE)

    def _on_worker_update(self, task_id: str, event: TaskEvent) -> None:
        title = event.title or ""
        if title in _UPDATE_TITLES:
            applied = _UPDATE_TITLES[title]
            with self._lock:
                waiters = list(self._waiters.get(task_id, ()))
            reason = None if applied else event.message
            for waiter in waiters:
                waiter.resolve(applied, event.initiator, reason)
            data = {"taskId": task_id, "applied": applied, "node": event.initiator}
            if reason:
                data["reason"] = reason
            self.emit("tasks", "task.update", {**data, "at": event.update_date_time}, task_id)
        elif title in _STATUSES:
            self._task_status(task_id, title, event.initiator, event.update_date_time)

    def _on_command(self, task_id: str, topic: str) -> None:
        with self._lock:
            followed = any(
                c.stream == "tasks" and c.task_id in (None, task_id) for c in self._clients
            )
        if not followed:
            # Nobody to tell: spare the store a read per command (it is the hot path
            # when tasks arrive by the hundred); status summaries are recounted anyway.
            with self._lock:
                self._last_status.pop(task_id, None)
            self._status_dirty.set()
            return
        task = self.backends.store.get_task(task_id)
        if task is not None:
            status = task.lifecycle_status.value
            self._task_status(task_id, status, task.executor, task.update_date_time, topic)

    def _task_status(
        self, task_id: str, status: str, node: str | None, at: int, topic: str | None = None
    ) -> None:
        """Emit a status change once (replays and echoes of the same status are dropped)."""
        with self._lock:
            if self._last_status.get(task_id) == status:
                return
            self._last_status[task_id] = status
            self._last_status.move_to_end(task_id)
            while len(self._last_status) > self.max_tracked_tasks:
                self._last_status.popitem(last=False)
        data = {"taskId": task_id, "status": status, "node": node, "at": at}
        if topic:
            data["cause"] = topic
        self.emit("tasks", "task.status", data, task_id)
        self._status_dirty.set()


def live_events_of(app: FastAPI) -> LiveEvents:
    """The application's hub on ``app.state.live_events``, created and started on first use.

    The events router's lifespan starts it with the application and stops it after.
    """
    with _install_lock:
        hub = getattr(app.state, "live_events", None)
        if not isinstance(hub, LiveEvents):
            context = app.state.context
            hub = LiveEvents(
                context.backends,
                group=f"{context.tasks.initiator}.live-events",
                metrics=metrics_of(app),
                events=context.events,
            )
            app.state.live_events = hub
    hub.start()
    return hub
