"""Cache key names (seed layout, kept so existing dashboards and scripts read them)."""

from __future__ import annotations

__all__ = [
    "HEARTBEAT_CANCELLED",
    "HEARTBEAT_FAILED",
    "HEARTBEAT_FINISHED",
    "SKALDS_HASH",
    "SKALDS_MODE_HASH",
    "skald_all_tasks",
    "skald_allowed_classes",
    "skald_heartbeat",
    "skald_info",
    "task_exception",
    "task_has_error",
    "task_heartbeat",
    "task_status",
]

SKALDS_HASH = "skalds:hash"
"""field = skald id, value = last heartbeat time (ms); each field expires on its own."""
SKALDS_MODE_HASH = "skalds:mode:hash"
"""field = skald id, value = ``edge`` or ``node``."""

HEARTBEAT_FINISHED = 200
HEARTBEAT_FAILED = -1
HEARTBEAT_CANCELLED = -2


def skald_heartbeat(skald_id: str) -> str:
    """The node's running heartbeat counter."""
    return f"skalds:{skald_id}:heartbeat"


def skald_allowed_classes(skald_id: str) -> str:
    """List of classNames the node can run."""
    return f"skalds:{skald_id}:allow-task-class-name"


def skald_all_tasks(skald_id: str) -> str:
    """List of the task ids running on the node."""
    return f"skalds:{skald_id}:all-task"


def skald_info(skald_id: str) -> str:
    """JSON: capacity, resources, worker schemas, tasks (what a dispatcher needs)."""
    return f"skalds:{skald_id}:info"


def task_heartbeat(task_id: str) -> str:
    """0-199 while running; 200 finished, -1 failed, -2 cancelled."""
    return f"task:{task_id}:heartbeat"


def task_has_error(task_id: str) -> str:
    """``true`` once the task reported an exception."""
    return f"task:{task_id}:has-error"


def task_exception(task_id: str) -> str:
    """The last exception text (with traceback) of the task."""
    return f"task:{task_id}:exception"


def task_status(task_id: str) -> str:
    """The lifecycle status as the node sees it right now."""
    return f"task:{task_id}:status"
