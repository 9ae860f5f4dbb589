"""How a node records what happened to its tasks: the store, the cache, the bus.

Every store write names the run it is about (:class:`Run`: this node as executor, the
incarnation it started), so it changes only that run: a node that stops a copy after
the task moved on (to another node, or to a later run here) leaves the later run
alone, and says nothing about it in the cache or on the bus either. A final status
the store could not take (an outage) is kept and written by the next reconcile, with
the same fence.
"""

from __future__ import annotations

import threading
from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

import pluggy

from skalds.errors import TaskNotFoundError
from skalds.model.event import TaskEvent
from skalds.model.task import ACTIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.plugins import Backends
from skalds.ports.cache import CacheOp, Delete, Set
from skalds.ports.event_bus import Topic
from skalds.ports.runtime import WorkerOutcome
from skalds.utils.logging import logger
from skalds.utils.time import now_ms

__all__ = ["Outcomes", "Run"]

S = TaskLifecycleStatus
FINAL_TTL = 3600.0
_FINAL_BEAT = {
    S.FINISHED: keys.HEARTBEAT_FINISHED,
    S.FAILED: keys.HEARTBEAT_FAILED,
    S.CANCELLED: keys.HEARTBEAT_CANCELLED,
}


@dataclass(frozen=True)
class Run:
    """One run of a task: the node that runs it and its incarnation (the fencing token)."""

    task_id: str
    executor: str
    incarnation: int

    def held_by(self, task: Task) -> bool:
        """Whether the store's ``task`` is this run (this executor, this incarnation)."""
        return task.executor == self.executor and task.incarnation == self.incarnation


def _as_stored(task: Task, outcome: WorkerOutcome) -> WorkerOutcome:
    """The end of a run as the store holds it (the worker's traceback kept if it failed)."""
    status = task.lifecycle_status
    if status is S.FAILED:
        return WorkerOutcome(status, outcome.exit_code, task.error_message, outcome.traceback)
    return WorkerOutcome(status, outcome.exit_code)


@dataclass(frozen=True)
class _Unsaved:
    run: Run
    status: TaskLifecycleStatus
    reason: str | None


