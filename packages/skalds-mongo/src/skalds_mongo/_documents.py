"""Between :class:`~skalds.model.task.Task` and MongoDB: documents, changes, filters.

Documents keep the storage form ``Task.to_document()`` gives (camelCase keys, enum
values, integer millisecond times, attachments by alias), the layout earlier Skalds
versions wrote, so old data and old scripts keep working. Every value that reaches a
filter is checked to be a plain string: user input never becomes a query operator.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import Increment, TaskQuery
from skalds_mongo.errors import TaskDocumentError

__all__ = [
    "SORT",
    "incarnation_condition",
    "literal",
    "prefix_range",
    "query_filter",
    "storage_changes",
    "storage_increments",
    "task_from_document",
]

# Highest priority first, then oldest, then id: the dispatch order of every store.
SORT: list[tuple[str, int]] = [("priority", -1), ("createDateTime", 1), ("id", 1)]

_ALIASES = {name: field.alias or name for name, field in Task.model_fields.items()}
_INTEGERS = {
    field.alias or name for name, field in Task.model_fields.items() if field.annotation is int
}
_KNOWN = set(_ALIASES.values())
# Set by the store itself on every change (``$max``), never taken from the caller.
_STORE_MANAGED = {"id", "updateDateTime"}
_LAST_CHAR = chr(0x10FFFF)


def literal(value: object, what: str) -> str:
    """Return ``value`` if it is a string; refuse anything that could be an operator."""
    if not isinstance(value, str):
        raise TypeError(f"{what} must be a string, not {type(value).__name__}")
    return value


def prefix_range(prefix: str) -> dict[str, str]:
    """Return a range filter matching exactly the strings that start with ``prefix``.

    MongoDB compares strings by their UTF-8 bytes, which is code point order, so all
    of them lie between ``prefix`` and the prefix with its last character bumped by
    one. No regular expression is involved: ``".*"`` or ``"a[("`` match literally.
    """
    head = prefix.rstrip(_LAST_CHAR)
    if not head:
        return {"$gte": prefix}
    bumped = ord(head[-1]) + 1
    if 0xD800 <= bumped <= 0xDFFF:  # surrogates cannot be stored; skip past them
        bumped = 0xE000
    return {"$gte": prefix, "$lt": head[:-1] + chr(bumped)}


def query_filter(query: TaskQuery) -> dict[str, Any]:
    """Return the MongoDB filter for ``query`` (same matches as the in-memory store)."""
    flt: dict[str, Any] = {}
    if query.statuses is not None:
        flt["lifecycleStatus"] = {
            "$in": sorted({TaskLifecycleStatus(s).value for s in query.statuses})
        }
    if query.executor is not None:
        flt["executor"] = literal(query.executor, "executor")
    if query.class_name is not None:
        flt["className"] = literal(query.class_name, "class_name")
    if query.id_prefix:
        flt["id"] = prefix_range(literal(query.id_prefix, "id_prefix"))
    return flt


def storage_changes(task_id: str, changes: Mapping[str, Any]) -> dict[str, Any]:
    """Validate ``changes`` through the Task model; return them in storage form.

    Keys are the Python field names (``lifecycle_status``); the storage names
    (``lifecycleStatus``) are accepted too. Only the changed fields are returned,
    by alias, ready for ``$set``.

    Raises:
        ValueError: an unknown field, an attempt to change the id, or a value the
            model refuses (a pydantic ``ValidationError``, which is a ValueError).
    """
    by_alias: dict[str, Any] = {}
    for key, value in changes.items():
        alias = _alias(task_id, key)
        if not isinstance(value, Increment):  # see storage_increments
            by_alias[alias] = value
    if by_alias.get("id", task_id) != task_id:
        raise ValueError(f"task {task_id!r}: the id of a task cannot change")
    # Field validators are per field, so a minimal valid task carries the changes.
    checked = Task.model_validate({"id": task_id, "className": "_", **by_alias}).to_document()
    return {alias: checked[alias] for alias in by_alias if alias not in _STORE_MANAGED}


def storage_increments(task_id: str, changes: Mapping[str, Any]) -> dict[str, int]:
    """Return the :class:`~skalds.ports.store.Increment` changes, for ``$inc``.

    A change of the attachments adds one to ``attachmentsVersion`` too, unless the
    changes set that version themselves (the rule of every store).

    Raises:
        ValueError: an unknown field, or one that does not hold an integer.
    """
    out: dict[str, int] = {}
    named = set()
    for key, value in changes.items():
        alias = _alias(task_id, key)
        named.add(alias)
        if isinstance(value, Increment):
            if alias not in _INTEGERS or alias in _STORE_MANAGED:
                raise ValueError(f"task {task_id!r}: {key!r} is not a number to increment")
            out[alias] = value.by
    if "attachments" in named and "attachmentsVersion" not in named:
        out["attachmentsVersion"] = 1
    return out


def incarnation_condition(incarnation: int) -> Any:
    """The filter value matching ``incarnation`` (a document without one is incarnation 0)."""
    if isinstance(incarnation, bool) or not isinstance(incarnation, int):
        raise TypeError(f"incarnation must be an int, not {type(incarnation).__name__}")
    return {"$in": [0, None]} if incarnation == 0 else incarnation


def _alias(task_id: str, key: str) -> str:
    alias = _ALIASES.get(key) or (key if key in _KNOWN else None)
    if alias is None:
        raise ValueError(f"task {task_id!r}: {key!r} is not a task field")
    return alias


def task_from_document(doc: Mapping[str, Any]) -> Task:
    """Return the Task of a stored document.

    Raises:
        TaskDocumentError: the document does not validate; names the task and fields.
    """
    data = {k: v for k, v in doc.items() if k != "_id"}
    try:
        return Task.model_validate(data)
    except ValidationError as exc:
        task_id = data.get("id")
        name = task_id if isinstance(task_id, str) else f"_id={doc.get('_id')}"
        problems = [
            (".".join(str(p) for p in err["loc"]) or "document", err["msg"]) for err in exc.errors()
        ]
        raise TaskDocumentError(name, problems) from exc
