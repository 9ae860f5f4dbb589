"""The task store in a SQLite file: tasks survive restarts, no server to run.

One table holds the tasks: the id as primary key, the columns that queries filter
and sort on (status, executor, class name, priority, creation time) and the whole
storage-form document as JSON, which is what comes back. The file is in WAL mode
(readers do not wait for the writer) with ``synchronous=NORMAL`` (a power cut may
lose the last commits, never corrupt the file).

One connection serves every thread of the process, behind a lock. A status change
reads, compares and writes inside one ``BEGIN IMMEDIATE`` transaction, which holds
SQLite's write lock from the read on: of many threads, or many processes on the
same file, expecting the same status exactly one wins. A writer that finds the file
locked by another process waits up to ``busy_timeout`` seconds.
"""

from __future__ import annotations

import contextlib
import json
import sqlite3
import threading
from collections.abc import Collection, Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from skalds.errors import (
    BackendUnavailableError,
    ConfigError,
    SkaldsError,
    TaskExistsError,
    TaskNotFoundError,
)
from skalds.memory.store import apply_changes, status_expected
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import Store, TaskQuery

__all__ = ["SqliteStore"]

SCHEMA_VERSION = 1

_SCHEMA = (
    """CREATE TABLE IF NOT EXISTS tasks (
        id TEXT PRIMARY KEY NOT NULL,
        lifecycle_status TEXT NOT NULL,
        executor TEXT,
        class_name TEXT NOT NULL,
        priority INTEGER NOT NULL,
        create_date_time INTEGER NOT NULL,
        document TEXT NOT NULL
    )""",
    # The dispatch order, alone and within one status (the dispatcher's query).
    "CREATE INDEX IF NOT EXISTS tasks_order ON tasks (priority DESC, create_date_time, id)",
    "CREATE INDEX IF NOT EXISTS tasks_status"
    " ON tasks (lifecycle_status, priority DESC, create_date_time, id)",
    "CREATE INDEX IF NOT EXISTS tasks_executor ON tasks (executor, lifecycle_status)",
    "CREATE INDEX IF NOT EXISTS tasks_class_name ON tasks (class_name)",
    "CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY NOT NULL, value TEXT NOT NULL)",
)
_ORDER = "ORDER BY priority DESC, create_date_time, id"


