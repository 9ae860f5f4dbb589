"""What task processes are forked from (``FORK_SERVER``): a fresh interpreter or a copy.

A fresh fork server imports only the worker classes, so every task process is a fork
of a small process; when a class cannot be imported by name, or the fresh interpreter
cannot import it, the fork server is a copy of the node ("auto"), and ``fresh`` says
so at start instead.
"""

from __future__ import annotations

import builtins
import json
import logging
from pathlib import Path

import psutil
import pytest
from pydantic import ValidationError

import tests.fork_server_workers as seeing
from skalds.config.skald_config import SkaldConfig
from skalds.errors import ConfigError
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports import Topic
from tests.fork_server_workers import PrintingWorker, SeeingWorker
from tests.helpers import wait_for

S = TaskLifecycleStatus


def run_task(node, class_name: str, out: Path) -> dict:
    """Run one task of ``class_name`` on ``node``; return what its process saw."""
    task_id = f"seen-{out.name}"
    node.store.create_task(
        Task(
            id=task_id,
            class_name=class_name,
            source="test",
            executor=node.skald_id,
            attachments={"out": str(out)},
        )
    )
    node.event_bus.publish(
        Topic.TASK_ASSIGN, task_id, TaskEvent(task_ids=[task_id]).model_dump_json()
    )
    wait_for(lambda: node.store.get_task(task_id).lifecycle_status is S.FINISHED, 15)
    return json.loads(out.read_text())


def fork_server_of(node) -> tuple[int, str]:
    found = node.supervisor.runtime.fork_server
    assert found is not None
    return found


@pytest.fixture
def changed_setting(monkeypatch):
    """The main script changes module state after importing the worker module."""
    monkeypatch.setattr(seeing, "SETTING", "changed at run time")


def test_workers_importable_by_name_run_from_a_fresh_interpreter(
    skalds_node_factory, tmp_path, changed_setting
):
    node = skalds_node_factory(workers=[SeeingWorker])
    pid, kind = fork_server_of(node)
    assert kind == "fresh"
    seen = run_task(node, "SeeingWorker", tmp_path / "fresh")
    assert seen["parent"] == pid  # forked from the fresh fork server...
    assert seen["setting"] == "as imported"  # ...which imported the module anew
    assert seen["spec_env"] is False  # the fork server's spec is not in the task's environment
    fresh = psutil.Process(pid)
    assert fresh.ppid() == psutil.Process().pid
    assert "-c" in fresh.cmdline()


def test_copy_makes_the_fork_server_a_fork_of_the_node_with_its_module_state(
    skalds_node_factory, tmp_path, changed_setting
):
    node = skalds_node_factory(workers=[SeeingWorker], fork_server="copy")
    pid, kind = fork_server_of(node)
    assert kind == "copy"
    assert psutil.Process(pid).cmdline() == psutil.Process().cmdline()
    seen = run_task(node, "SeeingWorker", tmp_path / "copy")
    assert seen["parent"] == pid
    assert seen["setting"] == "changed at run time"


def test_a_class_defined_in_a_function_runs_from_a_copy_of_the_node(
    skalds_node_factory, tmp_path, caplog
):
    class LocalWorker(SeeingWorker):
        pass

    with caplog.at_level(logging.INFO, logger="skalds"):
        node = skalds_node_factory(workers=[LocalWorker])
    assert fork_server_of(node)[1] == "copy"
    assert "LocalWorker" in caplog.text and "defined inside a function" in caplog.text
    assert run_task(node, "LocalWorker", tmp_path / "local")["spec_env"] is False


def test_fresh_refuses_to_start_with_a_class_it_cannot_import_by_name(skalds_node_factory):
    class LocalWorker(SeeingWorker):
        pass

    with pytest.raises(ConfigError) as caught:
        skalds_node_factory(workers=[LocalWorker], fork_server="fresh")
    message = str(caught.value)
    assert "LocalWorker" in message and "defined inside a function" in message
    assert "FORK_SERVER=copy" in message


@pytest.fixture
def guarded_worker(monkeypatch):
    """A worker whose module a fresh interpreter fails to import."""
    monkeypatch.setattr(builtins, "_skalds_test_allow_guarded_import", True, raising=False)
    from tests.fork_server_guarded import GuardedWorker

    return GuardedWorker


def test_a_worker_module_the_fresh_interpreter_cannot_import_falls_back_to_a_copy(
    skalds_node_factory, tmp_path, guarded_worker, caplog
):
    with caplog.at_level(logging.WARNING, logger="skalds"):
        node = skalds_node_factory(workers=[guarded_worker])
    assert fork_server_of(node)[1] == "copy"
    assert "could not import the workers" in caplog.text
    assert "this module imports only in the test process" in caplog.text
    assert run_task(node, "GuardedWorker", tmp_path / "guarded")["setting"] == "as imported"


