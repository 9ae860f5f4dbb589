"""What a node knows about its tasks: the table of local runs, and how they change.

:class:`TaskSupervisor` starts tasks through the worker runtime, controls them
(cancel, pause, attachments) and receives the runtime's reports (it is the runtime's
:class:`~skalds.ports.runtime.WorkerListener`); :class:`~skalds.node.outcomes.Outcomes`
writes what happened. Reports arrive on the runtime's thread and are handed to the
node's lanes (:mod:`skalds.node.lanes`), so store writes never hold up the runtime's
loop, happen in order with everything else about the same task, and several tasks'
writes overlap.

Each local task is one *run*: the incarnation the store gave the task when this node
started it. Everything the node writes names that run, and an event about an older
run is ignored; a newer run placed here while the old one still stops starts once it
is gone.
"""

from __future__ import annotations

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
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node.lanes import LaneExecutor
from skalds.node.outcomes import Outcomes, Run
from skalds.plugins import Backends
from skalds.ports.runtime import WorkerOutcome, WorkerRuntime, WorkerSpec
from skalds.ports.store import Increment
from skalds.utils.logging import logger, worker_log_path
from skalds.utils.time import now_ms
from skalds.worker.registry import WorkerRegistry

__all__ = ["LocalTask", "TaskSupervisor"]

S = TaskLifecycleStatus


