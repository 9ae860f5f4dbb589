"""Edge mode: the tasks come from a YAML file, and edits to the file apply live.

On each change of the file the node compares the new entries with what it applied
last: new ids start, removed ids stop, changed attachments become an update event
(validated first: an invalid change is reported and the worker keeps its old
parameters), a changed className restarts the task. A file that does not parse
changes nothing. The node never writes to the user's file.
"""

from __future__ import annotations

import hashlib
import threading
from concurrent.futures import Executor
from pathlib import Path
from typing import TYPE_CHECKING, Any

from skalds.errors import (
    AttachmentValidationError,
    SkaldsError,
    UnknownWorkerError,
    YamlConfigError,
)
from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
from skalds.node.yaml_config import YamlWorker, read_yaml_file
from skalds.ports.runtime import WorkerOutcome
from skalds.ports.store import Increment
from skalds.utils.logging import logger

if TYPE_CHECKING:
    from skalds.node.skald import Skald

__all__ = ["EdgeRunner"]

S = TaskLifecycleStatus
_POLL_SECONDS = 0.5


class EdgeRunner:
    """Applies a YAML file to a node and watches it for changes."""

    def __init__(self, skald: Skald, path: str, executor: Executor) -> None:
        self.skald = skald
        self.path = Path(path)
        self.executor = executor
        self.applied: dict[str, YamlWorker] = {}
        self._digest: str | None = None
        self._restart_after_exit: dict[str, YamlWorker] = {}
        skald.supervisor.on_task_ended.append(self._on_task_ended)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        """Apply the file now (errors are logged, not raised), then watch it."""
        self.executor.submit(self.reload).result()
        self._thread = threading.Thread(target=self._watch, name="skalds-yaml", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)

    def _fingerprint(self) -> str | None:
        try:
            return hashlib.sha256(self.path.read_bytes()).hexdigest()
        except OSError:
            return None

    def _watch(self) -> None:
        while not self._stop.wait(_POLL_SECONDS):
            if self._fingerprint() != self._digest:
                try:
                    self.executor.submit(self.reload).result()
                except Exception:
                    logger.exception("reloading %s failed", self.path)

    def reload(self) -> None:
        """Read the file and bring the running workers in line with it."""
        self._digest = self._fingerprint()
        try:
            parsed = read_yaml_file(self.path)
        except YamlConfigError as exc:
            logger.error("%s; running workers are left as they are", exc)
            return
        for warning in parsed.warnings:
            logger.warning(warning)
        for error in parsed.errors:
            logger.error("%s; this worker is skipped", error)
        wanted = {w.task_id: w for w in parsed.workers}
        broken = {e.worker for e in parsed.errors}
        for task_id in list(self.applied):
            if task_id not in wanted and task_id not in broken:
                logger.info("%s: worker %r removed from the file; stopping it", self.path, task_id)
                self.skald.cancel_task(task_id)
                del self.applied[task_id]
        for worker in parsed.workers:
            try:
                self._apply(worker)
            except YamlConfigError as exc:
                logger.error("%s; this worker is left as it was", exc)

    def _check(self, worker: YamlWorker) -> None:
        try:
            entry = self.skald.registry.get(worker.class_name)
            entry.cls.validate_attachments(worker.attachments, worker.task_id)
        except (UnknownWorkerError, AttachmentValidationError) as exc:
            raise YamlConfigError(
                str(exc), path=str(self.path), line=worker.line, worker=worker.task_id
            ) from None

    def _apply(self, worker: YamlWorker) -> None:
        old = self.applied.get(worker.task_id)
        if old == worker or (old is not None and _same_but_line(old, worker)):
            self.applied[worker.task_id] = worker
            return
        self._check(worker)
        running = worker.task_id in self.skald.supervisor.tasks
        if old is not None and running and old.class_name == worker.class_name:
            if old.attachments != worker.attachments:
                logger.info(
                    "%s: attachments of %r changed; updating the worker", self.path, worker.task_id
                )
                stored = self.skald.store.update_task(
                    worker.task_id,
                    {"attachments": worker.attachments, "is_persistent": worker.is_persistent},
                )
                if stored is not None:
                    self.skald.supervisor.converge_attachments(stored)
            self.applied[worker.task_id] = worker
            return
        self.applied[worker.task_id] = worker
        if running:
            # Start the new class once the old process is gone (reported on this same
            # executor, so waiting for it here would never end).
            logger.info("%s: className of %r changed; restarting it", self.path, worker.task_id)
            self._restart_after_exit[worker.task_id] = worker
            self.skald.cancel_task(worker.task_id)
            return
        self._launch(worker)

    def _on_task_ended(self, task_id: str, outcome: WorkerOutcome) -> None:
        worker = self._restart_after_exit.pop(task_id, None)
        if worker is not None and self.applied.get(task_id) == worker:
            self._launch(worker)

    def _launch(self, worker: YamlWorker) -> None:
        store = self.skald.store
        fields: dict[str, Any] = {
            "class_name": worker.class_name,
            "attachments": worker.attachments,
            "is_persistent": worker.is_persistent,
            "executor": self.skald.skald_id,
            "mode": ModeEnum.ACTIVE,
            "source": "YAML",
            "lifecycle_status": S.CREATED,
            "error_message": None,
        }
        # Each launch is a new run of the task (its incarnation goes up by one).
        placed = {**fields, "incarnation": Increment(1)}
        if store.get_task(worker.task_id) is None:
            try:
                store.create_task(Task(id=worker.task_id, incarnation=1, **fields))
            except SkaldsError:
                store.update_task(worker.task_id, placed)
        else:
            store.update_task(worker.task_id, placed)
        stored = store.get_task(worker.task_id)
        if stored is not None:
            self.skald.supervisor.start_task(stored, {S.CREATED})


def _same_but_line(a: YamlWorker, b: YamlWorker) -> bool:
    return (a.class_name, a.attachments, a.is_persistent) == (
        b.class_name,
        b.attachments,
        b.is_persistent,
    )
