"""``/api/skalds``: the nodes (Skalds) the controller knows, from what they publish.

A node is online while its entry in ``skalds:hash`` lives (it is refreshed every
heartbeat and expires on its own); nodes that went away stay listed as offline.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, Path, Query, Request

from skalds.model.task import ACTIVE_STATUSES
from skalds.node import keys
from skalds.ports.store import TaskQuery
from skalds_controller.api_summary import nodes_by_mode
from skalds_controller.deps import Context, get_context
from skalds_controller.errors import ApiError
from skalds_controller.live_events import live_events_of
from skalds_controller.nodes import NodeInfo

__all__ = ["router"]

router = APIRouter(prefix="/api/skalds", tags=["skalds"])
Ctx = Annotated[Context, Depends(get_context)]
SkaldId = Annotated[str, Path(min_length=1, max_length=200)]
_NUMERIC_CAPACITY = ("maxWorkers", "running", "free")


def _nodes(request: Request) -> list[NodeInfo]:
    return live_events_of(request.app).watcher.refresh()


def _node(request: Request, skald_id: str) -> NodeInfo:
    node = next((n for n in _nodes(request) if n.id == skald_id), None)
    if node is None:
        raise ApiError(404, "SKALD_NOT_FOUND", f"skald {skald_id!r} not found")
    return node


@router.get("")
def list_skalds(
    request: Request,
    kind: Annotated[Literal["edge", "node"] | None, Query(alias="type")] = None,
    status: Annotated[Literal["online", "offline"] | None, Query()] = None,
) -> dict[str, Any]:
    """Known nodes, optionally only one mode (``type``) or one ``status``."""
    items = [
        n.to_json()
        for n in _nodes(request)
        if (kind is None or n.mode == kind)
        and (status is None or (n.online if status == "online" else not n.online))
    ]
    return {"items": items, "total": len(items)}


@router.get("/summary/statistics")
def statistics(request: Request) -> dict[str, Any]:
    """Totals over the nodes: online/offline by mode, capacity, classes and who runs them."""
    nodes = _nodes(request)
    online = [n for n in nodes if n.online]
    capacity = dict.fromkeys(_NUMERIC_CAPACITY, 0)
    classes: dict[str, int] = {}
    for node in online:
        for key in _NUMERIC_CAPACITY:
            value = node.capacity.get(key)
            if isinstance(value, int) and not isinstance(value, bool):
                capacity[key] += value
        for name in node.workers:
            classes[name] = classes.get(name, 0) + 1
    return {
        "total": len(nodes),
        "online": len(online),
        "offline": len(nodes) - len(online),
        "byMode": nodes_by_mode(nodes),
        "capacity": capacity,
        "classNames": dict(sorted(classes.items())),
        "runningTasks": sum(len(n.task_ids) for n in online),
    }


@router.get("/{skald_id}")
def get_skald(request: Request, skald_id: SkaldId) -> dict[str, Any]:
    """One node: what it reports about itself, its worker classes and their schemas."""
    node = _node(request, skald_id)
    info = node.info
    return {
        **node.to_json(),
        "hostname": info.get("hostname"),
        "version": info.get("version"),
        "pid": info.get("pid"),
        "startedAt": info.get("startedAt"),
        "workers": list(node.workers.values()),
    }


@router.get("/{skald_id}/tasks")
def skald_tasks(request: Request, ctx: Ctx, skald_id: SkaldId) -> dict[str, Any]:
    """Tasks assigned to the node in the store, with what the node reports about each."""
    node = _node(request, skald_id)
    reported = {t["id"]: t for t in node.info.get("tasks", [])}
    stored = ctx.backends.store.list_tasks(
        TaskQuery(statuses=ACTIVE_STATUSES, executor=skald_id, limit=1000)
    )
    items = []
    for task in stored:
        live = reported.pop(task.id, {})
        items.append(_task_row(task.id, task.class_name, task.lifecycle_status.value, live))
    for task_id, live in sorted(reported.items()):  # running there, but not assigned to it
        items.append(_task_row(task_id, live.get("className"), None, live))
    return {"skaldId": skald_id, "items": items, "total": len(items)}


def _task_row(
    task_id: str, class_name: Any, status: str | None, live: dict[str, Any]
) -> dict[str, Any]:
    return {
        "id": task_id,
        "className": class_name,
        "lifecycleStatus": status,
        "reportedStatus": live.get("status"),
        "pid": live.get("pid"),
        "heartbeat": live.get("heartbeat"),
        "startedAt": live.get("startedAt"),
    }


@router.get("/{skald_id}/status")
def skald_status(request: Request, ctx: Ctx, skald_id: SkaldId) -> dict[str, Any]:
    """Whether the node is online, its last heartbeat and its load."""
    node = _node(request, skald_id)
    counter = ctx.backends.cache.get(keys.skald_heartbeat(skald_id))
    shown = node.to_json()
    return {
        "id": node.id,
        "mode": node.mode,
        "status": shown["status"],
        "lastHeartbeat": shown["lastHeartbeat"],
        "heartbeatAgeMs": shown["heartbeatAgeMs"],
        "heartbeat": int(counter) if counter and counter.lstrip("-").isdigit() else None,
        "runningTasks": len(node.task_ids),
        "capacity": node.capacity,
    }
