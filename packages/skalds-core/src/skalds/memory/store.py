"""In-memory task store with atomic compare-and-set status changes."""

from __future__ import annotations

import copy
import threading
from collections.abc import Collection, Iterable, Mapping
from dataclasses import replace
from typing import Any

from skalds.errors import TaskExistsError, TaskNotFoundError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import Increment, Store, TaskQuery
from skalds.utils.time import now_ms

__all__ = [
    "MemoryStore",
    "apply_changes",
    "changed_task",
    "matches",
    "sort_key",
    "status_expected",
]

_Doc = dict[str, Any]

# Python field name -> storage name (``lifecycle_status`` -> ``lifecycleStatus``).
_STORAGE_NAMES = {name: field.alias or name for name, field in Task.model_fields.items()}


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


def status_expected(
    doc: Mapping[str, Any],
    expected: Collection[TaskLifecycleStatus] | None,
    executor: str | None = None,
    incarnation: int | None = None,
) -> bool:
    """Whether a stored document's status is one of ``expected`` (``None``: any) and,
    when given, its executor and incarnation are those (a document written before
    incarnations existed is incarnation 0)."""
    if executor is not None and doc.get("executor") != executor:
        return False
    if incarnation is not None and int(doc.get("incarnation") or 0) != incarnation:
        return False
    if expected is None:
        return True
    return doc.get("lifecycleStatus") in {TaskLifecycleStatus(s).value for s in expected}


def apply_changes(doc: Mapping[str, Any], changes: Mapping[str, Any]) -> _Doc:
    """Return ``doc`` with ``changes`` (Python field names) applied in storage form.

    The whole merged document is validated once (not only the changed fields), so a
    rule spanning several fields still holds. Keys that are not Python field names
    are ignored, as they always were here. A change of the attachments adds one to
    ``attachmentsVersion`` (unless the changes set it).

    Raises:
        ValueError: a value the Task model refuses, or a change of the id.
    """
    return changed_task(doc, changes).to_document()


def changed_task(doc: Mapping[str, Any], changes: Mapping[str, Any]) -> Task:
    """The task ``doc`` becomes with ``changes`` (see :func:`apply_changes`), validated.

    Its ``to_document()`` is what to store; the task itself may share nested values
    with ``doc`` and ``changes`` (not with what it stores), so a store hands it out
    without copying it again.

    Raises:
        ValueError: a value the Task model refuses, or a change of the id.
    """
    merged = dict(doc)
    if "attachments" in changes and "attachments_version" not in changes:
        changes = {**changes, "attachments_version": Increment(1)}
    for key, value in changes.items():
        name = _STORAGE_NAMES.get(key)
        if name is None:
            continue
        if isinstance(value, Increment):
            current = merged.get(name) or 0
            if isinstance(current, bool) or not isinstance(current, int):
                raise ValueError(f"task {doc.get('id')!r}: {key!r} is not a number to increment")
            value = current + value.by
        merged[name] = value
    if merged.get("id") != doc.get("id"):
        raise ValueError(f"task {doc.get('id')!r}: the id of a task cannot change")
    merged["updateDateTime"] = max(now_ms(), int(doc.get("updateDateTime") or 0))
    return Task.model_validate(merged)


def _statuses_of(query: TaskQuery) -> frozenset[str] | None:
    if query.statuses is None:
        return None
    return frozenset(TaskLifecycleStatus(s).value for s in query.statuses)


