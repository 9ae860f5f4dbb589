"""Figures about tasks and nodes shared by the status, dashboard and metrics endpoints.

Computed from the store and the node registry on demand, so every controller reports
the same numbers whether or not it runs the monitor.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from skalds.model.task import TaskLifecycleStatus
from skalds.ports.store import Store, TaskQuery
from skalds_controller.nodes import NodeInfo

__all__ = ["nodes_by_mode", "recent_failures", "tasks_by_status"]

_FAILURE_SCAN_LIMIT = 1000
"""Failed tasks read to find the most recent ones (the store sorts by priority, not time)."""


def tasks_by_status(store: Store) -> dict[str, int]:
    """Count tasks per lifecycle status (every status present, zeros included)."""
    counts = store.count_by_status()  # one query, not one per status
    return {status.value: counts.get(status, 0) for status in TaskLifecycleStatus}


def nodes_by_mode(nodes: Iterable[NodeInfo]) -> dict[str, dict[str, int]]:
    """``{mode: {"online": n, "offline": n}}`` for the modes seen (``node`` always present)."""
    out: dict[str, dict[str, int]] = {"node": {"online": 0, "offline": 0}}
    for node in nodes:
        counts = out.setdefault(node.mode, {"online": 0, "offline": 0})
        counts["online" if node.online else "offline"] += 1
    return out


def recent_failures(store: Store, limit: int = 10) -> list[dict[str, Any]]:
    """The latest failed tasks with the reason the node or monitor recorded."""
    failed = store.list_tasks(
        TaskQuery(statuses={TaskLifecycleStatus.FAILED}, limit=_FAILURE_SCAN_LIMIT)
    )
    # latest first; a tie within the same millisecond goes to the task created later
    failed.sort(key=lambda t: (t.update_date_time, t.create_date_time), reverse=True)
    return [
        {
            "id": t.id,
            "className": t.class_name,
            "executor": t.executor,
            "reason": t.error_message or "no reason recorded",
            "attempts": t.attempts,
            "failedAt": t.update_date_time,
        }
        for t in failed[:limit]
    ]
