"""Retries: failed tasks with tries left go back to Created, after their back-off.

Failures arrive as ``taskworker.update`` events (noted from the bus thread) and are
handled at the dispatcher's next pass; a slow sweep over every Failed task repairs
the ones whose event was missed.

A task is retried at most once per start: the node counts starts in ``attempts``, so
a task that fails again without having started (its attempts unchanged since the
last retry) is left Failed instead of looping through Created forever. That memory
is per controller; after a leader change a task may get one extra try at most.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Iterable

from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import Store, TaskQuery
from skalds.utils.logging import logger
from skalds_controller.rules import plan_retry
from skalds_controller.transitions import Transitions

__all__ = ["Retries"]

S = TaskLifecycleStatus
_REMEMBERED = 10_000


class Retries:
    """Decides and applies the retries of one dispatcher."""

    def __init__(self, store: Store, transitions: Transitions, *, sweep_every: float) -> None:
        self.store = store
        self.transitions = transitions
        self.sweep_every = sweep_every
        self._lock = threading.Lock()
        self._failed: set[str] = set()
        self._retried: OrderedDict[str, int] = OrderedDict()
        self._next_sweep = 0.0

    def note_failed(self, task_ids: Iterable[str]) -> None:
        """Remember tasks reported Failed (any thread); handled at the next :meth:`run`."""
        with self._lock:
            self._failed.update(task_ids)

    def drop_noted(self) -> None:
        """Forget noted failures (not leading: the leader handles them)."""
        with self._lock:
            self._failed.clear()

    def sweep_soon(self) -> None:
        """Scan every Failed task at the next :meth:`run` (a new leader repairs first)."""
        self._next_sweep = 0.0

    def run(self, now_ms: int) -> int:
        """Retry the noted (and, when due, all) Failed tasks that may be; return how many."""
        with self._lock:
            ids, self._failed = self._failed, set()
        failed = {t.id: t for t in (self.store.get_task(i) for i in ids) if t is not None}
        if time.monotonic() >= self._next_sweep:
            self._next_sweep = time.monotonic() + self.sweep_every
            failed.update((t.id, t) for t in self.store.list_tasks(TaskQuery(statuses={S.FAILED})))
        return sum(self._retry(task, now_ms) for task in failed.values())

    def _retry(self, task: Task, now_ms: int) -> bool:
        plan = plan_retry(task, now_ms)
        if plan is None or self._retried.get(task.id) == task.attempts:
            return False  # no tries left, or failed again without starting
        moved = self.transitions.move(
            task.id,
            {S.FAILED},
            S.CREATED,
            plan.message,
            executor=None,
            not_before=plan.not_before_ms,
        )
        if moved is None:
            return False
        self._retried[task.id] = task.attempts
        self._retried.move_to_end(task.id)
        while len(self._retried) > _REMEMBERED:
            self._retried.popitem(last=False)
        logger.info("task %s: %s", task.id, plan.message)
        return True

    def forget_resets(self, waiting: Iterable[Task]) -> None:
        """Tasks re-queued by hand start counting attempts from 0 again: reset their guard."""
        for task in waiting:
            if self._retried.get(task.id, -1) > task.attempts:
                del self._retried[task.id]
