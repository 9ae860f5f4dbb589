"""What the API does to tasks, apart from HTTP: validate, store, tell the nodes.

The store is written first (it is the truth); events are hints for the nodes, so a
publish that fails is reported but does not undo the stored change — the node's
reconcile picks it up.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable
from typing import Any, Protocol

from jsonschema import Draft202012Validator

from skalds.errors import TaskExistsError
from skalds.model.task import ACTIVE_STATUSES, ModeEnum, Task, TaskLifecycleStatus
from skalds.plugins import Backends
from skalds.ports.event_bus import Topic
from skalds.utils.logging import logger
from skalds_controller.errors import ApiError
from skalds_controller.nodes import NodeDirectory
from skalds_controller.schemas import TaskCreate
from skalds_controller.transitions import Transitions

__all__ = ["TaskService"]

S = TaskLifecycleStatus


class Placer(Protocol):
    """Places a task as the API creates it (the controller's dispatcher)."""

    def place_on_create(self, task: Task) -> str | None: ...

    def unplace(self, task: Task) -> None: ...


class TaskService:
    """Task operations shared by the REST API, the CLI and the dispatcher."""

    def __init__(self, backends: Backends, nodes: NodeDirectory, initiator: str) -> None:
        self.backends = backends
        self.nodes = nodes
        self.initiator = initiator
        self._transitions = Transitions(backends, initiator)
        self.on_created: list[Callable[[Task], None]] = []
        """Called with each task created (this process's dispatcher takes it from here,
        or counts the place a task created with an executor takes, instead of reading
        it back from the store)."""
        self.placer: Placer | None = None
        """This process's dispatcher, when it may place a task as it is created (see
        ``Dispatcher.place_on_create``)."""

    # -- reading ----------------------------------------------------------------------

    def get(self, task_id: str) -> Task:
        task = self.backends.store.get_task(task_id)
        if task is None:
            raise ApiError(404, "TASK_NOT_FOUND", f"task {task_id!r} not found")
        return task

    # -- validation -------------------------------------------------------------------

    def check_attachments(self, class_name: str, attachments: dict[str, Any]) -> None:
        """Validate against the JSON Schema nodes publish; 422 naming each failing field.

        The schemas may be up to a second old (one read per request was a third of
        the cache traffic of a task flood); a className they lack is looked up fresh.
        """
        schemas = self.nodes.schemas(max_age=self.nodes.SCHEMAS_MAX_AGE)
        if class_name not in schemas:
            schemas = self.nodes.schemas()
        schema = schemas.get(class_name)
        if schema is None:
            known = sorted(schemas)
            raise ApiError(
                422,
                "VALIDATION_ERROR",
                f"unknown className {class_name!r}; online nodes run: {', '.join(known) or 'none'}",
                {"className": class_name, "known": known},
            )
        problems = [
            {
                "field": ".".join(str(p) for p in err.absolute_path) or "(attachments)",
                "message": err.message,
            }
            for err in Draft202012Validator(schema).iter_errors(attachments)
        ]
        if problems:
            raise ApiError(
                422, "VALIDATION_ERROR", f"attachments do not fit {class_name}", problems
            )

    # -- changes ----------------------------------------------------------------------

    def create(self, body: TaskCreate) -> Task:
        self.check_attachments(body.class_name, body.attachments)
        task = Task(
            id=body.id or f"task-{uuid.uuid4().hex[:12]}",
            class_name=body.class_name,
            source="API",
            name=body.name,
            description=body.description,
            priority=body.priority,
            dependencies=body.dependencies or None,
            is_persistent=body.is_persistent,
            executor=body.executor,
            mode=ModeEnum.PASSIVE,
            attachments=body.attachments,
            retry_policy=body.retry_policy,
            resources=body.resources,
            **({"deadline_date_time": body.deadline} if body.deadline else {}),
        )
        placer = self.placer if task.executor is None else None
        node_id = placer.place_on_create(task) if placer is not None else None
        if node_id is not None:  # placed now: stored and told as if assigned by hand
            task = task.model_copy(
                update={"executor": node_id, "lifecycle_status": TaskLifecycleStatus.ASSIGNING}
            )
        if task.executor is not None:
            task.incarnation = 1  # placed as it is created: its first run
        try:
            created = self.backends.store.create_task(task)
        except BaseException as exc:
            if placer is not None and node_id is not None:
                placer.unplace(task)
            if isinstance(exc, TaskExistsError):
                raise ApiError(409, "CONFLICT", f"task {task.id!r} already exists") from None
            raise
        for listener in self.on_created:  # this process's dispatcher, before the event
            try:
                listener(created)
            except Exception:  # the task is stored: the event and the reconcile still place it
                logger.exception("a task-created listener failed for %s", created.id)
        # The events below are handed over without waiting: the task is stored, and a
        # node (its reconcile) or a dispatcher (its periodic pass) finds it anyway.
        if created.executor:
            # assigned by hand, as the seed scripts do: tell that node now
            self.publish(
                Topic.TASK_ASSIGN,
                created.id,
                recipient=created.executor,
                incarnation=created.incarnation,
                wait=False,
            )
        else:
            # the other controllers react at once
            self.publish(Topic.TASK_CREATED, created.id, wait=False)
        return created

    def update_attachments(self, task_id: str, attachments: dict[str, Any]) -> tuple[Task, bool]:
        """Store new attachments, then tell the node; return (task, event published).

        The store adds one to the task's ``attachmentsVersion``; the node that runs it
        sends the worker the stored attachments and reports the version the worker
        applied, so a lost event only delays the update (the node's reconcile finds
        the stored version ahead of the applied one and sends it again).
        """
        task = self.get(task_id)
        self.check_attachments(task.class_name, attachments)
        updated = self.backends.store.update_task(task_id, {"attachments": attachments})
        assert updated is not None
        published = False
        if updated.lifecycle_status in (S.RUNNING, S.PAUSED):
            published = self.publish(
                Topic.TASK_UPDATE_ATTACHMENT, task_id, incarnation=updated.incarnation
            )
        return updated, published

    def cancel(self, task_id: str) -> Task:
        task = self.get(task_id)
        if task.lifecycle_status.is_final:
            raise ApiError(
                409, "INVALID_STATUS", f"task {task_id!r} is already {task.lifecycle_status.value}"
            )
        changed = self.backends.store.update_task(
            task_id, {"lifecycle_status": S.CANCELLED}, expected_status=ACTIVE_STATUSES
        )
        if changed is None:
            return self.get(task_id)
        self.publish(Topic.TASK_CANCEL, task_id, incarnation=changed.incarnation)
        return changed

    def requeue(self, task_id: str) -> Task:
        """Back to Created (a running worker is stopped first) so it is dispatched again."""
        task = self.get(task_id)
        if not task.lifecycle_status.is_final:
            self.cancel(task_id)
        changed = self.backends.store.update_task(
            task_id,
            {
                "lifecycle_status": S.CREATED,
                "executor": None,
                "error_message": None,
                "attempts": 0,
                "not_before": None,
            },
            expected_status={S.FINISHED, S.FAILED, S.CANCELLED},
        )
        if changed is None:
            raise ApiError(409, "INVALID_STATUS", f"task {task_id!r} changed meanwhile; retry")
        self.publish(Topic.TASK_CREATED, task_id)  # the dispatcher places it at once
        return changed

    def set_paused(self, task_id: str, paused: bool) -> Task:
        """Pause or resume a task: the store first (the state asked for), then its node.

        The node pauses or resumes the worker on the event, or at its next reconcile
        if the event is lost, and confirms the status in the store.
        """
        task = self.get(task_id)
        was, want = (S.RUNNING, S.PAUSED) if paused else (S.PAUSED, S.RUNNING)
        verb = "pause" if paused else "resume"
        changed = None
        if task.lifecycle_status is was:
            changed = self.backends.store.update_task(
                task_id,
                {"lifecycle_status": want},
                expected_status={was},
                expected_executor=task.executor,
                expected_incarnation=task.incarnation,
            )
        if changed is None:
            now = self.get(task_id) if task.lifecycle_status is was else task
            raise ApiError(
                409,
                "INVALID_STATUS",
                f"cannot {verb} task {task_id!r}: it is {now.lifecycle_status.value}",
            )
        self.publish(
            Topic.TASK_PAUSE if paused else Topic.TASK_RESUME,
            task_id,
            incarnation=changed.incarnation,
        )
        return changed

    def delete(self, task_id: str) -> None:
        task = self.get(task_id)
        if not task.lifecycle_status.is_final:
            self.cancel(task_id)
        self.backends.store.delete_task(task_id)

    def publish(
        self,
        topic: Topic,
        task_id: str,
        recipient: str | None = None,
        *,
        incarnation: int | None = None,
        wait: bool = True,
    ) -> bool:
        """Send an event about ``task_id`` (its run ``incarnation``); False (logged) when
        the bus refuses it."""
        return self._transitions.publish(
            topic, task_id, recipient=recipient, incarnation=incarnation, wait=wait
        )
