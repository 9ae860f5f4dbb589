"""The TaskWorker base classes users subclass (seed API).

Lifecycle of :meth:`AbstractTaskWorker.start`, the same standalone and under a node:

1. ``@run_before_handler`` → 2. ``@run_main_handler`` → 3. ``@run_after_handler``,
   each only when the previous one returned normally;
4. an exception in any of them → ``_error_handler(exc)``; the task is Failed;
5. ``@release_handler`` always runs last (also after a cancel); an exception in it
   fails a task that had otherwise finished.

A cancel (SIGTERM, or Ctrl-C standalone) interrupts the running handler with
:class:`TaskCancelled`, a ``BaseException`` so ordinary ``except Exception`` blocks
in user code do not swallow it; the release handler still runs.

``@update_event_handler`` runs on a background thread, concurrently with the main
handler, so a long ``for`` loop in main sees new values on its next iteration.
"""

from __future__ import annotations

import _signal  # type: ignore[import-not-found]  # the C module under signal (no stubs)
import os
import signal
import threading
import traceback
import typing
from collections.abc import Callable
from types import FrameType
from typing import Any, ClassVar, Generic, TypeVar

from pydantic import BaseModel, ValidationError

from skalds.errors import AttachmentValidationError, WorkerDefinitionError
from skalds.model.task import TaskLifecycleStatus
from skalds.utils.logging import configure_logging, logger
from skalds.worker.handlers import (
    HANDLER_ATTR,
    HandlerKind,
    release_handler,
    run_after_handler,
    run_before_handler,
    run_main_handler,
    update_event_handler,
)

__all__ = [
    "AbstractTaskWorker",
    "BaseTaskWorker",
    "TaskCancelled",
    "WorkerReporter",
    "release_handler",
    "run_after_handler",
    "run_before_handler",
    "run_main_handler",
    "update_event_handler",
]

T = TypeVar("T", bound=BaseModel)


class TaskCancelled(BaseException):
    """Raised inside a worker when its task is cancelled (SIGTERM)."""


class WorkerReporter:
    """Where a worker reports heartbeats and failures; the node replaces this default."""

    def failure(self, task_id: str, error: str, tb: str) -> None:
        """A lifecycle handler raised (standalone: already logged, nothing more to do)."""


def format_errors(exc: ValidationError) -> list[dict[str, str]]:
    """Turn a pydantic error into ``[{field, message}]`` entries people can read."""
    out = []
    for err in exc.errors(include_url=False):
        field = ".".join(str(p) for p in err.get("loc", ())) or "(attachments)"
        out.append({"field": field, "message": str(err.get("msg", "invalid"))})
    return out


def _find_model(cls: type) -> type[BaseModel] | None:
    for klass in cls.__mro__:
        for base in getattr(klass, "__orig_bases__", ()):
            origin = typing.get_origin(base)
            if isinstance(origin, type) and issubclass(origin, AbstractTaskWorker):
                args = typing.get_args(base)
                if args and isinstance(args[0], type) and issubclass(args[0], BaseModel):
                    return args[0]
    return None


