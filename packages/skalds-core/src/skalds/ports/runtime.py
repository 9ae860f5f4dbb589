"""Worker runtime port: how a task's process is started, signalled and stopped."""

from __future__ import annotations

import abc
from dataclasses import dataclass, field
from typing import Any, Protocol

from skalds.model.task import TaskLifecycleStatus

__all__ = ["WorkerListener", "WorkerOutcome", "WorkerRuntime", "WorkerSpec"]


@dataclass(frozen=True)
class WorkerSpec:
    """Everything a worker process needs to start one task.

    ``extra`` may hold ``dependencies`` (task ids), ``incarnation`` (the run) and
    ``attachments_version`` (of ``attachments``), which the worker sees as attributes.
    """

    task_id: str
    class_name: str
    attachments: dict[str, Any]
    log_file: str | None = None
    extra: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class WorkerOutcome:
    """How a worker process ended."""

    status: TaskLifecycleStatus
    """Finished, Failed or Cancelled."""
    exit_code: int | None = None
    """Process exit code; negative for a signal, as in :mod:`subprocess`."""
    error: str | None = None
    """The reason for a failure: exception text or how the process died."""
    traceback: str | None = None


class WorkerListener(Protocol):
    """What a runtime reports back to its node. Called from the runtime's thread."""

    def worker_started(self, task_id: str, pid: int) -> None:
        """The process is up."""

    def worker_heartbeat(self, task_id: str, value: int) -> None:
        """The worker is alive; ``value`` is its running counter (0-199)."""

    def worker_update_applied(
        self, task_id: str, seq: int, error: str | None, version: int | None = None
    ) -> None:
        """The worker's update handler returned (``error`` set when it raised).

        ``version`` is the attachments version of that update, as the worker got it.
        """

    def worker_exited(self, task_id: str, outcome: WorkerOutcome) -> None:
        """The process is gone, with the outcome."""


class WorkerRuntime(abc.ABC):
    """Starts and controls worker processes; one instance per node."""

    def start(self) -> None:  # noqa: B027 - optional lifecycle
        """Prepare (e.g. start a fork server). Called before the node starts threads."""

    @abc.abstractmethod
    def spawn(self, spec: WorkerSpec) -> int:
        """Start a worker for ``spec``; return its pid."""

    @abc.abstractmethod
    def send_update(self, task_id: str, attachments: dict[str, Any], version: int = 0) -> int:
        """Send validated attachments (``version`` of them) to the worker, without blocking.

        A paused worker gets them when it resumes; only the latest of several waits.

        Returns:
            The update's sequence number (the worker confirms it by that number).
        """

    @abc.abstractmethod
    def set_paused(self, task_id: str, paused: bool) -> None:
        """Pause (stop scheduling) or resume the worker's whole process group."""

    @abc.abstractmethod
    def cancel(self, task_id: str, grace: float) -> None:
        """SIGTERM the worker's process group, SIGKILL it after ``grace`` seconds."""

    def running(self) -> list[str]:
        """Return the ids of tasks whose process is alive."""
        return []

    def close(self, grace: float = 5.0) -> None:  # noqa: B027 - optional lifecycle
        """Stop every worker and release the runtime."""
