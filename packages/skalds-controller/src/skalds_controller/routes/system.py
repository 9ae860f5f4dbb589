"""``/`` and ``/api/system``: what runs, whether its backends answer, and the totals."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Request
from pydantic import BaseModel, ConfigDict, field_validator

from skalds.__about__ import __version__
from skalds.model.task import ACTIVE_STATUSES
from skalds.plugins import redact_url
from skalds.utils.time import now_ms
from skalds_controller.api_summary import nodes_by_mode, recent_failures, tasks_by_status
from skalds_controller.deps import Context, get_context
from skalds_controller.dispatcher import Dispatcher
from skalds_controller.errors import ApiError
from skalds_controller.live_events import live_events_of
from skalds_controller.live_metrics import metrics_of
from skalds_controller.nodes import NodeInfo
from skalds_controller.settings import ControllerMode, DispatchStrategy

router = APIRouter(tags=["system"])
Ctx = Annotated[Context, Depends(get_context)]


@router.get("/")
def root(ctx: Ctx) -> dict[str, Any]:
    return {
        "name": "Skalds System Controller",
        "version": __version__,
        "mode": ctx.settings.mode.value,
        "docs": "/api/docs",
    }


@router.get("/api/system/health")
def health(ctx: Ctx) -> dict[str, Any]:
    """Each backend's real state (a ping), and the overall verdict."""
    s = ctx.settings
    checks = {}
    for name, backend, url in (
        ("eventBus", ctx.backends.event_bus, s.resolved_event_bus_url()),
        ("cache", ctx.backends.cache, s.resolved_cache_url()),
        ("store", ctx.backends.store, s.resolved_store_url()),
    ):
        try:
            ok = bool(backend.ping())
        except Exception:
            ok = False
        checks[name] = {"status": "up" if ok else "down", "url": redact_url(url)}
    healthy = all(c["status"] == "up" for c in checks.values())
    return {"status": "healthy" if healthy else "unhealthy", "backends": checks}


def _nodes(request: Request) -> list[NodeInfo]:
    return live_events_of(request.app).watcher.refresh()


@router.get("/api/system/status")
def status(request: Request, ctx: Ctx) -> dict[str, Any]:
    """What this controller runs, since when, and how much it looks after."""
    s = ctx.settings
    metrics = metrics_of(request.app)
    nodes = _nodes(request)
    online = sum(1 for n in nodes if n.online)
    by_status = tasks_by_status(ctx.backends.store)
    return {
        "controllerId": ctx.tasks.initiator,
        "mode": s.mode.value,
        "version": __version__,
        "startedAt": metrics.started_ms,
        "uptimeSeconds": round(metrics.uptime_seconds, 3),
        "runs": {
            "api": True,
            "monitor": s.runs(ControllerMode.MONITOR),
            "liveEvents": s.runs(ControllerMode.MONITOR),
            "dispatcher": s.runs(ControllerMode.DISPATCHER),
        },
        "dispatcherStrategy": s.dispatcher_strategy.value,
        "counts": {
            "tasks": sum(by_status.values()),
            "activeTasks": sum(by_status[st.value] for st in ACTIVE_STATUSES),
            "nodesOnline": online,
            "nodesOffline": len(nodes) - online,
            "liveClients": live_events_of(request.app).client_count,
        },
    }


@router.get("/api/system/dashboard/summary")
def dashboard_summary(request: Request, ctx: Ctx) -> dict[str, Any]:
    """Tasks by status, nodes online/offline by mode, free capacity, recent failures."""
    nodes = _nodes(request)
    online = [n for n in nodes if n.online]
    by_status = tasks_by_status(ctx.backends.store)
    capacity = {"maxWorkers": 0, "running": 0, "free": 0}
    for node in online:
        for key in capacity:
            value = node.capacity.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                capacity[key] += value
    return {
        "tasks": {"total": sum(by_status.values()), "byStatus": by_status},
        "nodes": {
            "online": len(online),
            "offline": len(nodes) - len(online),
            "byMode": nodes_by_mode(nodes),
        },
        "capacity": capacity,
        "recentFailures": recent_failures(ctx.backends.store),
        "at": now_ms(),
    }


@router.get("/api/system/metrics")
def system_metrics(request: Request, ctx: Ctx) -> dict[str, Any]:
    """The figures of ``/metrics`` as JSON (dispatch latency percentiles in ms)."""
    nodes = _nodes(request)
    online = sum(1 for n in nodes if n.online)
    return {
        **metrics_of(request.app).snapshot(),
        "tasks": tasks_by_status(ctx.backends.store),
        "nodes": {"online": online, "offline": len(nodes) - online},
    }


class StrategyChange(BaseModel):
    """Body of ``PUT /api/system/dispatcher/strategy``."""

    model_config = ConfigDict(extra="forbid")

    strategy: DispatchStrategy

    @field_validator("strategy", mode="before")
    @classmethod
    def _upper(cls, value: Any) -> Any:
        return value.strip().upper() if isinstance(value, str) else value


def _dispatcher(ctx: Context) -> Dispatcher:
    """This process's dispatcher, or 409 when its mode runs none."""
    dispatcher = ctx.background.dispatcher if ctx.background else None
    if dispatcher is None:
        raise ApiError(
            409,
            "CONFLICT",
            f"this controller runs no dispatcher (mode {ctx.settings.mode.value}); "
            "only a controller started with SYSTEM_CONTROLLER_MODE=DISPATCHER has one",
            {"mode": ctx.settings.mode.value},
        )
    return dispatcher


@router.get("/api/system/dispatcher")
def dispatcher_state(ctx: Ctx) -> dict[str, Any]:
    """This controller's dispatcher: strategy, whether it leads, what it has done.

    ``leading`` says whether this process holds the dispatcher lease (only the leader
    places tasks); ``leaseHolder`` names the controller that does. 409 when this
    controller's mode runs no dispatcher.
    """
    return _dispatcher(ctx).describe()


@router.put("/api/system/dispatcher/strategy")
def set_dispatcher_strategy(ctx: Ctx, body: StrategyChange) -> dict[str, Any]:
    """Switch how this controller's dispatcher picks a node, from its next pass on.

    The switch is per controller process and not persisted: other controllers keep
    their own strategy, and a restart goes back to ``DISPATCHER_STRATEGY``. Only the
    controller holding the dispatcher lease (``leading`` in the answer) places tasks,
    so with several controllers switch each of them (or set ``DISPATCHER_STRATEGY``).
    An unknown strategy is 422 with the valid ones; 409 when this controller's mode
    runs no dispatcher.
    """
    dispatcher = _dispatcher(ctx)
    dispatcher.set_strategy(body.strategy)
    return dispatcher.describe()
