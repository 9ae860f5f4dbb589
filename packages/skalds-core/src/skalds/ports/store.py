"""Store port: the durable task documents, the source of truth.

Every status change goes through :meth:`Store.update_task` with the statuses the
caller expects, an atomic compare-and-set: two controllers or a replayed event can
never move one task twice. A node also names the executor and the incarnation it
runs (the fencing token, see :class:`~skalds.model.task.Task`): its writes change
only its own run of a task, never a later one elsewhere.
"""

from __future__ import annotations

import abc
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from skalds.errors import TaskNotFoundError
from skalds.model.task import Task, TaskLifecycleStatus

__all__ = ["Increment", "Store", "TaskQuery"]


@dataclass(frozen=True)
class Increment:
    """A change that adds ``by`` to an integer field, in the same atomic update.

    ``{"attempts": Increment(1)}`` counts a start without reading the task first:
    a node starts an assigned task with one compare-and-set that also returns the
    task, instead of a read and then a write.
    """

    by: int = 1

    def __post_init__(self) -> None:
        if isinstance(self.by, bool) or not isinstance(self.by, int):
            raise TypeError(f"Increment(by=...) takes an int, not {self.by!r}")


@dataclass(frozen=True)
class TaskQuery:
    """Filters for :meth:`Store.list_tasks`; ``None`` means "any"."""

    statuses: Collection[TaskLifecycleStatus] | None = None
    executor: str | None = None
    class_name: str | None = None
    id_prefix: str | None = None
    offset: int = 0
    limit: int | None = None


class Store(abc.ABC):
    """Durable tasks. Documents are exchanged as :class:`~skalds.model.task.Task`.

    ``changes`` given to :meth:`update_task` use the Python field names
    (``lifecycle_status``, ``executor``, ``attachments``...); ``update_date_time``
    is set by the store on every change, and a change of ``attachments`` adds one to
    ``attachments_version`` (unless the changes set it), whoever writes it.
    """

    @abc.abstractmethod
    def create_task(self, task: Task) -> Task:
        """Insert a new task; raise ``TaskExistsError`` when the id is taken."""

    @abc.abstractmethod
    def get_task(self, task_id: str) -> Task | None:
        """Return the task, ``None`` when there is none. Attachments come back as a dict."""

    @abc.abstractmethod
    def list_tasks(self, query: TaskQuery | None = None) -> list[Task]:
        """Return matching tasks, highest priority first, then oldest first."""

    @abc.abstractmethod
    def update_task(
        self,
        task_id: str,
        changes: Mapping[str, Any],
        *,
        expected_status: Collection[TaskLifecycleStatus] | None = None,
        expected_executor: str | None = None,
        expected_incarnation: int | None = None,
    ) -> Task | None:
        """Apply ``changes`` atomically if the status is one of ``expected_status``.

        Args:
            changes: Python field names to new values; an :class:`Increment` adds to
                the stored integer instead.
            expected_status: the statuses the task must have (``None``: any).
            expected_executor: the executor the task must have (``None``: any).
            expected_incarnation: the incarnation the task must have (``None``: any;
                a document without one is incarnation 0).

        Returns:
            The updated task, or ``None`` when the status, executor or incarnation
            did not match.

        Raises:
            TaskNotFoundError: no task has this id.
        """

    def update_tasks(
        self,
        task_ids: Sequence[str],
        changes: Mapping[str, Any],
        *,
        expected_status: Collection[TaskLifecycleStatus],
        expected_incarnations: Mapping[str, int] | None = None,
    ) -> list[str]:
        """Apply the same ``changes`` to each task whose status is one of ``expected_status``.

        Each task is its own compare-and-set, as with :meth:`update_task`; this only
        saves round trips (the dispatcher assigns a batch of tasks to one node this
        way). The default makes one :meth:`update_task` per task; a store that can
        send them together overrides it.

        Args:
            task_ids: the tasks (distinct ids).
            changes: as for :meth:`update_task` (increments included).
            expected_status: the statuses a task must have to be changed.
            expected_incarnations: the incarnation each task must have, by id (a
                task missing from it may have any).

        Returns:
            The ids of the tasks changed, in the order given; a task that is gone,
            or whose status did not match, is left out.

        Raises:
            ValueError: a change the Task model refuses (nothing is written).
            Exception: a store error; tasks before it may have been changed (a
                caller that must know reads them again).
        """
        changed = []
        incarnations = expected_incarnations or {}
        for task_id in task_ids:
            try:
                moved = self.update_task(
                    task_id,
                    changes,
                    expected_status=expected_status,
                    expected_incarnation=incarnations.get(task_id),
                )
            except TaskNotFoundError:
                continue
            if moved is not None:
                changed.append(task_id)
        return changed

    @abc.abstractmethod
    def delete_task(self, task_id: str) -> bool:
        """Delete a task; return whether it existed."""

    def count_tasks(self, query: TaskQuery | None = None) -> int:
        """Return how many tasks match (default: counts ``list_tasks``)."""
        q = query or TaskQuery()
        unpaged = TaskQuery(q.statuses, q.executor, q.class_name, q.id_prefix)
        return len(self.list_tasks(unpaged))

    def count_by_status(self, query: TaskQuery | None = None) -> dict[TaskLifecycleStatus, int]:
        """Return how many tasks match, per status: every status present, zeros included.

        ``query.statuses`` limits the statuses counted (the others are 0); paging is
        ignored. The default asks :meth:`count_tasks` once per status; a store that
        can count them all in one pass over its tasks should override it.

        Args:
            query: the tasks to count; ``None`` counts them all.

        Returns:
            A count for every :class:`~skalds.model.task.TaskLifecycleStatus`.
        """
        q = query or TaskQuery()
        wanted = None if q.statuses is None else {TaskLifecycleStatus(s) for s in q.statuses}
        return {
            status: self.count_tasks(replace(q, statuses={status}, offset=0, limit=None))
            if wanted is None or status in wanted
            else 0
            for status in TaskLifecycleStatus
        }

    def ping(self) -> bool:
        """Return True when the backend answers (default: always)."""
        return True

    def close(self) -> None:  # noqa: B027 - optional lifecycle
        """Release connections."""