class AbstractTaskWorker(Generic[T]):
    """A task's code: typed attachments ``T`` plus lifecycle handlers.

    Attributes:
        task_id: the task this worker runs (a placeholder when standalone).
        task_type: the worker's className.
        dependencies: ids of tasks this one depended on.
        incarnation: which run of the task this process is (placements so far; 0
            standalone).
        attachments_version: the version of the attachments this worker holds: the
            one it started with, then that of each update, set before the update
            handler runs (back to the previous one if the handler raises).
    """

    _skalds_handlers: ClassVar[dict[HandlerKind, str]] = {}

    def __init__(self, task_id: str | None = None) -> None:
        self.task_id: str = task_id or f"{type(self).__name__}-standalone"
        self.task_type: str = type(self).__name__
        self.dependencies: list[str] = []
        self.incarnation: int = 0
        self.attachments_version: int = 0
        self._reporter: WorkerReporter = WorkerReporter()
        self._stopping = threading.Event()
        self._releasing = False
        self._failure: tuple[str, str] | None = None

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        handlers: dict[HandlerKind, str] = {}
        for klass in reversed(cls.__mro__):
            for name, value in vars(klass).items():
                kind = getattr(value, HANDLER_ATTR, None)
                if kind is not None:
                    handlers[kind] = name
        cls._skalds_handlers = handlers

    # -- class-level facts used by the registry and the node ------------------

    @classmethod
    def data_model(cls) -> type[BaseModel] | None:
        """Return the attachments model ``T`` from ``BaseTaskWorker[T]``, if declared."""
        return _find_model(cls)

    @classmethod
    def has_handler(cls, kind: HandlerKind) -> bool:
        """Return whether the class has a handler of ``kind``."""
        return kind in cls._skalds_handlers

    @classmethod
    def check_definition(cls) -> None:
        """Raise ``WorkerDefinitionError`` unless the class can run as a worker."""
        name = f"{cls.__module__}.{cls.__qualname__}"
        overrides_main = cls._run_main is not AbstractTaskWorker._run_main
        if not cls.has_handler("main") and not overrides_main:
            raise WorkerDefinitionError(
                f"{name} has no @run_main_handler method; decorate the method that does "
                "the task's work with @run_main_handler"
            )
        if cls.data_model() is None:
            raise WorkerDefinitionError(
                f"{name} does not declare its attachments model; subclass "
                f"BaseTaskWorker[YourModel] where YourModel is a pydantic BaseModel"
            )

    @classmethod
    def validate_attachments(cls, data: Any, task_id: str | None = None) -> T:
        """Validate ``data`` (dict by field name or alias, or a model) into ``T``.

        Raises:
            AttachmentValidationError: naming each failing field and why.
        """
        model = cls.data_model()
        if model is None:
            raise WorkerDefinitionError(f"{cls.__qualname__} declares no attachments model")
        if isinstance(data, BaseModel):
            data = data.model_dump(by_alias=True)
        try:
            return typing.cast(T, model.model_validate(data or {}, by_alias=True, by_name=True))
        except ValidationError as exc:
            raise AttachmentValidationError(task_id, cls.__name__, format_errors(exc)) from None

    # -- the lifecycle ---------------------------------------------------------

    def initialize(self, data: T) -> None:
        """Receive the task's attachments before the task starts (override this)."""
        self.attachments = data

    def _call(self, kind: HandlerKind, *args: Any) -> None:
        name = self._skalds_handlers.get(kind)
        if name is not None:
            getattr(self, name)(*args)

    def _run_before(self) -> None:
        self._call("before")

    def _run_main(self) -> None:
        self._call("main")

    def _run_after(self) -> None:
        self._call("after")

    def _release(self, *args: Any) -> None:
        self._call("release")

    def _error_handler(self, exc: BaseException) -> None:
        """Report a failure: log it with its traceback and tell the node."""
        error, tb = self._failure or (f"{type(exc).__name__}: {exc}", "")
        logger.error("task %s failed: %s\n%s", self.task_id, error, tb.rstrip())
        self._reporter.failure(self.task_id, error, tb)

    def handle_update_message(self, attachments: Any, version: int | None = None) -> None:
        """Validate new attachments and pass them to the ``@update_event_handler``.

        Args:
            attachments: the new attachments (as stored: a dict by alias).
            version: their version, set as :attr:`attachments_version` while the
                handler runs and kept when it returns.
        """
        data = self.validate_attachments(attachments, self.task_id)
        previous = self.attachments_version
        if version is not None:
            self.attachments_version = version
        if not self.has_handler("update"):
            logger.warning(
                "task %s: %s has no @update_event_handler; update ignored",
                self.task_id,
                type(self).__name__,
            )
            return
        try:
            self._call("update", data)
        except BaseException:
            self.attachments_version = previous
            raise

    def _on_sigterm(self, signum: int, frame: FrameType | None) -> None:
        if self._stopping.is_set():
            return
        self._stopping.set()
        if not self._releasing:
            raise TaskCancelled(f"task {self.task_id} cancelled by signal {signum}")

    def _install_signal_handlers(self) -> Callable[[], None]:
        if threading.current_thread() is not threading.main_thread():
            return lambda: None
        _reset_sigterm_in_forked_children()
        # ``_signal``, the C module under ``signal``: the same call without converting
        # numbers and handlers to enums, objects a task process would copy a page for.
        previous = _signal.signal(_signal.SIGTERM, self._on_sigterm)

        def restore() -> None:
            _signal.signal(_signal.SIGTERM, previous)

        return restore

    def _record_failure(self, exc: BaseException) -> None:
        self._failure = (
            f"{type(exc).__name__}: {exc}",
            "".join(traceback.format_exception(type(exc), exc, exc.__traceback__)),
        )

    def start(self) -> TaskLifecycleStatus:
        """Run the task's lifecycle in this process and return how it ended.

        Standalone (the seeds' ``if __name__ == "__main__"`` pattern) this needs no
        services: logs go to the console, SIGTERM or Ctrl-C cancel the task.
        """
        configure_logging()
        restore = self._install_signal_handlers()
        status = TaskLifecycleStatus.FINISHED
        try:
            try:
                self._run_before()
                self._run_main()
                self._run_after()
            except (TaskCancelled, KeyboardInterrupt):
                status = TaskLifecycleStatus.CANCELLED
                logger.info("task %s cancelled; releasing", self.task_id)
            except Exception as exc:
                status = TaskLifecycleStatus.FAILED
                self._record_failure(exc)
                self._error_handler(exc)
            status = self._release_safely(status)
        finally:
            restore()
        return status

    def _release_safely(self, status: TaskLifecycleStatus) -> TaskLifecycleStatus:
        self._releasing = True
        try:
            self._release()
        except Exception as exc:
            if status is TaskLifecycleStatus.FINISHED:
                status = TaskLifecycleStatus.FAILED
                self._record_failure(exc)
                self._error_handler(exc)
            else:
                logger.exception("task %s: release handler raised", self.task_id)
        return status


class BaseTaskWorker(AbstractTaskWorker[T], Generic[T]):
    """The worker base class to subclass: ``class MyWorker(BaseTaskWorker[MyModel])``.

    Under a node it is wired to the node's pipe (heartbeats, updates, error reports);
    standalone it runs with no services at all.
    """


_fork_hook_installed = False


def _reset_sigterm_in_forked_children() -> None:
    """Give processes a worker forks (``multiprocessing`` pools...) the default SIGTERM.

    They inherit the worker's handler, which would make a pool process that its pool
    terminates raise :class:`TaskCancelled` (and print it) as if it were the task.
    """
    global _fork_hook_installed
    if _fork_hook_installed:
        return
    _fork_hook_installed = True

    def after_fork_in_child() -> None:
        handler = signal.getsignal(signal.SIGTERM)
        if isinstance(getattr(handler, "__self__", None), AbstractTaskWorker):
            signal.signal(signal.SIGTERM, signal.SIG_DFL)

    os.register_at_fork(after_in_child=after_fork_in_child)
