"""The SQLite store beyond the contract suite: its file, its URLs, several processes."""

from __future__ import annotations

import multiprocessing
import re
import sqlite3
from pathlib import Path
from typing import Any

import pytest

import skalds.sqlite
from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError
from skalds.memory import MemoryStore
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.plugins import DEFAULT_PLUGINS, make_backends, make_plugin_manager
from skalds.sqlite import SqliteStore, path_of_url, url_of_path

S = TaskLifecycleStatus


def test_the_sqlite_package_exports_the_store_and_its_url_helpers():
    assert skalds.sqlite.__all__ == ["SqliteStore", "path_of_url", "url_of_path"]
    assert "skalds.sqlite.plugin" in DEFAULT_PLUGINS


def test_tasks_outlive_the_store_that_wrote_them(tmp_path):
    path = str(tmp_path / "tasks.db")
    first = SqliteStore(path)
    first.create_task(Task(id="t-1", class_name="W", attachments={"k": "v"}, is_persistent=True))
    first.update_task("t-1", {"lifecycle_status": S.RUNNING, "executor": "node-a"})
    first.close()

    again = SqliteStore(path)
    try:
        task = again.get_task("t-1")
        assert task is not None
        assert (task.lifecycle_status, task.executor, task.attachments) == (
            S.RUNNING,
            "node-a",
            {"k": "v"},
        )
    finally:
        again.close()


def test_the_file_is_in_wal_mode_with_the_task_columns_indexed(tmp_path):
    path = tmp_path / "tasks.db"
    store = SqliteStore(str(path))
    # synchronous and the busy timeout are settings of the store's own connection
    assert store._conn.execute("PRAGMA synchronous").fetchone()[0] == 1  # NORMAL
    assert store._conn.execute("PRAGMA busy_timeout").fetchone()[0] == 10_000
    store.close()
    with sqlite3.connect(path) as conn:
        assert conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        indexed = {row[0] for row in conn.execute("SELECT name FROM pragma_index_list('tasks')")}
        columns = {
            col[2] for name in indexed for col in conn.execute(f"PRAGMA index_info('{name}')")
        }
    assert {"id", "lifecycle_status", "executor", "class_name", "priority"} <= columns
    assert "create_date_time" in columns
    conn.close()


def test_a_path_that_cannot_be_opened_is_named_in_the_error(tmp_path):
    missing = tmp_path / "no-such-dir" / "tasks.db"
    with pytest.raises(ConfigError, match=re.escape(f"cannot open the SQLite database {missing}")):
        SqliteStore(str(missing))
    not_a_db = tmp_path / "notes.txt"
    not_a_db.write_text("these are not the tasks you are looking for\n" * 50)
    with pytest.raises(ConfigError, match=re.escape("notes.txt: file is not a database")):
        SqliteStore(str(not_a_db))


def test_remember_keeps_the_first_value_unless_told_to_overwrite(tmp_path):
    store = SqliteStore(str(tmp_path / "tasks.db"))
    try:
        assert store.remember("node", "a") == "a"
        assert store.remember("node", "b") == "a"
        assert store.remember("node", "c", overwrite=True) == "c"
    finally:
        store.close()


@pytest.mark.parametrize(
    ("url", "path"),
    [
        ("sqlite:///abs/dir/tasks.db", "/abs/dir/tasks.db"),
        ("sqlite:relative.db", "relative.db"),
        ("sqlite:data/tasks.db", "data/tasks.db"),
        ("sqlite:///with%20space/a%23b.db", "/with space/a#b.db"),
        ("memory://", None),
        ("mongodb://host/", None),
    ],
)
def test_sqlite_urls_name_absolute_or_relative_files(url, path):
    assert path_of_url(url) == path


@pytest.mark.parametrize("url", ["sqlite://host/tasks.db", "sqlite:", "sqlite:x.db?mode=ro"])
def test_malformed_sqlite_urls_are_refused_with_the_forms_that_work(url):
    with pytest.raises(ConfigError, match=re.escape("sqlite:///absolute/path.db")):
        path_of_url(url)


def test_url_of_path_makes_the_path_absolute_and_round_trips(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    url = url_of_path("odd #name?.db")
    assert url.startswith("sqlite:///")
    assert path_of_url(url) == str(tmp_path / "odd #name?.db")


def test_the_default_plugins_open_a_sqlite_store_for_a_sqlite_url(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    pm = make_plugin_manager(load_entry_points=False)
    backends = make_backends(pm, SkaldConfig(store_url="sqlite:tasks.db"))
    try:
        assert isinstance(backends.store, SqliteStore)
        assert backends.store.path == "tasks.db" and (tmp_path / "tasks.db").exists()
    finally:
        backends.close()
    memory = make_backends(pm, SkaldConfig())
    assert isinstance(memory.store, MemoryStore)


def _claim_every_task(path: str, node: str, ids: list[str], start: Any, out: Any) -> None:
    """In a child process: try to move every task from Created to Assigning to ``node``."""
    store = SqliteStore(path)
    start.wait()
    won = [
        task_id
        for task_id in ids
        if store.update_task(
            task_id,
            {"lifecycle_status": S.ASSIGNING, "executor": node},
            expected_status={S.CREATED},
        )
    ]
    store.close()
    out.put((node, won))


def test_of_two_processes_claiming_the_same_tasks_exactly_one_wins_each(tmp_path: Path):
    # Given one file with tasks waiting in Created
    path = str(tmp_path / "tasks.db")
    store = SqliteStore(path)
    ids = [f"t-{i}" for i in range(40)]
    for task_id in ids:
        store.create_task(Task(id=task_id, class_name="W"))
    # When two processes try to claim every one of them at the same time
    ctx = multiprocessing.get_context("spawn")
    start, out = ctx.Barrier(2), ctx.Queue()
    procs = [
        ctx.Process(target=_claim_every_task, args=(path, node, ids, start, out))
        for node in ("node-a", "node-b")
    ]
    for proc in procs:
        proc.start()
    won = dict(out.get(timeout=60) for _ in procs)
    for proc in procs:
        proc.join(30)
        assert proc.exitcode == 0
    # Then each task went to exactly one of them, the one the store names
    assert sorted(won["node-a"] + won["node-b"]) == sorted(ids)
    assert not set(won["node-a"]) & set(won["node-b"])
    for node, task_ids in won.items():
        for task_id in task_ids:
            task = store.get_task(task_id)
            assert task is not None and task.executor == node
    store.close()
