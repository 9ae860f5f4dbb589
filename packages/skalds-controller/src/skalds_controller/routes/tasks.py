"""``/api/tasks``: create, list, read and control tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Response

from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import TaskQuery
from skalds_controller.deps import Context, get_context
from skalds_controller.errors import ApiError
from skalds_controller.schemas import AttachmentsUpdate, Page, StatusChange, TaskCreate

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
Ctx = Annotated[Context, Depends(get_context)]
S = TaskLifecycleStatus


def task_json(task: Task) -> dict[str, Any]:
    """A task as the API shows it (the storage form: camelCase, times in ms)."""
    return task.to_document()


@router.get("", response_model=Page)
def list_tasks(
    ctx: Ctx,
    page: Annotated[int, Query(ge=1, le=100_000)] = 1,
    page_size: Annotated[int, Query(alias="pageSize", ge=1, le=100)] = 20,
    lifecycle_status: Annotated[S | None, Query(alias="lifecycleStatus")] = None,
    class_name: Annotated[str | None, Query(alias="className", max_length=200)] = None,
    executor: Annotated[str | None, Query(max_length=200)] = None,
    id_prefix: Annotated[str | None, Query(alias="id", max_length=200)] = None,
) -> dict[str, Any]:
    """Tasks, highest priority first, filtered; ``id`` is a literal prefix, never a regex."""
    query = TaskQuery(
        statuses={lifecycle_status} if lifecycle_status else None,
        class_name=class_name,
        executor=executor,
        id_prefix=id_prefix,
        offset=(page - 1) * page_size,
        limit=page_size,
    )
    store = ctx.backends.store
    items = [task_json(t) for t in store.list_tasks(query)]
    return {"items": items, "total": store.count_tasks(query), "page": page, "pageSize": page_size}


@router.get("/classnames")
def class_names(ctx: Ctx) -> dict[str, Any]:
    """The worker classes online nodes run, with their attachments JSON Schema."""
    return {
        "classNames": [
            {"className": k, "schema": v} for k, v in sorted(ctx.nodes.schemas().items())
        ]
    }


@router.post("", status_code=201)
def create_task(ctx: Ctx, body: TaskCreate) -> dict[str, Any]:
    """Create a task; it is dispatched to a node (or sent to ``executor`` when given)."""
    return task_json(ctx.tasks.create(body))


@router.get("/{task_id}")
def get_task(ctx: Ctx, task_id: str) -> dict[str, Any]:
    return task_json(ctx.tasks.get(task_id))


@router.put("/{task_id}/attachments")
def update_attachments(ctx: Ctx, task_id: str, body: AttachmentsUpdate) -> dict[str, Any]:
    """Store new attachments (validated), then send the update to the running worker."""
    task, published = ctx.tasks.update_attachments(task_id, body.attachments)
    return {"task": task_json(task), "updateSent": published}


@router.put("/{task_id}/status")
def change_status(ctx: Ctx, task_id: str, body: StatusChange) -> dict[str, Any]:
    """``Cancelled`` stops the task; ``Created`` re-queues a finished, failed or cancelled one."""
    if body.lifecycle_status is S.CANCELLED:
        return task_json(ctx.tasks.cancel(task_id))
    if body.lifecycle_status is S.CREATED:
        return task_json(ctx.tasks.requeue(task_id))
    raise ApiError(
        400,
        "INVALID_STATUS",
        f"status can be set to Cancelled or Created, not {body.lifecycle_status.value}",
    )


@router.post("/{task_id}/pause")
def pause(ctx: Ctx, task_id: str) -> dict[str, Any]:
    return task_json(ctx.tasks.set_paused(task_id, True))


@router.post("/{task_id}/resume")
def resume(ctx: Ctx, task_id: str) -> dict[str, Any]:
    return task_json(ctx.tasks.set_paused(task_id, False))


@router.delete("/{task_id}", status_code=204)
def delete(ctx: Ctx, task_id: str) -> Response:
    ctx.tasks.delete(task_id)
    return Response(status_code=204)