class Outcomes:
    """Writes a node's task changes, fenced to the run they are about."""

    def __init__(self, skald_id: str, backends: Backends, hook: pluggy.HookRelay) -> None:
        self.skald_id = skald_id
        self.backends = backends
        self.hook = hook
        self._unsaved: dict[str, _Unsaved] = {}
        self._lock = threading.Lock()

    # -- the store, fenced -------------------------------------------------------------

    def write(
        self,
        run: Run,
        changes: dict[str, Any],
        expected: Collection[TaskLifecycleStatus] = ACTIVE_STATUSES,
    ) -> Task | None:
        """Apply ``changes`` while the store holds ``run`` in one of ``expected``.

        Returns:
            The changed task; ``None`` when the store holds another run (or status),
            or the task is gone.

        Raises:
            Exception: a store error (the caller decides whether to keep it for later).
        """
        try:
            return self.backends.store.update_task(
                run.task_id,
                changes,
                expected_status=expected,
                expected_executor=run.executor,
                expected_incarnation=run.incarnation,
            )
        except TaskNotFoundError:
            return None

    def fail_start(
        self,
        run: Run,
        expected: Collection[TaskLifecycleStatus],
        reason: str,
        **changes: Any,
    ) -> None:
        """A task of this node could not start: Failed with ``reason``, if still that run."""
        fields = {"lifecycle_status": S.FAILED, "error_message": reason, **changes}
        try:
            moved = self.write(run, fields, expected)
        except Exception as exc:
            logger.error("task %s: could not record that it failed to start: %s", run.task_id, exc)
            return
        if moved is None:
            return
        self._cache(
            [
                Set(keys.task_heartbeat(run.task_id), str(keys.HEARTBEAT_FAILED), FINAL_TTL),
                Set(keys.task_has_error(run.task_id), "true", FINAL_TTL),
                Set(keys.task_exception(run.task_id), reason, FINAL_TTL),
                Set(keys.task_status(run.task_id), S.FAILED.value, FINAL_TTL),
            ]
        )
        self.status_changed(run.task_id, S.FAILED, reason)

    # -- final statuses ----------------------------------------------------------------

    def record_end(self, run: Run, outcome: WorkerOutcome) -> WorkerOutcome | None:
        """Record how ``run`` ended; return the end the store holds for it.

        When the store already holds an end of this run (a cancel through the API,
        a stalled worker the monitor failed), that end stands and is the one told to
        the cache and to viewers. ``None`` when the store holds another run of the
        task (moved elsewhere, re-queued, placed again): nothing is written or told.
        A store outage keeps the status for :meth:`flush` (and the cache and viewers
        are told now, as the run is most likely still the current one).
        """
        status = outcome.status
        changes: dict[str, Any] = {"lifecycle_status": status}
        if status is S.FAILED:
            changes["error_message"] = outcome.error
        try:
            moved = self.write(run, changes)
            if moved is None:
                ended = self._ended_run(run)
                if ended is None:
                    logger.info(
                        "task %s: run %d here ended %s, but the store holds another run of "
                        "it now (or none); left as it is",
                        run.task_id,
                        run.incarnation,
                        status.value.lower(),
                    )
                    return None
                outcome = _as_stored(ended, outcome)
        except Exception as exc:
            with self._lock:
                self._unsaved[run.task_id] = _Unsaved(run, status, outcome.error)
            logger.error(
                "task %s: could not record %s in the store (%s); will retry",
                run.task_id,
                status.value,
                exc,
            )
        self._cache(self._final_ops(run.task_id, outcome))
        self.status_changed(run.task_id, outcome.status, outcome.error)
        return outcome

    def _ended_run(self, run: Run) -> Task | None:
        """The task if the store holds ``run`` with an end; else ``None``."""
        task = self.backends.store.get_task(run.task_id)
        if task is None or not run.held_by(task) or not task.lifecycle_status.is_final:
            return None
        return task

    @staticmethod
    def _final_ops(task_id: str, outcome: WorkerOutcome) -> list[CacheOp]:
        status = outcome.status
        ops: list[CacheOp] = [
            Set(keys.task_heartbeat(task_id), str(_FINAL_BEAT[status]), FINAL_TTL),
            Set(keys.task_status(task_id), status.value, FINAL_TTL),
        ]
        if status is S.FAILED:
            text = outcome.error or "failed"
            if outcome.traceback:
                text = f"{text}\n{outcome.traceback}"
            ops += [
                Set(keys.task_has_error(task_id), "true", FINAL_TTL),
                Set(keys.task_exception(task_id), text, FINAL_TTL),
            ]
        else:
            ops.append(Delete((keys.task_has_error(task_id),)))
        return ops

    def unsaved(self, task_id: str) -> bool:
        """Whether an end of ``task_id`` waits to be written to the store."""
        with self._lock:
            return task_id in self._unsaved

    @property
    def unsaved_ids(self) -> list[str]:
        with self._lock:
            return list(self._unsaved)

    def flush(self) -> bool:
        """Write the final statuses an outage kept back; return True when none is left."""
        with self._lock:
            pending = list(self._unsaved.values())
        for entry in pending:
            changes: dict[str, Any] = {"lifecycle_status": entry.status}
            if entry.status is S.FAILED:
                changes["error_message"] = entry.reason
            try:
                moved = self.write(entry.run, changes)
            except Exception as exc:
                logger.warning(
                    "store still unavailable (%s); %d final statuses pending", exc, len(pending)
                )
                return False
            with self._lock:
                self._unsaved.pop(entry.run.task_id, None)
            if moved is not None:
                logger.info(
                    "task %s: %s recorded in the store after the outage",
                    entry.run.task_id,
                    entry.status.value,
                )
        return True

    # -- telling others --------------------------------------------------------------------

    def live_status(self, task_id: str, status: TaskLifecycleStatus, ttl: float) -> None:
        """Write a running task's status (Running, Paused) to the cache now."""
        self._cache([Set(keys.task_status(task_id), status.value, ttl)])

    def _cache(self, ops: list[CacheOp]) -> None:
        try:
            self.backends.cache.apply(ops)
        except Exception:
            logger.exception("could not write a task's state to the cache")

    def status_changed(self, task_id: str, status: TaskLifecycleStatus, reason: str | None) -> None:
        """Run the ``skalds_task_status_changed`` hooks and publish the change."""
        try:
            self.hook.skalds_task_status_changed(
                task_id=task_id, status=status.value, skald_id=self.skald_id, reason=reason
            )
        except Exception:
            logger.exception("a skalds_task_status_changed hook raised")
        self.publish(task_id, status.value, f"{task_id}:{status.value}:{now_ms()}")

    def publish(
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
