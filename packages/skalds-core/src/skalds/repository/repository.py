"""``TaskRepository``: the seed's task CRUD API, over any store backend.

Scripts written for Skalds pass a ``MongoProxy``; anything with a ``store``
attribute (a proxy) or a :class:`~skalds.ports.store.Store` itself works, so the
same script runs against MongoDB or the in-memory store.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from pydantic import BaseModel

from skalds.errors import ConfigError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import Increment, Store, TaskQuery
from skalds.utils.logging import logger

__all__ = ["TaskRepository"]


def _as_store(backend: Any) -> Store:
    if isinstance(backend, Store):
        return backend
    store = getattr(backend, "store", None)
    if isinstance(store, Store):
        return store
    raise ConfigError(f"TaskRepository needs a MongoProxy or a Store, got {type(backend).__name__}")


class TaskRepository:
    """Create, read and change tasks in the store."""

    def __init__(self, mongo_proxy: Any = None) -> None:
        if mongo_proxy is None:
            raise ConfigError("TaskRepository needs a MongoProxy (or a Store)")
        self.store = _as_store(mongo_proxy)

    def create_task(self, task: Task) -> Task:
        """Insert ``task``; raises ``TaskExistsError`` when its id is taken."""
        created = self.store.create_task(task)
        logger.info("task created with id: %s", task.id)
        return created

    def get_task_by_task_id(self, id: str, strict_mode: bool = True) -> Task | None:
        """Return the task (attachments as a dict), or ``None``."""
        return self.store.get_task(id)

    def update_executor(self, id: str, executor: str) -> Task | None:
        """Set the node that should run the task (the seeds' manual assignment).

        A placement: the task's incarnation goes up by one, so a run it had before
        (on this node or another) can no longer change it.
        """
        return self.store.update_task(id, {"executor": executor, "incarnation": Increment(1)})

    def update_attachments(self, id: str, attachments: BaseModel | dict[str, Any]) -> Task | None:
        """Replace the task's attachments (stored by alias); their version goes up by one."""
        return self.store.update_task(id, {"attachments": attachments})

    def update_lifecycle_status(
        self,
        id: str,
        lifecycle_status: TaskLifecycleStatus | str,
        expected_status: Collection[TaskLifecycleStatus] | None = None,
    ) -> Task | None:
        """Change the status; with ``expected_status`` only from those (compare-and-set)."""
        return self.store.update_task(
            id,
            {"lifecycle_status": TaskLifecycleStatus(lifecycle_status)},
            expected_status=expected_status,
        )

    def update_priority(self, id: str, priority: int) -> Task | None:
        """Change the priority (0-10)."""
        return self.store.update_task(id, {"priority": priority})

    def get_tasks_by_lifecycle_status(self, *statuses: TaskLifecycleStatus | str) -> list[Task]:
        """Return the tasks in any of ``statuses``."""
        return self.store.list_tasks(TaskQuery(statuses=[TaskLifecycleStatus(s) for s in statuses]))

    def get_tasks_by_executor(self, executor: str) -> list[Task]:
        """Return the tasks assigned to ``executor``."""
        return self.store.list_tasks(TaskQuery(executor=executor))

    def delete_task(self, id: str) -> bool:
        """Delete the task; return whether it existed."""
        return self.store.delete_task(id)