class SqliteStore(Store):
    """Tasks in a SQLite database file, safe to share between threads and processes.

    Typical use::

        store = SqliteStore("skalds.db")  # created when missing
        store.create_task(Task(id="t-1", class_name="MyWorker"))
    """

    def __init__(self, path: str, *, busy_timeout: float = 10.0) -> None:
        """Open (or create) the database and its table.

        Args:
            path: the database file; its directory must exist.
            busy_timeout: how long a write waits, in seconds, while another process
                holds the file's write lock.

        Raises:
            ConfigError: the file cannot be opened or is not a Skalds database.
            BackendUnavailableError: another process kept the file locked too long.
        """
        self.path = path
        self._lock = threading.Lock()
        try:
            self._conn = sqlite3.connect(
                path, timeout=busy_timeout, isolation_level=None, check_same_thread=False
            )
        except sqlite3.Error as exc:
            raise _open_error(path, exc) from exc
        try:
            self._prepare(busy_timeout)
        except (sqlite3.Error, SkaldsError) as exc:
            self._conn.close()
            if isinstance(exc, ConfigError):
                raise
            # An operational error comes wrapped (BackendUnavailableError): unwrap it.
            cause = exc.__cause__ if isinstance(exc.__cause__, sqlite3.Error) else exc
            raise _open_error(path, cause) from exc

    def __repr__(self) -> str:
        return f"SqliteStore({self.path!r})"

    def _prepare(self, busy_timeout: float) -> None:
        conn = self._conn
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout * 1000)}")
        conn.execute("PRAGMA journal_mode = WAL")
        conn.execute("PRAGMA synchronous = NORMAL")
        with self._transaction() as tx:
            for statement in _SCHEMA:
                tx.execute(statement)
        version = self.remember("schema_version", str(SCHEMA_VERSION))
        if int(version) > SCHEMA_VERSION:
            raise ConfigError(
                f"SQLite database {self.path}: schema version {version} was written by a newer "
                f"Skalds (this one reads version {SCHEMA_VERSION})"
            )

    # -- the port --------------------------------------------------------------------

    def create_task(self, task: Task) -> Task:
        doc = task.to_document()
        try:
            with self._connection() as conn:
                conn.execute(
                    "INSERT INTO tasks (id, lifecycle_status, executor, class_name, priority,"
                    " create_date_time, document) VALUES (?, ?, ?, ?, ?, ?, ?)",
                    (task.id, *_columns(doc)),
                )
        except sqlite3.IntegrityError:
            raise TaskExistsError(task.id) from None
        return Task.model_validate(doc)

    def get_task(self, task_id: str) -> Task | None:
        with self._connection() as conn:
            row = conn.execute("SELECT document FROM tasks WHERE id = ?", (task_id,)).fetchone()
        return None if row is None else Task.model_validate_json(row[0])

    def list_tasks(self, query: TaskQuery | None = None) -> list[Task]:
        q = query or TaskQuery()
        where, params = _where(q)
        page = " LIMIT ? OFFSET ?"
        params += [-1 if q.limit is None else q.limit, q.offset]
        with self._connection() as conn:
            rows = conn.execute(f"SELECT document FROM tasks{where} {_ORDER}{page}", params)
            documents = [row[0] for row in rows]
        return [Task.model_validate_json(doc) for doc in documents]

    def count_tasks(self, query: TaskQuery | None = None) -> int:
        """Return how many tasks match (paging ignored), counted by SQLite."""
        where, params = _where(query or TaskQuery())
        with self._connection() as conn:
            (count,) = conn.execute(f"SELECT COUNT(*) FROM tasks{where}", params).fetchone()
        return int(count)

    def count_by_status(self, query: TaskQuery | None = None) -> dict[TaskLifecycleStatus, int]:
        """Return how many tasks match per status, in one query (paging ignored)."""
        where, params = _where(query or TaskQuery())
        sql = f"SELECT lifecycle_status, COUNT(*) FROM tasks{where} GROUP BY lifecycle_status"
        with self._connection() as conn:
            rows = conn.execute(sql, params).fetchall()
        counts = dict.fromkeys(TaskLifecycleStatus, 0)
        for status, count in rows:
            counts[TaskLifecycleStatus(status)] = int(count)
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
        with self._transaction() as tx:
            new_doc = _change(
                tx, task_id, changes, expected_status, expected_executor, expected_incarnation
            )
        return None if new_doc is None else Task.model_validate(new_doc)

    def update_tasks(
        self,
        task_ids: Sequence[str],
        changes: Mapping[str, Any],
        *,
        expected_status: Collection[TaskLifecycleStatus],
        expected_incarnations: Mapping[str, int] | None = None,
    ) -> list[str]:
        """Apply ``changes`` to each task whose status matches, in one transaction.

        An invalid change rolls the whole batch back (nothing is written).
        """
        changed = []
        incarnations = expected_incarnations or {}
        with self._transaction() as tx:
            for task_id in task_ids:
                with contextlib.suppress(TaskNotFoundError):
                    expected = (expected_status, None, incarnations.get(task_id))
                    if _change(tx, task_id, changes, *expected) is not None:
                        changed.append(task_id)
        return changed

    def delete_task(self, task_id: str) -> bool:
        with self._connection() as conn:
            deleted = conn.execute("DELETE FROM tasks WHERE id = ?", (task_id,)).rowcount
        return bool(deleted)

    def ping(self) -> bool:
        """Return True when the database file answers a query."""
        try:
            with self._connection() as conn:
                conn.execute("SELECT 1 FROM tasks LIMIT 1").fetchall()
        except (BackendUnavailableError, sqlite3.Error):
            return False
        return True

    def close(self) -> None:
        """Close the connection (the WAL is folded back into the file when it is the last)."""
        with self._lock:
            self._conn.close()

    # -- beyond the port -------------------------------------------------------------

    def remember(self, key: str, value: str, *, overwrite: bool = False) -> str:
        """Return the value kept under ``key`` in this database, keeping ``value`` if none is.

        For settings that belong with the data, such as the id of the embedded node
        whose tasks the file holds (``skalds up --db``).

        Args:
            key: the setting's name.
            value: kept when nothing is kept under ``key`` yet (or ``overwrite``).
            overwrite: keep ``value`` even when another value is kept.

        Returns:
            The value kept under ``key`` now.
        """
        verb = "INSERT OR REPLACE" if overwrite else "INSERT OR IGNORE"
        with self._transaction() as tx:
            tx.execute(f"{verb} INTO meta (key, value) VALUES (?, ?)", (key, value))
            (kept,) = tx.execute("SELECT value FROM meta WHERE key = ?", (key,)).fetchone()
        return str(kept)

    # -- connection and transactions ---------------------------------------------------

    @contextmanager
    def _connection(self) -> Iterator[sqlite3.Connection]:
        """The connection, for this thread alone; SQLite's operational errors named."""
        with self._lock:
            try:
                yield self._conn
            except sqlite3.OperationalError as exc:
                raise BackendUnavailableError(f"SQLite database {self.path}: {exc}") from exc

    @contextmanager
    def _transaction(self) -> Iterator[sqlite3.Connection]:
        """A write transaction: it holds the file's write lock from its first statement."""
        with self._connection() as conn:
            conn.execute("BEGIN IMMEDIATE")
            try:
                yield conn
            except BaseException:
                if conn.in_transaction:
                    conn.execute("ROLLBACK")
                raise
            conn.execute("COMMIT")


