"""Retries: failed tasks with tries left go back to Created, after their back-off.

Failures arrive as ``taskworker.update`` events (noted from the bus thread) and are
handled at the dispatcher's next pass; a slow sweep over the Failed tasks repairs
the ones whose event was missed. The sweep reads them a page at a time and at most
``pages_per_run`` pages per pass, resuming at the next pass where it stopped, so a
long history of failures is never loaded in one go nor holds up dispatching.

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
from skalds_controller.rules import RetryPlan, plan_retry
from skalds_controller.transitions import Transitions

__all__ = ["Retries"]

S = TaskLifecycleStatus
_REMEMBERED = 10_000
_PAGE_SIZE = 500
_PAGES_PER_RUN = 20


class Retries:
    """Decides and applies the retries of one dispatcher.

    Args:
        store: where the tasks are.
        transitions: moves a task back to Created and announces it.
        sweep_every: seconds between two complete sweeps over the Failed tasks.
        page_size: Failed tasks read per store query during a sweep.
        pages_per_run: pages read at most per :meth:`run`; a longer sweep goes on
            at the next run.
    """

    def __init__(
        self,
        store: Store,
        transitions: Transitions,
        *,
        sweep_every: float,
        page_size: int = _PAGE_SIZE,
        pages_per_run: int = _PAGES_PER_RUN,
    ) -> None:
        if page_size < 1 or pages_per_run < 1:
            raise ValueError("page_size and pages_per_run must be at least 1")
        self.store = store
        self.transitions = transitions
        self.sweep_every = sweep_every
        self.page_size = page_size
        self.pages_per_run = pages_per_run
        self._lock = threading.Lock()
        self._failed: set[str] = set()
        self._retried: OrderedDict[str, int] = OrderedDict()
        self._next_sweep = 0.0
        self._sweep_offset = 0

    def note_failed(self, task_ids: Iterable[str]) -> None:
        """Remember tasks reported Failed (any thread); handled at the next :meth:`run`."""
        with self._lock:
            self._failed.update(task_ids)

    def drop_noted(self) -> None:
        """Forget noted failures (not leading: the leader handles them)."""
        with self._lock:
            self._failed.clear()

    def sweep_soon(self) -> None:
        """Sweep the Failed tasks from the start at the next :meth:`run` (a new leader)."""
        self._next_sweep = 0.0
        self._sweep_offset = 0

    def run(self, now_ms: int) -> int:
        """Retry the noted (and, when due, swept) Failed tasks that may be; return how many."""
        with self._lock:
            ids, self._failed = self._failed, set()
        noted = (self.store.get_task(i) for i in ids)
        retried = sum(self._retry(task, now_ms) for task in noted if task is not None)
        if time.monotonic() >= self._next_sweep:
            retried += self._sweep(now_ms)
        return retried

    def _sweep(self, now_ms: int) -> int:
        """Check up to ``pages_per_run`` pages of Failed tasks, from where the last run stopped."""
        offset = self._sweep_offset
        checked = retriable = retried = 0
        done = False
        for _ in range(self.pages_per_run):
            query = TaskQuery(statuses={S.FAILED}, offset=offset, limit=self.page_size)
            page = self.store.list_tasks(query)
            moved = 0
            for task in page:
                plan = plan_retry(task, now_ms)
                if plan is not None:
                    retriable += 1
                    moved += self._apply(task, plan)
            checked += len(page)
            # Retried tasks left the Failed set: the ones after them moved up by as many.
            offset += len(page) - moved
            retried += moved
            if len(page) < self.page_size:
                done = True
                break
        self._sweep_offset = 0 if done else offset
        self._next_sweep = time.monotonic() + (self.sweep_every if done else 0.0)
        logger.debug(
            "retries: swept %d failed tasks (%d could be retried, %d retried)%s",
            checked,
            retriable,
            retried,
            "" if done else f"; going on from {offset} at the next pass",
        )
        return retried

    def _retry(self, task: Task, now_ms: int) -> bool:
        plan = plan_retry(task, now_ms)
        return plan is not None and self._apply(task, plan)

    def _apply(self, task: Task, plan: RetryPlan) -> bool:
        if self._retried.get(task.id) == task.attempts:
            return False  # failed again without starting
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
