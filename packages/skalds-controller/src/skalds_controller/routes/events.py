"""``/api/events/*``: Server-Sent Events pushed when tasks, nodes or totals change.

Each stream starts with one event describing the present state (``snapshot`` or
``status``), then sends changes as they happen; an idle stream carries a keep-alive
comment. ``EventSource`` clients that cannot set headers pass ``?token=``.
Live events run in the ``MONITOR`` and ``DISPATCHER`` modes.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from typing import Annotated, Any

from fastapi import APIRouter, Depends, FastAPI, Query, Request
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from skalds.utils.logging import logger
from skalds.utils.time import now_ms
from skalds_controller.deps import Context, get_context
from skalds_controller.errors import ApiError
from skalds_controller.live_events import LiveEvents, live_events_of
from skalds_controller.live_stream import LiveClient, LiveEvent, sse_comment
from skalds_controller.settings import ControllerMode

__all__ = ["router"]

_ID_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9._:/-]{0,199}$"
_RETRY_MS = 2000


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Start the hub with the application so no change is missed before the first client."""
    hub = live_events_of(app)
    try:
        yield
    finally:
        hub.stop()
        app.state.live_events = None


router = APIRouter(prefix="/api/events", tags=["events"], lifespan=_lifespan)
Ctx = Annotated[Context, Depends(get_context)]

_SSE_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {"text/event-stream": {}}, "description": "an endless event stream"},
    503: {"description": "live events do not run in CONTROLLER mode"},
}


def _hub(request: Request, ctx: Ctx) -> LiveEvents:
    if not ctx.settings.runs(ControllerMode.MONITOR):
        raise ApiError(
            503,
            "SERVICE_UNAVAILABLE",
            "live events run in the MONITOR and DISPATCHER modes; "
            f"this controller runs {ctx.settings.mode.value}",
        )
    hub = live_events_of(request.app)
    hub.check_capacity()
    return hub


Hub = Annotated[LiveEvents, Depends(_hub)]


@router.get("/skalds", responses=_SSE_RESPONSE, response_class=StreamingResponse)
async def skald_events(hub: Hub) -> StreamingResponse:
    """Nodes joining, leaving or changing (tasks, capacity, classes)."""

    def snapshot() -> list[LiveEvent]:
        items = [n.to_json() for n in hub.watcher.refresh()]
        return [LiveEvent("skalds", "snapshot", {"items": items, "at": now_ms()})]

    return _respond(hub, "skalds", None, snapshot)


@router.get("/tasks", responses=_SSE_RESPONSE, response_class=StreamingResponse)
async def task_events(
    ctx: Ctx,
    hub: Hub,
    task_id: Annotated[str | None, Query(alias="taskId", pattern=_ID_PATTERN)] = None,
) -> StreamingResponse:
    """Task status changes (``task.status``) and attachment updates applied (``task.update``)."""

    def snapshot() -> list[LiveEvent]:
        items = []
        task = ctx.backends.store.get_task(task_id) if task_id else None
        if task is not None:
            items.append(
                {"taskId": task.id, "status": task.lifecycle_status.value, "node": task.executor}
            )
        return [LiveEvent("tasks", "snapshot", {"items": items, "at": now_ms()}, task_id)]

    return _respond(hub, "tasks", task_id, snapshot)


@router.get("/status", responses=_SSE_RESPONSE, response_class=StreamingResponse)
async def status_events(hub: Hub) -> StreamingResponse:
    """Tasks by status and nodes online/offline, sent again whenever a figure changes."""

    def snapshot() -> list[LiveEvent]:
        return [LiveEvent("status", "status", {**hub.summary(fresh=True), "at": now_ms()})]

    return _respond(hub, "status", None, snapshot)


def _respond(
    hub: LiveEvents,
    stream: str,
    task_id: str | None,
    snapshot: Callable[[], list[LiveEvent]],
) -> StreamingResponse:
    return StreamingResponse(
        _events(hub, stream, task_id, snapshot),
        media_type="text/event-stream",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )


async def _events(
    hub: LiveEvents,
    stream: str,
    task_id: str | None,
    snapshot: Callable[[], list[LiveEvent]],
) -> AsyncIterator[str]:
    """The stream of one connection; it unregisters however the connection ends."""
    client = hub.connect(stream, task_id)
    try:
        yield f"retry: {_RETRY_MS}\n\n"
        try:
            first = await run_in_threadpool(snapshot)
        except Exception as exc:  # the stream has started: say so in-band, keep streaming
            logger.warning("live events: cannot read the %s snapshot: %s", stream, exc)
            problem = {"code": "SERVICE_UNAVAILABLE", "error": "the current state is unreadable"}
            first = [LiveEvent(stream, "error", problem, task_id)]
        for event in first:
            yield event.to_sse()
        async for chunk in _changes(hub, client):
            yield chunk
    finally:
        hub.disconnect(client)


async def _changes(hub: LiveEvents, client: LiveClient) -> AsyncIterator[str]:
    while True:
        event = await client.next(hub.keepalive_seconds)
        dropped = client.take_dropped()
        if dropped:
            hub.metrics.sse_dropped_events(dropped)
            yield LiveEvent(client.stream, "lagged", {"dropped": dropped}).to_sse()
        # A gone client is noticed by the response itself (it listens for the disconnect,
        # and a write to a closed socket fails): polling request.is_disconnected() here
        # would race that listener for the same receive channel.
        yield event.to_sse() if event is not None else sse_comment("keep-alive")
