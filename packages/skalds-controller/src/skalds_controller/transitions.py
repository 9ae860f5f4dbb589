"""Status changes the controller makes itself (dispatcher, monitor), told to everyone.

Each change is a compare-and-set in the store; when it took effect it is announced
on ``taskworker.update`` with the new status as the title, like a node announces its
own changes, so live views and other controllers see controller-made changes too.
"""

from __future__ import annotations

from collections.abc import Collection
from typing import Any

from skalds.errors import TaskNotFoundError
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.plugins import Backends
from skalds.ports.event_bus import Topic
from skalds.utils.logging import logger
from skalds.utils.time import now_ms

__all__ = ["Transitions"]


class Transitions:
    """Compare-and-set status changes plus the events that tell nodes and viewers."""

    def __init__(self, backends: Backends, initiator: str) -> None:
        self.backends = backends
        self.initiator = initiator

    def move(
        self,
        task_id: str,
        expected: Collection[TaskLifecycleStatus],
        status: TaskLifecycleStatus,
        reason: str | None = None,
        *,
        expected_executor: str | None = None,
        expected_incarnation: int | None = None,
        **changes: Any,
    ) -> Task | None:
        """Set ``status`` (and ``changes``) if the task is in ``expected``; announce it.

        Args:
            expected_executor: only while the task is on this node (``None``: any).
            expected_incarnation: only while the task is in this run (``None``: any);
                with the executor, a decision about one run of a task (read before)
                never lands on a later run.

        Returns:
            The changed task, or ``None`` when it was not in ``expected`` (or not that
            run any more) or is gone.
        """
        fields: dict[str, Any] = {"lifecycle_status": status, **changes}
        if reason is not None:
            fields["error_message"] = reason
        try:
            moved = self.backends.store.update_task(
                task_id,
                fields,
                expected_status=expected,
                expected_executor=expected_executor,
                expected_incarnation=expected_incarnation,
            )
        except TaskNotFoundError:
            return None
        if moved is not None:
            # Handed over without waiting, as the store holds the change: a pass that
            # fails a thousand tasks (a failed dependency) does not wait a thousand
            # times for the broker.
            self.publish(
                Topic.TASKWORKER_UPDATE,
                task_id,
                title=status.value,
                event_id=f"{task_id}:{status.value}:{now_ms()}",
                wait=False,
            )
        return moved

    def move_run(
        self,
        task: Task,
        expected: Collection[TaskLifecycleStatus],
        status: TaskLifecycleStatus,
        reason: str | None = None,
        **changes: Any,
    ) -> Task | None:
        """:meth:`move` the run of ``task`` read before deciding: only while the store
        still holds it on the same executor in the same incarnation."""
        return self.move(
            task.id,
            expected,
            status,
            reason,
            expected_executor=task.executor,
            expected_incarnation=task.incarnation,
            **changes,
        )

    def publish(
        self,
        topic: Topic,
        task_id: str,
        *,
        recipient: str | None = None,
        title: str | None = None,
        event_id: str | None = None,
        incarnation: int | None = None,
        wait: bool = True,
    ) -> bool:
        """Publish one task event; False (logged) when the bus refuses it.

        The store already holds the change, so a lost event only delays its effect
        (nodes and dispatchers reconcile from the store).

        Args:
            incarnation: the run of the task the event is about (nodes ignore an
                event for an older run).
            wait: wait for the bus to confirm the event. ``False`` hands it over and
                returns True at once (a delivery that fails later is logged by the bus):
                for callers that do not act on the outcome.
        """
        event = TaskEvent(
            task_ids=[task_id],
            initiator=self.initiator,
            recipient=recipient,
            title=title,
            id=event_id,
            incarnation=incarnation,
        )
        bus = self.backends.event_bus
        try:
            if wait:
                bus.publish(topic.value, task_id, event.model_dump_json())
            else:
                bus.publish_nowait(topic.value, task_id, event.model_dump_json())
        except Exception as exc:
            logger.warning("could not publish %s for task %s: %s", topic.value, task_id, exc)
            return False
        return True