def _change(
    tx: sqlite3.Connection,
    task_id: str,
    changes: Mapping[str, Any],
    expected_status: Collection[TaskLifecycleStatus] | None,
    expected_executor: str | None,
    expected_incarnation: int | None = None,
) -> dict[str, Any] | None:
    """Compare and set one task inside ``tx``; return its new document, ``None`` on a mismatch.

    Raises:
        TaskNotFoundError: no task has this id.
        ValueError: a change the Task model refuses (nothing is written).
    """
    row = tx.execute("SELECT document FROM tasks WHERE id = ?", (task_id,)).fetchone()
    if row is None:
        raise TaskNotFoundError(task_id)
    doc = json.loads(row[0])
    if not status_expected(doc, expected_status, expected_executor, expected_incarnation):
        return None
    new_doc = apply_changes(doc, changes)
    tx.execute(
        "UPDATE tasks SET lifecycle_status = ?, executor = ?, class_name = ?,"
        " priority = ?, create_date_time = ?, document = ? WHERE id = ?",
        (*_columns(new_doc), task_id),
    )
    return new_doc


def _columns(doc: Mapping[str, Any]) -> tuple[Any, ...]:
    """The indexed columns and the JSON of a storage-form document (all but the id)."""
    return (
        doc["lifecycleStatus"],
        doc.get("executor"),
        doc["className"],
        int(doc.get("priority") or 0),
        int(doc.get("createDateTime") or 0),
        json.dumps(doc, separators=(",", ":"), ensure_ascii=False),
    )


def _where(query: TaskQuery) -> tuple[str, list[Any]]:
    """The ``WHERE`` clause (with a leading space, or empty) and parameters of ``query``."""
    clauses: list[str] = []
    params: list[Any] = []
    if query.statuses is not None:
        statuses = sorted({TaskLifecycleStatus(s).value for s in query.statuses})
        clauses.append(f"lifecycle_status IN ({', '.join('?' * len(statuses))})")
        params += statuses
    if query.executor is not None:
        clauses.append("executor = ?")
        params.append(query.executor)
    if query.class_name is not None:
        clauses.append("class_name = ?")
        params.append(query.class_name)
    if query.id_prefix:
        clauses.append("substr(id, 1, ?) = ?")
        params += [len(query.id_prefix), query.id_prefix]
    return (" WHERE " + " AND ".join(clauses) if clauses else ""), params


def _open_error(path: str, exc: BaseException) -> SkaldsError:
    """The error to raise when ``path`` cannot be opened as a Skalds database."""
    text = str(exc)
    if "locked" in text or "busy" in text:
        return BackendUnavailableError(f"SQLite database {path} is locked by another process")
    hint = " (does its directory exist, and may this user write there?)"
    if "unable to open" not in text and "readonly" not in text:
        hint = ""
    return ConfigError(f"cannot open the SQLite database {path}: {text}{hint}")
