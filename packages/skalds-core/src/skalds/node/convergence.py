"""Bringing a node's local runs in line with the store: events, and the reconcile.

The store is the truth, events are hints. An event names a task (and, from Skalds'
own publishers, the run it is about: its incarnation); the node then acts on what
the store says, so a late, duplicated or reordered event cannot undo a later
change. The reconcile repeats the same comparison for every task of the node, so
whatever events were lost or dropped is done at the next one:

* a task placed here (Created/Assigning) that does not run starts; one the store
  says runs here (Running/Paused) but does not (the node restarted) starts again;
* a local run the store no longer wants here (ended, moved to another node, or a
  later run of it placed here) stops;
* a local run is paused or resumed as the store says;
* a local run whose attachments version is behind the store's is sent the stored
  attachments.

Everything about one task runs on that task's lane, in order with its events.
"""

from __future__ import annotations

from concurrent.futures import Future
from typing import Any

from skalds.errors import SkaldsError, TaskNotFoundError
from skalds.model.task import ACTIVE_STATUSES, Task, TaskLifecycleStatus
from skalds.node.lanes import LaneExecutor
from skalds.node.supervisor import LocalTask, TaskSupervisor
from skalds.ports.store import Store, TaskQuery
from skalds.utils.logging import logger

__all__ = ["Convergence"]

S = TaskLifecycleStatus
_PLACED = frozenset({S.CREATED, S.ASSIGNING})
_LIVE = frozenset({S.RUNNING, S.PAUSED})


