"""Which worker classes a node may run, by className.

Only registered classes ever run: an event or a YAML file names a class, and the
name is looked up here; nothing is ever imported because an event said so.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from importlib_metadata import entry_points

from skalds.errors import DuplicateWorkerError, UnknownWorkerError, WorkerDefinitionError
from skalds.utils.logging import logger
from skalds.worker.baseclass import AbstractTaskWorker

__all__ = ["WORKERS_GROUP", "RegisteredWorker", "WorkerRegistry"]

WORKERS_GROUP = "skalds.workers"


@dataclass(frozen=True)
class RegisteredWorker:
    """A worker class and where it came from (for error messages and ``skalds workers``)."""

    cls: type[AbstractTaskWorker[Any]]
    source: str

    @property
    def class_name(self) -> str:
        """The name tasks use to ask for this worker."""
        return self.cls.__name__

    def json_schema(self) -> dict[str, Any]:
        """The JSON Schema of the attachments model (by alias, as stored)."""
        model = self.cls.data_model()
        return model.model_json_schema(by_alias=True) if model else {}

    def describe(self) -> dict[str, Any]:
        """What a node publishes about this worker: name, source, schema, update support."""
        return {
            "className": self.class_name,
            "source": self.source,
            "supportsUpdate": self.cls.has_handler("update"),
            "schema": self.json_schema(),
        }


class WorkerRegistry:
    """A thread-safe map ``className → worker class``, one per node."""

    def __init__(self) -> None:
        self._workers: dict[str, RegisteredWorker] = {}
        self._lock = threading.Lock()

    def register(self, cls: type, source: str = "register_task_worker") -> RegisteredWorker:
        """Register ``cls`` under its class name.

        Registering the same class twice is a no-op; a *different* class with the
        same name is an error naming both sources.

        Raises:
            WorkerDefinitionError: ``cls`` is not a usable TaskWorker class.
            DuplicateWorkerError: another class already has this className.
        """
        if not (isinstance(cls, type) and issubclass(cls, AbstractTaskWorker)):
            raise WorkerDefinitionError(
                f"{cls!r} (from {source}) is not a TaskWorker class; subclass "
                "skalds.worker.baseclass.BaseTaskWorker[YourModel]"
            )
        cls.check_definition()
        entry = RegisteredWorker(cls, source)
        with self._lock:
            existing = self._workers.get(entry.class_name)
            if existing is not None:
                if existing.cls is cls:
                    return existing
                raise DuplicateWorkerError(
                    f"two worker classes are named {entry.class_name!r}: "
                    f"{_where(existing.cls)} from {existing.source}, and "
                    f"{_where(cls)} from {source}; rename one of them"
                )
            self._workers[entry.class_name] = entry
        logger.debug("registered worker %s from %s", entry.class_name, source)
        return entry

    def load_entry_points(self, group: str = WORKERS_GROUP) -> list[RegisteredWorker]:
        """Register every class published under the entry-point group ``group``."""
        loaded = []
        for ep in entry_points(group=group):
            dist = f" (package {ep.dist.name})" if ep.dist is not None else ""
            source = f"entry point {ep.name} = {ep.value}{dist}"
            try:
                cls = ep.load()
            except Exception as exc:
                raise WorkerDefinitionError(f"cannot load {source}: {exc}") from exc
            loaded.append(self.register(cls, source))
        return loaded

    def get(self, class_name: str) -> RegisteredWorker:
        """Return the registered worker, or raise ``UnknownWorkerError`` listing known ones."""
        entry = self._workers.get(class_name)
        if entry is None:
            raise UnknownWorkerError(class_name, self.names())
        return entry

    def __contains__(self, class_name: object) -> bool:
        return class_name in self._workers

    def __iter__(self) -> Iterator[RegisteredWorker]:
        return iter(list(self._workers.values()))

    def __len__(self) -> int:
        return len(self._workers)

    def names(self) -> list[str]:
        """Return the registered classNames, sorted."""
        return sorted(self._workers)


def _where(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"
