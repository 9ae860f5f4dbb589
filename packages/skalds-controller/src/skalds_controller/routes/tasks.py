"""``/api/tasks``: create, list, read and control tasks."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, Response
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.ports.store import TaskQuery
from skalds_controller.api_logs import follow_log, locate_log, tail_log
from skalds_controller.deps import Context, get_context
from skalds_controller.errors import ApiError
from skalds_controller.live_events import live_events_of
from skalds_controller.schemas import AttachmentsUpdate, Page, StatusChange, TaskCreate

router = APIRouter(prefix="/api/tasks", tags=["tasks"])
Ctx = Annotated[Context, Depends(get_context)]
S = TaskLifecycleStatus
UPDATE_ACK_SECONDS = 2.0
"""How long the attachments endpoint waits for the worker to confirm an update."""


def task_json(task: Task) -> dict[str, Any]:
    """A task as the API shows it (the storage form: camelCase, times in ms)."""
    return task.to_document()


def task_response(task: Task, status_code: int = 200) -> Response:
    """``task_json(task)`` as a ready response, serialised by pydantic in one step.

    Returned as a ``Response``, FastAPI sends it as is; a returned dict would be walked
    again by ``jsonable_encoder`` and then by ``json.dumps``, which cost about a third
    of ``POST /api/tasks`` (measured in-process on the in-memory backends).
    """
    body = task.model_dump_json(by_alias=True)
    return Response(body, status_code=status_code, media_type="application/json")


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


@router.post("", status_code=201, response_model=dict[str, Any])
def create_task(ctx: Ctx, body: TaskCreate) -> Response:
    """Create a task; it is dispatched to a node (or sent to ``executor`` when given)."""
    return task_response(ctx.tasks.create(body), 201)


@router.get("/{task_id}", response_model=dict[str, Any])
def get_task(ctx: Ctx, task_id: str) -> Response:
    return task_response(ctx.tasks.get(task_id))


@router.put("/{task_id}/attachments")
def update_attachments(
    request: Request, ctx: Ctx, task_id: str, body: AttachmentsUpdate
) -> dict[str, Any]:
    """Store new attachments (validated), then send them to the running worker.

    The task's ``attachmentsVersion`` goes up by one; ``appliedAttachmentsVersion`` is
    the version its worker last applied. ``updateReceived`` says whether the worker
    applied them within a few seconds (its node answers ``UpdateApplied``/
    ``UpdateFailed``); ``updateError`` says why not, with the worker's own reason when
    it refused them (e.g. its update handler raised). A paused task gets them when it
    resumes (``updateHeld``). When the event could not be sent (``updateSent`` false)
    the node still picks them up at its next reconcile.
    """
    hub = live_events_of(request.app)
    with hub.expect_update(task_id) as waiter:
        task, published = ctx.tasks.update_attachments(task_id, body.attachments)
        held = published and task.lifecycle_status is S.PAUSED
        answered = published and not held and waiter.wait(UPDATE_ACK_SECONDS)
    error = None
    if held:
        pass
    elif published and not answered:
        error = f"no answer from the worker within {UPDATE_ACK_SECONDS:g} s"
    elif answered and not waiter.applied:
        reason = f": {waiter.reason}" if waiter.reason else ""
        error = (
            f"the worker's update handler failed on node {waiter.node}{reason}; "
            f"see GET /api/tasks/{task_id}/logs"
        )
    return {
        "task": task_json(task),
        "updateSent": published,
        "updateReceived": bool(answered and waiter.applied),
        "updateHeld": held,
        "updateError": error,
    }


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


@router.get("/{task_id}/heartbeat")
def heartbeat(request: Request, ctx: Ctx, task_id: str) -> dict[str, Any]:
    """The worker's heartbeat now (alive while its key lives) and its recent history."""
    task = ctx.tasks.get(task_id)
    cache = ctx.backends.cache
    raw = cache.get(keys.task_heartbeat(task_id))
    value = int(raw) if raw is not None and raw.lstrip("-").isdigit() else None
    watcher = live_events_of(request.app).watcher
    if value is not None:
        watcher.record_heartbeat(task_id, value)
    return {
        "taskId": task_id,
        "heartbeat": value,
        "alive": raw is not None,
        "lifecycleStatus": task.lifecycle_status.value,
        "reportedStatus": cache.get(keys.task_status(task_id)),
        "executor": task.executor,
        "hasError": cache.get(keys.task_has_error(task_id)) == "true",
        "error": cache.get(keys.task_exception(task_id)),
        "history": watcher.heartbeat_history(task_id),
    }


@router.get(
    "/{task_id}/logs",
    responses={200: {"content": {"application/json": {}, "text/plain": {}}}},
)
async def logs(
    request: Request,
    ctx: Ctx,
    task_id: str,
    tail: Annotated[int, Query(ge=0, le=10_000)] = 100,
    follow: bool = False,
) -> Any:
    """The last ``tail`` lines of the task's log file (JSON).

    With ``follow=true`` the answer is plain text streamed as the worker writes, ending
    once the task has ended and its log went quiet. Only a log file that a node on this
    machine published for this task is read.
    """
    await run_in_threadpool(ctx.tasks.get, task_id)  # 404 TASK_NOT_FOUND first
    where = await run_in_threadpool(live_events_of(request.app).watcher.log_location, task_id)
    path = locate_log(task_id, where)
    start = await run_in_threadpool(tail_log, path, tail)
    if not follow:
        assert where is not None
        return {
            "taskId": task_id,
            "node": where.node_id,
            "file": str(path),
            "lines": start.lines,
        }

    def ended() -> bool:
        task = ctx.backends.store.get_task(task_id)
        return task is None or task.lifecycle_status.is_final

    return StreamingResponse(
        follow_log(path, start, ended),
        media_type="text/plain; charset=utf-8",
        headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"},
    )