class Convergence:
    """A node's actions on task events and its reconcile, all decided from the store."""

    def __init__(
        self, skald_id: str, store: Store, supervisor: TaskSupervisor, lanes: LaneExecutor
    ) -> None:
        self.skald_id = skald_id
        self.store = store
        self.supervisor = supervisor
        self.lanes = lanes

    # -- events -------------------------------------------------------------------------

    def assign(self, task_id: str, incarnation: int | None = None) -> None:
        """``task.assign``: start the task if the store has it placed here (that run)."""
        self.supervisor.start_assigned(task_id, incarnation)

    def cancel(self, task_id: str, incarnation: int | None = None) -> bool:
        """``task.cancel``: stop the local run, and record Cancelled where nobody did.

        Skalds' API records Cancelled before it publishes the event; a seed script may
        only publish it, so the node marks the task Cancelled itself, fenced to its
        own run (a re-queued task, or one moved elsewhere, is left as it is). An event
        about an older run than the local one changes nothing.
        """
        local = self.supervisor.local(task_id)
        if local is not None and self.supervisor.is_stale(local, incarnation, "cancel"):
            return False
        running = self.supervisor.cancel(task_id, incarnation)
        if local is not None:
            run = self.supervisor.run_of(local)
            self._write_cancelled(task_id, lambda: self.supervisor.outcomes.write(run, _CANCEL))
            return running
        # Nothing runs here: a task placed here and not started yet is cancelled too.
        self._write_cancelled(
            task_id,
            lambda: self.store.update_task(
                task_id,
                _CANCEL,
                expected_status=ACTIVE_STATUSES,
                expected_executor=self.skald_id,
                expected_incarnation=incarnation,
            ),
        )
        return running

    @staticmethod
    def _write_cancelled(task_id: str, write: Any) -> None:
        try:
            write()
        except TaskNotFoundError:
            logger.debug("task %s: cancelled and deleted", task_id)
        except SkaldsError as exc:  # the store is down: the API's write stands
            logger.warning("task %s: could not record Cancelled: %s", task_id, exc)

    def attachments_changed(self, task_id: str, incarnation: int | None = None) -> None:
        """``task.update.attachment``: send the stored attachments if the run is behind."""
        local = self.supervisor.local(task_id)
        if local is None:
            return
        if self.supervisor.is_stale(local, incarnation, "attachments update"):
            return
        stored = self.store.get_task(task_id)
        if stored is None:
            logger.warning("task.update.attachment for %s, which is not in the store", task_id)
            return
        self.supervisor.converge_attachments(stored)

    def pause(self, task_id: str, paused: bool, incarnation: int | None = None) -> bool:
        """``task.pause``/``task.resume``.

        With an incarnation (Skalds' API stores the status it asks for first) the
        local run takes the status the store holds now, so of a pause and a resume
        the last one asked for wins, in whatever order their events arrive. Without
        one (an older publisher) the event is the request, recorded by the node.
        """
        if incarnation is None:
            return self.supervisor.set_paused(task_id, paused)
        local = self.supervisor.local(task_id)
        if local is None or local.incarnation != incarnation:
            return False
        stored = self.store.get_task(task_id)
        if stored is None or not self.supervisor.run_of(local).held_by(stored):
            return False
        return self._converge_status(local, stored)

    # -- the reconcile ------------------------------------------------------------------------

    def reconcile(self, at_start: bool = False) -> list[Future[Any]]:
        """Compare every task of this node with the store; hand each fix to its lane.

        Returns the futures of the fixes (a caller may wait for them). At start, the
        tasks the store says run here are started again: their processes died with
        the node's previous run.
        """
        supervisor = self.supervisor
        if not supervisor.flush_unsaved():
            return []
        try:
            mine = self.store.list_tasks(
                TaskQuery(executor=self.skald_id, statuses=ACTIVE_STATUSES)
            )
        except Exception as exc:
            logger.error("reconcile: cannot read the store: %s", exc)
            return []
        by_id = {task.id: task for task in mine}
        fixes: list[Future[Any]] = []
        for task in mine:
            if supervisor.outcomes.unsaved(task.id):
                continue
            fixes.append(self.lanes.submit_for(task.id, self._fix, task, at_start))
        with supervisor.lock:
            local_ids = list(supervisor.tasks)
        for task_id in local_ids:
            if task_id not in by_id:
                fixes.append(self.lanes.submit_for(task_id, self._fix_gone, task_id))
        return fixes

    def _fix(self, task: Task, at_start: bool) -> None:
        """Bring the local run of ``task`` (as listed, this node's) in line with it."""
        local = self.supervisor.local(task.id)
        if local is None:
            if task.lifecycle_status in _PLACED:
                logger.info(
                    "reconcile: starting task %s (%s in the store)",
                    task.id,
                    task.lifecycle_status.value,
                )
                self.supervisor.start_task(task, _PLACED)
            elif task.lifecycle_status in _LIVE:
                if not at_start:
                    logger.warning(
                        "reconcile: task %s is %s here in the store but has no process; "
                        "restarting it",
                        task.id,
                        task.lifecycle_status.value,
                    )
                else:
                    logger.info(
                        "reconcile: restarting task %s (%s before the node stopped)",
                        task.id,
                        task.lifecycle_status.value,
                    )
                started = self.supervisor.start_task(task, _LIVE)
                if started and task.lifecycle_status is S.PAUSED:
                    self.supervisor.set_paused(task.id, True)  # as it was asked to be
            return
        if local.incarnation != task.incarnation:
            logger.info(
                "reconcile: task %s runs here as run %d, the store holds run %d; stopping it",
                task.id,
                local.incarnation,
                task.incarnation,
            )
            self.supervisor.cancel(task.id, local.incarnation)
            if task.lifecycle_status in _PLACED:
                self.supervisor.start_assigned(task.id, task.incarnation)  # once it stopped
            return
        if task.lifecycle_status in _LIVE:
            self._converge_status(local, task)
            self.supervisor.converge_attachments(task)

    def _fix_gone(self, task_id: str) -> None:
        """A local run the listing did not show: stop it unless the store still wants it."""
        local = self.supervisor.local(task_id)
        if local is None or local.cancel_requested:
            return
        stored = self.store.get_task(task_id)
        if (
            stored is not None
            and self.supervisor.run_of(local).held_by(stored)
            and not stored.lifecycle_status.is_final
        ):
            return  # changed since the listing: the next reconcile looks again
        why = (
            "gone from the store"
            if stored is None
            else f"{stored.lifecycle_status.value}, executor {stored.executor}, "
            f"run {stored.incarnation}"
        )
        logger.info("reconcile: stopping task %s (%s)", task_id, why)
        self.supervisor.cancel(task_id, local.incarnation)

    def _converge_status(self, local: LocalTask, stored: Task) -> bool:
        """Pause or resume the local run as the store says; True when it changed."""
        want_paused = stored.lifecycle_status is S.PAUSED
        if stored.lifecycle_status not in _LIVE or want_paused == (local.status is S.PAUSED):
            return False
        return self.supervisor.set_paused(
            local.task_id, want_paused, incarnation=local.incarnation, write=False
        )


_CANCEL = {"lifecycle_status": S.CANCELLED}
