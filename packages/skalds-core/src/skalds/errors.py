"""Every error Skalds raises on purpose, under one root.

Catch :class:`SkaldsError` to handle anything Skalds reports; the subclasses say
what went wrong precisely enough to act on (which task, which field, which file).
"""

from __future__ import annotations

__all__ = [
    "AttachmentValidationError",
    "BackendUnavailableError",
    "ConfigError",
    "DuplicateWorkerError",
    "InvalidTransitionError",
    "MissingExtraError",
    "PublishError",
    "SkaldsError",
    "TaskExistsError",
    "TaskNotFoundError",
    "UnknownBackendError",
    "UnknownWorkerError",
    "WorkerDefinitionError",
    "YamlConfigError",
]


class SkaldsError(Exception):
    """Root of every error Skalds raises on purpose."""


class ConfigError(SkaldsError):
    """A configuration value is missing or wrong."""


class YamlConfigError(ConfigError):
    """The edge/single YAML file cannot be used; the message names file, line and worker."""

    def __init__(
        self, message: str, *, path: str, line: int | None = None, worker: str | None = None
    ) -> None:
        where = path if line is None else f"{path}:{line}"
        prefix = f"{where}: " if worker is None else f"{where}: worker {worker!r}: "
        super().__init__(prefix + message)
        self.path = path
        self.line = line
        self.worker = worker


class UnknownBackendError(ConfigError):
    """No installed plugin answers for a backend URL scheme."""


class MissingExtraError(SkaldsError, ImportError):
    """An optional adapter is not installed; the message says what to ``pip install``."""

    def __init__(self, feature: str, extra: str) -> None:
        super().__init__(f'{feature} support needs: pip install "skalds[{extra}]"')
        self.extra = extra


class WorkerDefinitionError(SkaldsError, TypeError):
    """A TaskWorker class cannot be registered (no main handler, no attachment model...)."""


class DuplicateWorkerError(WorkerDefinitionError):
    """Two different classes claim the same className."""


class UnknownWorkerError(SkaldsError, LookupError):
    """A task names a className that is not registered on this node."""

    def __init__(self, class_name: str, known: list[str]) -> None:
        known_text = ", ".join(sorted(known)) or "none"
        super().__init__(f"unknown worker className {class_name!r}; registered here: {known_text}")
        self.class_name = class_name
        self.known = known


class AttachmentValidationError(SkaldsError, ValueError):
    """Attachments do not fit the worker's model; ``errors`` lists each failing field."""

    def __init__(self, task_id: str | None, class_name: str, errors: list[dict[str, str]]) -> None:
        details = "; ".join(f"{e['field']}: {e['message']}" for e in errors)
        who = f"task {task_id!r} " if task_id else ""
        super().__init__(f"{who}({class_name}): invalid attachments: {details}")
        self.task_id = task_id
        self.class_name = class_name
        self.errors = errors


class TaskNotFoundError(SkaldsError, LookupError):
    """No task with this id in the store."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} not found")
        self.task_id = task_id


class TaskExistsError(SkaldsError):
    """A task with this id already exists."""

    def __init__(self, task_id: str) -> None:
        super().__init__(f"task {task_id!r} already exists")
        self.task_id = task_id


class InvalidTransitionError(SkaldsError):
    """A lifecycle change that the task's current status does not allow."""


class PublishError(SkaldsError):
    """An event could not be delivered to the event bus."""


class BackendUnavailableError(SkaldsError):
    """A backend service (bus, cache, store) cannot be reached."""