def test_fresh_says_why_when_its_interpreter_cannot_import_a_worker(
    skalds_node_factory, guarded_worker
):
    with pytest.raises(ConfigError, match="this module imports only in the test process"):
        skalds_node_factory(workers=[guarded_worker], fork_server="fresh")


def test_an_unknown_fork_server_kind_is_a_clear_configuration_error(monkeypatch):
    monkeypatch.setenv("FORK_SERVER", "spawn")
    with pytest.raises(ValidationError, match="fork_server"):
        SkaldConfig()
    monkeypatch.setenv("FORK_SERVER", "copy")
    assert SkaldConfig().fork_server == "copy"


@pytest.mark.parametrize("kind", ["fresh", "copy"])
def test_what_a_worker_prints_reaches_the_console_while_the_task_runs(
    skalds_node_factory, capfd, monkeypatch, kind
):
    """The console is a file here (as under a service manager): no 8 KB buffer to fill."""
    monkeypatch.delenv("PYTHONUNBUFFERED", raising=False)  # as on a user's machine
    node = skalds_node_factory(workers=[PrintingWorker], fork_server=kind)
    assert fork_server_of(node)[1] == kind
    task_id = f"printing-{kind}"
    node.store.create_task(
        Task(
            id=task_id,
            class_name="PrintingWorker",
            source="test",
            executor=node.skald_id,
            attachments={"out": "-"},
        )
    )
    node.event_bus.publish(
        Topic.TASK_ASSIGN, task_id, TaskEvent(task_ids=[task_id]).model_dump_json()
    )
    out = ""

    def printed() -> bool:
        nonlocal out
        out += capfd.readouterr().out
        return f"a line from {task_id}" in out

    wait_for(printed, timeout=10)
    assert node.store.get_task(task_id).lifecycle_status is S.RUNNING


@pytest.mark.parametrize(
    ("module", "why"),
    [
        ("__main__", "is defined in the main script"),
        ("tests.no_such_module", "names a module that is not imported"),
        ("tests.fork_server_workers", "is not reachable by that name"),
    ],
)
def test_the_node_says_why_a_class_cannot_be_found_by_name(module, why):
    from skalds.runtime.zygote import worker_targets
    from skalds.worker.registry import WorkerRegistry

    cls = type("ElsewhereWorker", (SeeingWorker,), {"__module__": module})
    cls.__qualname__ = "ElsewhereWorker"
    registry = WorkerRegistry()
    registry.register(cls, "a test")
    targets, reason = worker_targets(registry)
    assert targets == []
    assert reason == f"worker class ElsewhereWorker ({module}.ElsewhereWorker, from a test) {why}"


def test_classes_importable_by_name_are_listed_for_the_fresh_interpreter():
    from skalds.runtime.zygote import worker_targets
    from skalds.worker.registry import WorkerRegistry

    registry = WorkerRegistry()
    registry.register(SeeingWorker, "a test")
    registry.register(PrintingWorker, "another test")
    assert worker_targets(registry) == (
        [
            ["tests.fork_server_workers", "SeeingWorker", "a test"],
            ["tests.fork_server_workers", "PrintingWorker", "another test"],
        ],
        "",
    )


def test_a_frozen_application_forks_a_copy_of_itself(skalds_node_factory, tmp_path, monkeypatch):
    """Its executable runs the application, not ``python -c``."""
    monkeypatch.setattr("sys.frozen", True, raising=False)
    node = skalds_node_factory(workers=[SeeingWorker])
    assert fork_server_of(node)[1] == "copy"
    assert run_task(node, "SeeingWorker", tmp_path / "frozen")["parent"] == fork_server_of(node)[0]


@pytest.mark.parametrize("kind", ["fresh", "copy"])
def test_cancelling_a_task_as_it_starts_leaves_the_other_tasks_running(
    skalds_node_factory, tmp_path, kind
):
    """A cancel that reaches a new task process before it has its own signal handlers
    must not run the fork server's shutdown in it (which stopped every sibling)."""
    from tests.workers import ProbeWorker

    node = skalds_node_factory(workers=[ProbeWorker], fork_server=kind, cancel_grace_seconds=1.0)

    def start(task_id: str, seconds: float) -> None:
        attachments = {"traceFile": str(tmp_path / task_id), "mainSeconds": seconds}
        node.store.create_task(
            Task(
                id=task_id,
                class_name="ProbeWorker",
                executor=node.skald_id,
                attachments=attachments,
            )
        )
        assert node.supervisor.start_task(node.store.get_task(task_id), {S.CREATED})

    start("long", 600)
    for i in range(20):  # the old fork server lost "long" within 2-7 of these
        start(f"short-{i}", 60)
        node.supervisor.cancel(f"short-{i}")
        assert node.supervisor.wait_ended(f"short-{i}", 5)
        assert node.store.get_task("long").lifecycle_status is S.RUNNING, f"after {i + 1}"
    assert "long" in node.supervisor.tasks
