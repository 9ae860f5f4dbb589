"""What a node knows about its tasks, and how it records their lives.

:class:`TaskSupervisor` starts tasks through the worker runtime, receives the
runtime's reports (it is the runtime's :class:`~skalds.ports.runtime.WorkerListener`)
and writes the outcome to the store (compare-and-set), the cache (seed keys) and the
``taskworker.update`` topic. Reports arrive on the runtime's thread and are handed to
the node's lanes (:mod:`skalds.node.lanes`), so store writes never hold up the
supervisor loop, happen in order with everything else about the same task, and
several tasks' writes overlap.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Collection
from dataclasses import dataclass, field
from typing import Any

import pluggy

from skalds.config.skald_config import SkaldConfig
from skalds.errors import (
    AttachmentValidationError,
    SkaldsError,
    TaskNotFoundError,
    UnknownWorkerError,
)
from skalds.model.event import TaskEvent
from skalds.model.task import ACTIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.node.lanes import LaneExecutor
from skalds.plugins import Backends
from skalds.ports.cache import CacheOp, Delete, Set
from skalds.ports.event_bus import Topic
from skalds.ports.runtime import WorkerOutcome, WorkerRuntime, WorkerSpec
from skalds.ports.store import Increment
from skalds.utils.logging import logger, worker_log_path
from skalds.utils.time import now_ms
from skalds.worker.registry import WorkerRegistry

__all__ = ["LocalTask", "TaskSupervisor"]

S = TaskLifecycleStatus
_FINAL_BEAT = {
    S.FINISHED: keys.HEARTBEAT_FINISHED,
    S.FAILED: keys.HEARTBEAT_FAILED,
    S.CANCELLED: keys.HEARTBEAT_CANCELLED,
}
_FINAL_TTL = 3600.0


@dataclass
class LocalTask:
    """A task whose process this node runs (or is starting)."""

    task_id: str
    class_name: str
    attachments: dict[str, Any]
    is_persistent: bool = False
    status: TaskLifecycleStatus = S.RUNNING
    pid: int | None = None
    heartbeat: int = 0
    last_beat: float = field(default_factory=time.monotonic)
    started_ms: int = field(default_factory=now_ms)
    cancel_requested: bool = False
    ready: threading.Event = field(default_factory=threading.Event)
    updates: dict[int, str | None] = field(default_factory=dict)
    update_events: dict[int, threading.Event] = field(default_factory=dict)


class TaskSupervisor:
    """Start, control and record the tasks of one node."""

    def __init__(
        self,
        config: SkaldConfig,
        registry: WorkerRegistry,
        backends: Backends,
        executor: LaneExecutor,
        hook: pluggy.HookRelay,
    ) -> None:
        self.config = config
        self.skald_id = config.skald_id
        self.registry = registry
        self.backends = backends
        self.executor = executor
        self.hook = hook
        self.runtime: WorkerRuntime | None = None
        self.tasks: dict[str, LocalTask] = {}
        self._starting: set[str] = set()  # holding a place while their start is under way
        self.lock = threading.RLock()
        self._ended = threading.Condition(self.lock)
        self.on_task_ended: list[Callable[[str, WorkerOutcome], None]] = []
        self.shutting_down = False
        self.unsaved_final: dict[str, tuple[TaskLifecycleStatus, str | None]] = {}

    # -- starting ------------------------------------------------------------------

    def start_task(self, task: Task, from_statuses: Collection[TaskLifecycleStatus]) -> bool:
        """Move ``task`` to Running (compare-and-set from ``from_statuses``) and start it.

        Returns False, with the reason logged and, where it is final, stored on the task
        (unknown className, invalid attachments), when the task does not start.
        """
        return self._in_place(
            task.id, task.lifecycle_status.value, lambda: self._start(task, from_statuses)
        )

    def start_assigned(self, task_id: str) -> bool:
        """Start a task assigned to this node (Created or Assigning, executor = this node).

        One compare-and-set moves it to Running, counts the attempt and returns the
        task, so the node does not read it first: the store, not the event, decides
        whether it starts. A task whose class or attachments this node refuses goes on
        to Failed, its attempt uncounted (nothing ran, so no retry is due).
        """
        return self._in_place(task_id, "assigned", lambda: self._start_assigned(task_id))

    def _in_place(self, task_id: str, status: str, start: Callable[[], bool]) -> bool:
        """Run ``start`` holding a place among ``max_workers``, unless there is none."""
        assert self.runtime is not None
        with self.lock:
            if task_id in self.tasks or task_id in self._starting:
                logger.debug("task %s already runs here; ignoring a second start", task_id)
                return False
            if len(self.tasks) + len(self._starting) >= self.config.max_workers:
                logger.warning(
                    "task %s not started: node %s is at max_workers=%d; it stays %s",
                    task_id,
                    self.skald_id,
                    self.config.max_workers,
                    status,
                )
                return False
            self._starting.add(task_id)  # starts on other lanes see this place taken
        try:
            return start()
        finally:
            with self.lock:
                self._starting.discard(task_id)

    def _start(self, task: Task, from_statuses: Collection[TaskLifecycleStatus]) -> bool:
        try:
            attachments = self._checked_attachments(task)
        except (UnknownWorkerError, AttachmentValidationError) as exc:
            logger.error("task %s cannot start: %s", task.id, exc)
            self._fail_in_store(task.id, from_statuses, str(exc))
            return False
        moved = self.backends.store.update_task(
            task.id,
            {
                "lifecycle_status": S.RUNNING,
                "executor": self.skald_id,
                "error_message": None,
                "attempts": task.attempts + 1,
            },
            expected_status=from_statuses,
        )
        if moved is None:
            logger.info(
                "task %s was not startable (already taken or not in %s)",
                task.id,
                sorted(s.value for s in from_statuses),
            )
            return False
        return self._launch(moved, attachments)

    def _start_assigned(self, task_id: str) -> bool:
        try:
            moved = self.backends.store.update_task(
                task_id,
                {
                    "lifecycle_status": S.RUNNING,
                    "error_message": None,
                    "attempts": Increment(1),
                },
                expected_status={S.CREATED, S.ASSIGNING},
                expected_executor=self.skald_id,
            )
        except TaskNotFoundError:
            logger.warning("task.assign for unknown task %s (not in the store); skipped", task_id)
            return False
        if moved is None:
            logger.info(
                "task %s was not startable here (not Created/Assigning on %s any more)",
                task_id,
                self.skald_id,
            )
            return False
        try:
            attachments = self._checked_attachments(moved)
        except (UnknownWorkerError, AttachmentValidationError) as exc:
            logger.error("task %s cannot start: %s", task_id, exc)
            self._fail_in_store(task_id, {S.RUNNING}, str(exc), attempts=moved.attempts - 1)
            return False
        return self._launch(moved, attachments)

    def _checked_attachments(self, task: Task) -> dict[str, Any]:
        """The task's attachments as its worker class validates them (JSON form).

        Raises:
            UnknownWorkerError: this node does not run the task's class.
            AttachmentValidationError: the class refuses the attachments.
        """
        entry = self.registry.get(task.class_name)
        data = entry.cls.validate_attachments(task.attachments_dict(), task.id)
        dumped: dict[str, Any] = data.model_dump(mode="json", by_alias=True)
        return dumped

    def _launch(self, task: Task, attachments: dict[str, Any]) -> bool:
        """Start the process of ``task``, which the store now says runs here."""
        assert self.runtime is not None
        local = LocalTask(task.id, task.class_name, attachments, task.is_persistent)
        with self.lock:
            self.tasks[task.id] = local
            self._starting.discard(task.id)  # its place now counts in self.tasks
        log_file = None
        if self.config.log_split_with_worker_id:
            log_file = str(worker_log_path(self.config.log_path, task.id))
        spec = WorkerSpec(
            task.id,
            task.class_name,
            attachments,
            log_file,
            {"dependencies": task.dependencies or []},
        )
        try:
            local.pid = self.runtime.spawn(spec)
        except Exception as exc:
            with self._ended:
                self.tasks.pop(task.id, None)
                self._ended.notify_all()
            local.ready.set()
            logger.error("task %s could not be started: %s", task.id, exc)
            self._fail_in_store(task.id, {S.RUNNING}, f"could not start process: {exc}")
            return False
        local.ready.set()
        logger.info("task %s (%s) started, pid %s", task.id, task.class_name, local.pid)
        self._status_changed(task.id, S.RUNNING, None)
        return True

    def _fail_in_store(
        self,
        task_id: str,
        from_statuses: Collection[TaskLifecycleStatus],
        reason: str,
        **changes: Any,
    ) -> None:
        with contextlib.suppress(TaskNotFoundError):
            self.backends.store.update_task(
                task_id,
                {"lifecycle_status": S.FAILED, "error_message": reason, **changes},
                expected_status=from_statuses,
            )
        self.backends.cache.apply(
            [
                Set(keys.task_heartbeat(task_id), str(keys.HEARTBEAT_FAILED), _FINAL_TTL),
                Set(keys.task_has_error(task_id), "true", _FINAL_TTL),
                Set(keys.task_exception(task_id), reason, _FINAL_TTL),
                Set(keys.task_status(task_id), S.FAILED.value, _FINAL_TTL),
            ]
        )
        self._status_changed(task_id, S.FAILED, reason)

    # -- control -------------------------------------------------------------------

    def _ready(self, task_id: str) -> LocalTask | None:
        """Return the local task once its process exists (a start in progress is awaited)."""
        with self.lock:
            local = self.tasks.get(task_id)
        if local is not None and not local.ready.wait(10):
            return None
        with self.lock:
            return self.tasks.get(task_id)

    def cancel(self, task_id: str) -> bool:
        """Cancel a local task (SIGTERM, grace, SIGKILL); False when it does not run here."""
        assert self.runtime is not None
        local = self._ready(task_id)
        if local is None:
            return False
        local.cancel_requested = True
        try:
            self.runtime.cancel(task_id, self.config.cancel_grace_seconds)
        except SkaldsError:
            return False
        logger.info("task %s: cancel requested", task_id)
        return True

    def update(self, task_id: str, attachments: Any) -> int:
        """Validate and forward new attachments to a running task; return the update's number.

        Raises:
            SkaldsError: the task does not run here.
            AttachmentValidationError: the worker keeps its parameters; names the fields.
        """
        assert self.runtime is not None
        local = self._ready(task_id)
        if local is None:
            raise SkaldsError(f"task {task_id!r} is not running on node {self.skald_id}")
        entry = self.registry.get(local.class_name)
        data = entry.cls.validate_attachments(attachments, task_id)
        dumped = data.model_dump(mode="json", by_alias=True)
        seq = self.runtime.send_update(task_id, dumped)
        with self.lock:
            local.attachments = dumped
            local.update_events.setdefault(seq, threading.Event())
        return seq

    def wait_update(self, task_id: str, seq: int, timeout: float) -> tuple[bool, str | None]:
        """Wait until the worker applied update ``seq``: (applied, error)."""
        with self.lock:
            local = self.tasks.get(task_id)
            event = local.update_events.get(seq) if local else None
        if local is None or event is None:
            return False, "task is not running"
        if not event.wait(timeout):
            return False, "the worker did not confirm the update in time"
        return True, local.updates.get(seq)

    def set_paused(self, task_id: str, paused: bool) -> bool:
        """Pause or resume a local task; False when it does not run here or is not in that state."""
        assert self.runtime is not None
        want_from, want_to = (S.RUNNING, S.PAUSED) if paused else (S.PAUSED, S.RUNNING)
        self._ready(task_id)
        with self.lock:
            local = self.tasks.get(task_id)
            if local is None or local.status is not want_from:
                return False
            self.runtime.set_paused(task_id, paused)
            local.status = want_to
            local.last_beat = time.monotonic()
        self.backends.store.update_task(
            task_id, {"lifecycle_status": want_to}, expected_status={want_from}
        )
        self.backends.cache.set(
            keys.task_status(task_id), want_to.value, self.config.task_ttl_seconds
        )
        self._status_changed(task_id, want_to, None)
        logger.info("task %s %s", task_id, "paused" if paused else "resumed")
        return True

    def wait_ended(self, task_id: str, timeout: float) -> bool:
        """Wait until ``task_id`` no longer runs here; return whether it ended in time."""
        deadline = time.monotonic() + timeout
        with self._ended:
            while task_id in self.tasks:
                left = deadline - time.monotonic()
                if left <= 0:
                    return False
                self._ended.wait(left)
        return True

    # -- runtime reports (runtime thread) -------------------------------------------

    def worker_started(self, task_id: str, pid: int) -> None:
        with self.lock:
            local = self.tasks.get(task_id)
            if local is not None:
                local.pid = pid

    def worker_heartbeat(self, task_id: str, value: int) -> None:
        with self.lock:
            local = self.tasks.get(task_id)
            if local is not None:
                local.heartbeat = value
                local.last_beat = time.monotonic()

    def worker_update_applied(self, task_id: str, seq: int, error: str | None) -> None:
        with self.lock:
            local = self.tasks.get(task_id)
            if local is None:
                return
            local.updates[seq] = error
            event = local.update_events.setdefault(seq, threading.Event())
        if error:
            logger.error("task %s: update %d failed in the worker: %s", task_id, seq, error)
        if event is not None:
            event.set()
        # Tell controllers the worker has the new parameters (or why not).
        title = "UpdateApplied" if error is None else "UpdateFailed"
        self.executor.submit_for(
            task_id,
            self._publish_status,
            task_id,
            title,
            f"{task_id}:update:{seq}",
            message=error,
        )

    def worker_exited(self, task_id: str, outcome: WorkerOutcome) -> None:
        self.executor.submit_for(task_id, self._record_exit, task_id, outcome)

    def _record_exit(self, task_id: str, outcome: WorkerOutcome) -> None:
        with self.lock:
            local = self.tasks.get(task_id)
        status = outcome.status
        if (
            local is not None
            and local.cancel_requested
            and status is S.FAILED
            and outcome.exit_code is not None
            and outcome.exit_code < 0
        ):
            status = S.CANCELLED  # killed after the grace period, as asked
        reason = outcome.error
        if self.shutting_down and status is S.CANCELLED and local and not local.cancel_requested:
            # Stopped because the node stops, not because anyone cancelled the task:
            # the store keeps it Running here, so the next start resumes it.
            logger.info("task %s stopped with the node; it resumes when the node restarts", task_id)
            with self._ended:
                self.tasks.pop(task_id, None)
                self._ended.notify_all()
            return
        if status is S.FAILED:
            logger.error("task %s failed: %s", task_id, reason)
        else:
            logger.info("task %s %s", task_id, status.value.lower())
        try:
            self._store_final(task_id, status, reason)
        except Exception as exc:
            # Keep it: the next reconcile writes it, and does not mistake the task for
            # one that should be restarted because the store still says Running.
            self.unsaved_final[task_id] = (status, reason)
            logger.error(
                "task %s: could not record %s in the store (%s); will retry",
                task_id,
                status.value,
                exc,
            )
        ops: list[CacheOp] = [
            Set(keys.task_heartbeat(task_id), str(_FINAL_BEAT[status]), _FINAL_TTL),
            Set(keys.task_status(task_id), status.value, _FINAL_TTL),
        ]
        if status is S.FAILED:
            text = reason or "failed"
            if outcome.traceback:
                text = f"{text}\n{outcome.traceback}"
            ops += [
                Set(keys.task_has_error(task_id), "true", _FINAL_TTL),
                Set(keys.task_exception(task_id), text, _FINAL_TTL),
            ]
        else:
            ops.append(Delete((keys.task_has_error(task_id),)))
        try:
            self.backends.cache.apply(ops)
        except Exception:
            logger.exception("task %s: could not write its final state to the cache", task_id)
        with self._ended:
            self.tasks.pop(task_id, None)
            self._ended.notify_all()
        self._status_changed(task_id, status, reason)
        for callback in list(self.on_task_ended):
            try:
                callback(
                    task_id, WorkerOutcome(status, outcome.exit_code, reason, outcome.traceback)
                )
            except Exception:
                logger.exception("task-ended callback failed for %s", task_id)

    def _store_final(self, task_id: str, status: TaskLifecycleStatus, reason: str | None) -> None:
        changes: dict[str, Any] = {"lifecycle_status": status}
        if status is S.FAILED:
            changes["error_message"] = reason
        try:
            self.backends.store.update_task(task_id, changes, expected_status=ACTIVE_STATUSES)
        except TaskNotFoundError:
            logger.warning("task %s ended but is no longer in the store", task_id)

    def flush_unsaved(self) -> bool:
        """Write final statuses that a store outage kept back; return True when none is left."""
        for task_id, (status, reason) in list(self.unsaved_final.items()):
            try:
                self._store_final(task_id, status, reason)
            except Exception as exc:
                logger.warning(
                    "store still unavailable (%s); %d final statuses pending",
                    exc,
                    len(self.unsaved_final),
                )
                return False
            del self.unsaved_final[task_id]
            logger.info("task %s: %s recorded in the store after the outage", task_id, status.value)
        return True

    def _status_changed(
        self, task_id: str, status: TaskLifecycleStatus, reason: str | None
    ) -> None:
        try:
            self.hook.skalds_task_status_changed(
                task_id=task_id, status=status.value, skald_id=self.skald_id, reason=reason
            )
        except Exception:
            logger.exception("a skalds_task_status_changed hook raised")
        self._publish_status(task_id, status.value, f"{task_id}:{status.value}:{now_ms()}")

    def _publish_status(
        self, task_id: str, title: str, event_id: str, *, message: str | None = None
    ) -> None:
        """Publish on ``taskworker.update``: ``title`` is a status or UpdateApplied/Failed.

        Without waiting for the bus: the store already holds the status, the event
        only tells viewers and dispatchers sooner, and the lane goes on to its next
        task instead of waiting for the broker (the bus logs a delivery that failed).
        """
        event = TaskEvent(
            task_ids=[task_id], title=title, initiator=self.skald_id, id=event_id, message=message
        )
        try:
            self.backends.event_bus.publish_nowait(
                Topic.TASKWORKER_UPDATE.value, task_id, event.model_dump_json()
            )
        except Exception as exc:  # a bus that breaks its contract must not stop the node
            logger.warning("could not publish %s of task %s: %s", title, task_id, exc)

    # -- views -----------------------------------------------------------------------

    def snapshot(self) -> list[LocalTask]:
        """Return copies of the local tasks (for the reporter)."""
        with self.lock:
            return [LocalTask(**vars(t)) for t in self.tasks.values()]
