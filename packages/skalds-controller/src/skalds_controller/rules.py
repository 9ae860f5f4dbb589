"""The dispatcher's decisions about one task, as pure functions (no I/O, easy to test).

Deadlines, dependencies and retries are judged here from the task documents; the
dispatcher does the reading and the compare-and-set writing.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from enum import Enum

from skalds.model.task import ModeEnum, RetryPolicy, Task, TaskLifecycleStatus

__all__ = [
    "DependencyCheck",
    "Readiness",
    "RetryPlan",
    "backoff_seconds",
    "check_dependencies",
    "deadline_passed",
    "plan_retry",
    "too_late_to_start",
]

S = TaskLifecycleStatus


class Readiness(Enum):
    """Whether a task's dependencies let it run."""

    READY = "ready"
    WAIT = "wait"
    FAIL = "fail"


@dataclass(frozen=True)
class DependencyCheck:
    """The verdict on a task's dependencies, with the reason when it fails."""

    readiness: Readiness
    reason: str | None = None
    finished_at_ms: int = 0
    """When the last dependency finished (0 without dependencies): for dispatch latency."""


def deadline_passed(task: Task, now_ms: int) -> bool:
    """True when the task has a deadline and it is reached."""
    return task.deadline_date_time is not None and task.deadline_date_time <= now_ms


def too_late_to_start(task: Task, now_ms: int) -> bool:
    """True when a task that never started has reached its deadline.

    Deadlines gate the first start only: a task that started once (``attempts``
    counts starts) and is waiting again, re-queued by a failover or by a retry, is
    placed whatever the time; failing a camera stream a week after it was created
    because its node died would be wrong.
    """
    return task.attempts == 0 and deadline_passed(task, now_ms)


def check_dependencies(task: Task, lookup: Callable[[str], Task | None]) -> DependencyCheck:
    """Judge ``task.dependencies``: all Finished → READY; any Failed/Cancelled/missing → FAIL.

    Args:
        task: the waiting task.
        lookup: reads a task by id (``None`` when there is no such task).
    """
    finished_at = 0
    waiting = False
    for dep_id in task.dependencies or []:
        if dep_id == task.id:
            return DependencyCheck(Readiness.FAIL, "the task depends on itself")
        dep = lookup(dep_id)
        if dep is None:
            return DependencyCheck(Readiness.FAIL, f"dependency {dep_id!r} does not exist")
        status = dep.lifecycle_status
        if status in (S.FAILED, S.CANCELLED):
            detail = f": {dep.error_message}" if dep.error_message else ""
            return DependencyCheck(
                Readiness.FAIL, f"dependency {dep_id!r} is {status.value}{detail}"
            )
        if status is S.FINISHED:
            finished_at = max(finished_at, dep.update_date_time)
        else:
            waiting = True
    if waiting:
        return DependencyCheck(Readiness.WAIT)
    return DependencyCheck(Readiness.READY, finished_at_ms=finished_at)


def backoff_seconds(policy: RetryPolicy, attempts: int) -> float:
    """Wait before the next try after ``attempts`` tries: doubled each time, capped."""
    exponent = max(0, attempts - 1)
    # 2**exponent overflows floats long after the cap applies; stop doubling early.
    if exponent > 60:
        return policy.max_backoff_seconds
    return float(min(policy.backoff_seconds * 2**exponent, policy.max_backoff_seconds))


@dataclass(frozen=True)
class RetryPlan:
    """Put a failed task back to Created, not to be dispatched before ``not_before_ms``."""

    not_before_ms: int
    message: str


def plan_retry(task: Task, now_ms: int) -> RetryPlan | None:
    """Decide whether a Failed task is tried again, and when.

    Only a task that actually ran (``attempts >= 1``: the node counts each start) and
    has tries left is retried; a failure before any start (unknown class, invalid
    attachments, deadline, failed dependency) would fail the same way again. No retry
    is planned once the deadline passed (one planned before it runs after its
    back-off, as the task started in time). Tasks from an edge node's YAML file
    belong to that node and are never moved.
    """
    policy = task.retry_policy
    if (
        policy is None
        or task.lifecycle_status is not S.FAILED
        or task.mode is ModeEnum.ACTIVE
        or task.attempts < 1
        or task.attempts >= policy.max_attempts
        or deadline_passed(task, now_ms)
    ):
        return None
    wait = backoff_seconds(policy, task.attempts)
    lines = (task.error_message or "").strip().splitlines()
    reason = lines[0][:300] if lines else "failed"
    message = (
        f"attempt {task.attempts} of {policy.max_attempts} failed ({reason}); "
        f"next try in {wait:g} s"
    )
    return RetryPlan(now_ms + int(wait * 1000), message)
