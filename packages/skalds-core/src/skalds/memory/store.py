"""In-memory task store with atomic compare-and-set status changes."""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Mapping
from dataclasses import replace
from typing import Any

from skalds.errors import TaskExistsError, TaskNotFoundError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import Store, TaskQuery
from skalds.utils.time import now_ms

__all__ = ["MemoryStore", "matches", "sort_key"]


def matches(doc: Mapping[str, Any], query: TaskQuery) -> bool:
    """Return whether a stored document matches ``query`` (shared by simple stores)."""
    # Statuses are str enums, so a stored "Running" is found among them directly.
    if query.statuses is not None and doc.get("lifecycleStatus") not in query.statuses:
        return False
    if query.executor is not None and doc.get("executor") != query.executor:
        return False
    if query.class_name is not None and doc.get("className") != query.class_name:
        return False
    return query.id_prefix is None or str(doc.get("id", "")).startswith(query.id_prefix)


def sort_key(doc: Mapping[str, Any]) -> tuple[int, int, str]:
    """Highest priority first, then oldest, then id: the dispatch order."""
    return (-int(doc.get("priority") or 0), int(doc.get("createDateTime") or 0), str(doc["id"]))


def apply_changes(doc: dict[str, Any], changes: Mapping[str, Any]) -> dict[str, Any]:
    """Return ``doc`` with ``changes`` (Python field names) applied in storage form."""
    current = Task.model_validate(doc)
    updated = current.model_copy(update=dict(changes))
    new_doc = Task.model_validate(updated.model_dump(by_alias=True)).to_document()
    new_doc["updateDateTime"] = max(now_ms(), int(doc.get("updateDateTime") or 0))
    return new_doc


class MemoryStore(Store):
    """Task documents in a dict, in their storage (camelCase JSON) form."""

    def __init__(self) -> None:
        self._docs: dict[str, dict[str, Any]] = {}
        self._lock = threading.Lock()

    def create_task(self, task: Task) -> Task:
        doc = task.to_document()
        with self._lock:
            if task.id in self._docs:
                raise TaskExistsError(task.id)
            self._docs[task.id] = doc
        return Task.model_validate(copy.deepcopy(doc))

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            doc = self._docs.get(task_id)
            doc = copy.deepcopy(doc) if doc is not None else None
        return Task.model_validate(doc) if doc is not None else None

    def list_tasks(self, query: TaskQuery | None = None) -> list[Task]:
        q = query or TaskQuery()
        if q.statuses is not None:  # normalise once, not per document
            q = replace(q, statuses=frozenset(TaskLifecycleStatus(s) for s in q.statuses))
        end = None if q.limit is None else q.offset + q.limit
        with self._lock:
            # Stored documents are replaced, never changed in place, so sorting the
            # references is safe; only the requested page is copied.
            docs = sorted((d for d in self._docs.values() if matches(d, q)), key=sort_key)
            page = [copy.deepcopy(d) for d in docs[q.offset : end]]
        return [Task.model_validate(d) for d in page]

    def update_task(
        self,
        task_id: str,
        changes: Mapping[str, Any],
        *,
        expected_status: Collection[TaskLifecycleStatus] | None = None,
    ) -> Task | None:
        with self._lock:
            doc = self._docs.get(task_id)
            if doc is None:
                raise TaskNotFoundError(task_id)
            if expected_status is not None:
                allowed = {TaskLifecycleStatus(s).value for s in expected_status}
                if doc.get("lifecycleStatus") not in allowed:
                    return None
            new_doc = apply_changes(doc, changes)
            self._docs[task_id] = new_doc
            return Task.model_validate(copy.deepcopy(new_doc))

    def delete_task(self, task_id: str) -> bool:
        with self._lock:
            return self._docs.pop(task_id, None) is not None