@dataclass
class LocalTask:
    """A task whose process this node runs (or is starting): one run of it."""

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
    incarnation: int = 0
    """The run: the task's incarnation when this node started it."""
    sent_version: int = 0
    """The attachments version last handed to the worker (held while paused included)."""
    applied_version: int = 0
    """The attachments version the worker confirmed it applied."""
    update_versions: dict[int, int] = field(default_factory=dict)
    """Update number → attachments version, until the worker answers."""


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
        self.outcomes = Outcomes(config.skald_id, backends, hook)
        self.runtime: WorkerRuntime | None = None
        self.tasks: dict[str, LocalTask] = {}
        self._starting: set[str] = set()  # holding a place while their start is under way
        self._start_after_exit: set[str] = set()  # a newer run waits for the old one to end
        self.lock = threading.RLock()
        self._ended = threading.Condition(self.lock)
        self.on_task_ended: list[Callable[[str, WorkerOutcome], None]] = []
        self.shutting_down = False

    @property
    def unsaved_final(self) -> list[str]:
        """Tasks whose end waits for the store to come back."""
        return self.outcomes.unsaved_ids

    def local(self, task_id: str) -> LocalTask | None:
        """The local run of ``task_id``, if this node runs (or starts) one."""
        with self.lock:
            return self.tasks.get(task_id)

    def run_of(self, local: LocalTask) -> Run:
        return Run(local.task_id, self.skald_id, local.incarnation)

    @staticmethod
    def is_stale(local: LocalTask, incarnation: int | None, what: str) -> bool:
        """Whether an event (``what``) about run ``incarnation`` is older than the local
        run: then it is ignored, with a debug line."""
        if incarnation is None or incarnation >= local.incarnation:
            return False
        logger.debug(
            "task %s: ignoring a %s of run %d (run %d runs here)",
            local.task_id,
            what,
            incarnation,
            local.incarnation,
        )
        return True

    # -- starting ------------------------------------------------------------------

    def start_task(self, task: Task, from_statuses: Collection[TaskLifecycleStatus]) -> bool:
        """Move ``task`` (as read, this node's) to Running from ``from_statuses`` and start it.

        The compare-and-set holds the run read (executor and incarnation), so a task
        moved since is left alone. Returns False, with the reason logged and, where it
        is final, stored on the task (unknown className, invalid attachments), when
        the task does not start.
        """
        return self._in_place(
            task.id,
            task.incarnation,
            task.lifecycle_status.value,
            lambda: self._start(task, from_statuses),
        )

    def start_assigned(self, task_id: str, incarnation: int | None = None) -> bool:
        """Start a task assigned to this node (Created or Assigning, executor = this node).

        One compare-and-set moves it to Running, counts the attempt and returns the
        task, so the node does not read it first: the store, not the event, decides
        whether it starts. With ``incarnation`` (from the event) only that run starts.
        A task whose class or attachments this node refuses goes on to Failed, its
        attempt uncounted (nothing ran, so no retry is due).
        """
        return self._in_place(
            task_id, incarnation, "assigned", lambda: self._start_assigned(task_id, incarnation)
        )

    def _in_place(
        self, task_id: str, incarnation: int | None, status: str, start: Callable[[], bool]
    ) -> bool:
        """Run ``start`` holding a place among ``max_workers``, unless there is none."""
        assert self.runtime is not None
        with self.lock:
            local = self.tasks.get(task_id)
            if local is not None:
                newer = local.incarnation < incarnation if incarnation is not None else None
                if newer or (newer is None and local.cancel_requested):
                    # a newer run: it starts once the old one is gone (see _after_exit)
                    self._start_after_exit.add(task_id)
                    logger.info(
                        "task %s: run %s waits for run %d to stop here",
                        task_id,
                        incarnation if incarnation is not None else "(new)",
                        local.incarnation,
                    )
                else:
                    logger.debug("task %s already runs here; ignoring a second start", task_id)
                return False
            if task_id in self._starting:
                logger.debug("task %s is starting here; ignoring a second start", task_id)
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
        run = Run(task.id, self.skald_id, task.incarnation)
        try:
            attachments = self._checked_attachments(task)
        except (UnknownWorkerError, AttachmentValidationError) as exc:
            logger.error("task %s cannot start: %s", task.id, exc)
            self.outcomes.fail_start(run, from_statuses, str(exc))
            return False
        moved = self.outcomes.write(
            run,
            {
                "lifecycle_status": S.RUNNING,
                "error_message": None,
                "attempts": Increment(1),
            },
            from_statuses,
        )
        if moved is None:
            logger.info(
                "task %s was not startable (moved, or not in %s here any more)",
                task.id,
                sorted(s.value for s in from_statuses),
            )
            return False
        return self._launch(moved, attachments)

    def _start_assigned(self, task_id: str, incarnation: int | None) -> bool:
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
                expected_incarnation=incarnation,
            )
        except TaskNotFoundError:
            logger.warning("task.assign for unknown task %s (not in the store); skipped", task_id)
            return False
        if moved is None:
            logger.info(
                "task %s was not startable here (not Created/Assigning on %s%s any more)",
                task_id,
                self.skald_id,
                "" if incarnation is None else f" in run {incarnation}",
            )
            return False
        try:
            attachments = self._checked_attachments(moved)
        except (UnknownWorkerError, AttachmentValidationError) as exc:
            logger.error("task %s cannot start: %s", task_id, exc)
            run = Run(task_id, self.skald_id, moved.incarnation)
            self.outcomes.fail_start(run, {S.RUNNING}, str(exc), attempts=moved.attempts - 1)
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
        version = task.attachments_version
        local = LocalTask(
            task.id,
            task.class_name,
            attachments,
            task.is_persistent,
            incarnation=task.incarnation,
            sent_version=version,
            applied_version=version,
        )
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
            {
                "dependencies": task.dependencies or [],
                "incarnation": task.incarnation,
                "attachments_version": version,
            },
        )
        try:
            local.pid = self.runtime.spawn(spec)
        except Exception as exc:
            with self._ended:
                self.tasks.pop(task.id, None)
                self._ended.notify_all()
            local.ready.set()
            logger.error("task %s could not be started: %s", task.id, exc)
            self.outcomes.fail_start(
                self.run_of(local), {S.RUNNING}, f"could not start process: {exc}"
            )
            return False
        local.ready.set()
        logger.info("task %s (%s) started, pid %s", task.id, task.class_name, local.pid)
        self.outcomes.status_changed(task.id, S.RUNNING, None)
        if task.applied_attachments_version != version:
            self._record_applied(local, version)
        return True

    # -- control -------------------------------------------------------------------

    def _ready(self, task_id: str) -> LocalTask | None:
        """Return the local task once its process exists (a start in progress is awaited)."""
        with self.lock:
            local = self.tasks.get(task_id)
        if local is not None and not local.ready.wait(10):
            return None
        with self.lock:
            return self.tasks.get(task_id)

    def cancel(self, task_id: str, incarnation: int | None = None) -> bool:
        """Stop the local run (SIGTERM, grace, SIGKILL); False when none runs here.

        With ``incarnation``, a local run newer than that one is left alone (the cancel
        was about an earlier run).
        """
        assert self.runtime is not None
        local = self._ready(task_id)
        if local is None:
            return False
        if self.is_stale(local, incarnation, "cancel"):
            return False
        local.cancel_requested = True
        try:
            self.runtime.cancel(task_id, self.config.cancel_grace_seconds)
        except SkaldsError:
            return False
        logger.info("task %s: cancel requested", task_id)
        return True

    def update(self, task_id: str, attachments: Any, version: int) -> int:
        """Validate and send ``version`` of the attachments to the local run; return its number.

        Never blocks on the worker: a paused one gets them when it resumes.

        Raises:
            SkaldsError: the task does not run here.
            AttachmentValidationError: the worker keeps its parameters; names the fields.
        """
        return self.send_validated(task_id, self.validated(task_id, attachments), version)

    def validated(self, task_id: str, attachments: Any) -> dict[str, Any]:
        """The attachments as the local run's worker class validates them (JSON form).

        Raises:
            SkaldsError: the task does not run here.
            AttachmentValidationError: names the fields.
        """
        local = self._ready(task_id)
        if local is None:
            raise SkaldsError(f"task {task_id!r} is not running on node {self.skald_id}")
        entry = self.registry.get(local.class_name)
        data = entry.cls.validate_attachments(attachments, task_id)
        dumped: dict[str, Any] = data.model_dump(mode="json", by_alias=True)
        return dumped

    def send_validated(self, task_id: str, dumped: dict[str, Any], version: int) -> int:
        """Send attachments :meth:`validated` returned; return the update's number.

        Raises:
            SkaldsError: the task does not run here (any more).
        """
        assert self.runtime is not None
        local = self._ready(task_id)
        if local is None:
            raise SkaldsError(f"task {task_id!r} is not running on node {self.skald_id}")
        seq = self.runtime.send_update(task_id, dumped, version)
        with self.lock:
            local.attachments = dumped
            local.sent_version = max(local.sent_version, version)
            if seq not in local.updates:  # not answered already
                local.update_versions[seq] = version
            local.update_events.setdefault(seq, threading.Event())
        return seq

    def converge_attachments(self, stored: Task) -> int | None:
        """Send the stored attachments if the local run has not been sent that version.

        Returns the update's number, ``None`` when nothing was sent (up to date, not
        this run, or refused: then the reason is logged and told as ``UpdateFailed``).
        """
        local = self._ready(stored.id)
        if local is None or not self.run_of(local).held_by(stored):
            return None
        if stored.attachments_version <= local.sent_version:
            return None
        version = stored.attachments_version
        try:
            return self.update(stored.id, stored.attachments_dict(), version)
        except AttachmentValidationError as exc:
            with self.lock:
                local.sent_version = max(local.sent_version, version)  # not again
            logger.error("task %s: attachments version %d refused: %s", stored.id, version, exc)
            self.outcomes.publish(
                stored.id, "UpdateFailed", f"{stored.id}:version:{version}", message=str(exc)
            )
        except SkaldsError:
            pass  # it ended meanwhile
        return None

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

    def set_paused(
        self, task_id: str, paused: bool, *, incarnation: int | None = None, write: bool = True
    ) -> bool:
        """Pause or resume the local run; False when none runs here or it is in that state.

        Args:
            incarnation: only if the local run is this one.
            write: also record the status in the store (from the other one, fenced to
                the run); ``False`` when the store already holds it.
        """
        assert self.runtime is not None
        want_from, want_to = (S.RUNNING, S.PAUSED) if paused else (S.PAUSED, S.RUNNING)
        self._ready(task_id)
        with self.lock:
            local = self.tasks.get(task_id)
            if local is None or local.status is not want_from or local.cancel_requested:
                return False
            if incarnation is not None and local.incarnation != incarnation:
                return False
            self.runtime.set_paused(task_id, paused)
            local.status = want_to
            local.last_beat = time.monotonic()
        if write:
            try:
                self.outcomes.write(self.run_of(local), {"lifecycle_status": want_to}, {want_from})
            except Exception as exc:
                logger.warning("task %s: could not record %s: %s", task_id, want_to.value, exc)
        self.outcomes.live_status(task_id, want_to, self.config.task_ttl_seconds)
        self.outcomes.status_changed(task_id, want_to, None)
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

    def worker_update_applied(
        self, task_id: str, seq: int, error: str | None, version: int | None = None
    ) -> None:
        with self.lock:
            local = self.tasks.get(task_id)
            if local is None:
                return
            local.updates[seq] = error
            event = local.update_events.setdefault(seq, threading.Event())
            # The worker says which version it had (an answer may come before update()
            # filed the number it sent: then the number is all there is).
            numbered = local.update_versions.pop(seq, None)
            version = version if version is not None else numbered
            newer = error is None and version is not None and version > local.applied_version
            if newer:
                assert version is not None
                local.applied_version = version
        if error:
            logger.error("task %s: update %d failed in the worker: %s", task_id, seq, error)
        event.set()
        if newer:
            assert version is not None
            self.executor.submit_for(task_id, self._record_applied, local, version)
        # Tell controllers the worker has the new parameters (or why not).
        title = "UpdateApplied" if error is None else "UpdateFailed"
        self.executor.submit_for(
            task_id,
            self.outcomes.publish,
            task_id,
            title,
            f"{task_id}:update:{seq}",
            message=error,
        )

    def _record_applied(self, local: LocalTask, version: int) -> None:
        """Store the attachments version the worker applied (shown next to the stored one)."""
        try:
            self.outcomes.write(self.run_of(local), {"applied_attachments_version": version})
        except Exception as exc:
            logger.warning(
                "task %s: could not record applied version %d: %s", local.task_id, version, exc
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
        outcome = WorkerOutcome(status, outcome.exit_code, outcome.error, outcome.traceback)
        if self.shutting_down and status is S.CANCELLED and local and not local.cancel_requested:
            # Stopped because the node stops, not because anyone cancelled the task:
            # the store keeps it Running here, so the next start resumes it.
            logger.info("task %s stopped with the node; it resumes when the node restarts", task_id)
            self._forget(task_id)
            return
        if status is S.FAILED:
            logger.error("task %s failed: %s", task_id, outcome.error)
        else:
            logger.info("task %s %s", task_id, status.value.lower())
        ended = outcome if local is None else self.outcomes.record_end(self.run_of(local), outcome)
        self._forget(task_id)
        if ended is not None:
            for callback in list(self.on_task_ended):
                try:
                    callback(task_id, ended)
                except Exception:
                    logger.exception("task-ended callback failed for %s", task_id)
        self._after_exit(task_id)

    def _forget(self, task_id: str) -> None:
        with self._ended:
            self.tasks.pop(task_id, None)
            self._ended.notify_all()

    def _after_exit(self, task_id: str) -> None:
        """Start the newer run that waited for this one to stop, if it is still placed here."""
        with self.lock:
            if task_id not in self._start_after_exit:
                return
            self._start_after_exit.discard(task_id)
        if not self.shutting_down:
            self.start_assigned(task_id)

    def flush_unsaved(self) -> bool:
        """Write final statuses that a store outage kept back; return True when none is left."""
        return self.outcomes.flush()

    # -- views -----------------------------------------------------------------------

    def snapshot(self) -> list[LocalTask]:
        """Return copies of the local tasks (for the reporter)."""
        with self.lock:
            return [LocalTask(**vars(t)) for t in self.tasks.values()]