class MemoryStore(Store):
    """Task documents in a dict, in their storage (camelCase JSON) form.

    A second index by status lets status queries (the dispatcher asks for the active
    tasks on every pass) touch only the matching tasks, however many finished ones
    the store keeps. Both indexes hold the same document objects, which are replaced
    on every change, never changed in place.
    """

    def __init__(self) -> None:
        self._docs: dict[str, _Doc] = {}
        self._by_status: dict[str, dict[str, _Doc]] = {s.value: {} for s in TaskLifecycleStatus}
        self._lock = threading.Lock()

    def create_task(self, task: Task) -> Task:
        doc = task.to_document()
        with self._lock:
            if task.id in self._docs:
                raise TaskExistsError(task.id)
            self._put(task.id, doc)
        return Task.model_validate(copy.deepcopy(doc))

    def get_task(self, task_id: str) -> Task | None:
        with self._lock:
            doc = self._docs.get(task_id)
            doc = copy.deepcopy(doc) if doc is not None else None
        return Task.model_validate(doc) if doc is not None else None

    def list_tasks(self, query: TaskQuery | None = None) -> list[Task]:
        q = query or TaskQuery()
        end = None if q.limit is None else q.offset + q.limit
        with self._lock:
            docs = sorted(self._matching(q), key=sort_key)
            # Only the requested page is copied (the others are only references).
            page = [copy.deepcopy(d) for d in docs[q.offset : end]]
        return [Task.model_validate(d) for d in page]

    def count_tasks(self, query: TaskQuery | None = None) -> int:
        """Return how many tasks match (paging ignored), without copying any."""
        q = query or TaskQuery()
        statuses = _statuses_of(q)
        with self._lock:
            if _narrows(q):
                return sum(1 for _ in self._matching(q))
            if statuses is None:
                return len(self._docs)
            return sum(len(self._by_status.get(s, ())) for s in statuses)

    def count_by_status(self, query: TaskQuery | None = None) -> dict[TaskLifecycleStatus, int]:
        """Return how many tasks match per status, in one pass (paging ignored)."""
        q = query or TaskQuery()
        wanted = _statuses_of(q)
        counts = dict.fromkeys(TaskLifecycleStatus, 0)
        with self._lock:
            if not _narrows(q):
                for status in counts:
                    if wanted is None or status.value in wanted:
                        counts[status] = len(self._by_status.get(status.value, ()))
                return counts
            for doc in self._matching(q):
                counts[TaskLifecycleStatus(doc["lifecycleStatus"])] += 1
        return counts

    def update_task(
        self,
        task_id: str,
        changes: Mapping[str, Any],
        *,
        expected_status: Collection[TaskLifecycleStatus] | None = None,
        expected_executor: str | None = None,
        expected_incarnation: int | None = None,
    ) -> Task | None:
        with self._lock:
            doc = self._docs.get(task_id)
            if doc is None:
                raise TaskNotFoundError(task_id)
            if not status_expected(doc, expected_status, expected_executor, expected_incarnation):
                return None
            task = changed_task(doc, changes)
            self._drop(task_id)
            self._put(task_id, task.to_document())  # fresh containers: nothing shared
            return task

    def delete_task(self, task_id: str) -> bool:
        with self._lock:
            return self._drop(task_id)

    # -- the indexes (callers hold the lock) -------------------------------------------

    def _put(self, task_id: str, doc: _Doc) -> None:
        self._docs[task_id] = doc
        self._by_status.setdefault(doc["lifecycleStatus"], {})[task_id] = doc

    def _drop(self, task_id: str) -> bool:
        doc = self._docs.pop(task_id, None)
        if doc is None:
            return False
        self._by_status.get(doc["lifecycleStatus"], {}).pop(task_id, None)
        return True

    def _matching(self, query: TaskQuery) -> Iterable[_Doc]:
        """Yield the stored documents matching ``query``, touching only its statuses."""
        statuses = _statuses_of(query)
        if statuses is None:
            candidates: Iterable[_Doc] = self._docs.values()
        else:
            candidates = (doc for s in statuses for doc in self._by_status.get(s, {}).values())
        if not _narrows(query):
            return candidates
        rest = replace(query, statuses=None)
        return (doc for doc in candidates if matches(doc, rest))


def _narrows(query: TaskQuery) -> bool:
    """Return whether ``query`` filters by more than the status."""
    return query.executor is not None or query.class_name is not None or bool(query.id_prefix)
