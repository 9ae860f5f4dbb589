"""Errors only the MongoDB store raises, under :class:`skalds.errors.SkaldsError`.

Unreachable servers raise the core's ``BackendUnavailableError`` and refused logins
its ``ConfigError``; these cover what is specific to documents in MongoDB.
"""

from __future__ import annotations

from skalds.errors import SkaldsError

__all__ = ["MongoStoreError", "TaskDocumentError", "TaskLockTimeoutError"]


class MongoStoreError(SkaldsError):
    """MongoDB answered with an error that is neither an outage nor a refused login."""


class TaskDocumentError(SkaldsError, ValueError):
    """A stored task document does not validate (written by something else, or damaged).

    Only this task is affected: listings skip it (and log it), reads of it raise this.
    """

    def __init__(self, task_id: str, problems: list[tuple[str, str]]) -> None:
        details = "; ".join(f"{field}: {message}" for field, message in problems)
        super().__init__(f"task {task_id!r} has an invalid document in MongoDB: {details}")
        self.task_id = task_id
        self.problems = problems


class TaskLockTimeoutError(SkaldsError):
    """Another writer held a task's write lock for longer than we could wait."""

    def __init__(self, task_id: str, waited: float) -> None:
        super().__init__(
            f"task {task_id!r} is being changed by another writer; gave up after {waited:.1f} s"
        )
        self.task_id = task_id
