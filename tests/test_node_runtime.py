"""Worker processes under a node: updates, cancel, crashes, pause/resume, heartbeats."""

from __future__ import annotations

import logging
import os
import signal
import time
from pathlib import Path

import pytest

from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.ports import Topic
from tests.helpers import collected_log, process_alive, read_lines, wait_for
from tests.workers import NoUpdateWorker, ProbeWorker, family_pids

S = TaskLifecycleStatus


@pytest.fixture
def node(skalds_node_factory):
    return skalds_node_factory(workers=[ProbeWorker, NoUpdateWorker], cancel_grace_seconds=1.0)


def submit(node, task_id: str, trace: Path, **attachments) -> Task:
    """Store a task for ``node`` and send the assign event, as the seed scripts do."""
    task = Task(
        id=task_id,
        class_name="ProbeWorker",
        source="test",
        executor=node.skald_id,
        attachments={"traceFile": str(trace), **attachments},
    )
    node.store.create_task(task)
    node.event_bus.publish(
        Topic.TASK_ASSIGN, task_id, TaskEvent(task_ids=[task_id]).model_dump_json()
    )
    return task


def proc_state(pid: int) -> str:
    """The one-letter state of a process (``T`` = stopped)."""
    return Path(f"/proc/{pid}/stat").read_text().split(")")[1].split()[0]


def status_of(node, task_id: str) -> TaskLifecycleStatus:
    task = node.store.get_task(task_id)
    assert task is not None
    return task.lifecycle_status


def wait_status(node, task_id: str, status: TaskLifecycleStatus, timeout: float = 10.0) -> Task:
    """Wait until the store says ``status`` and the worker process is gone."""
    wait_for(lambda: status_of(node, task_id) is status, timeout)
    if status.is_final:
        assert node.supervisor.wait_ended(task_id, timeout)
    task = node.store.get_task(task_id)
    assert task is not None
    return task


def test_an_assigned_task_runs_in_its_own_process_group(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "run-1", trace, mainSeconds=0.2)
    wait_status(node, "run-1", S.FINISHED)
    lines = read_lines(trace)
    before = next(line for line in lines if line.startswith("before"))
    pid = int(before.split("pid=")[1].split()[0])
    pgid = int(before.split("pgid=")[1])
    assert pid == pgid != os.getpid()
    assert lines[-1] == "release"
    assert node.cache.get(keys.task_heartbeat("run-1")) == str(keys.HEARTBEAT_FINISHED)


def test_a_valid_update_reaches_the_running_worker(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "upd-1", trace, mainSeconds=30)
    wait_for(lambda: "main" in read_lines(trace))
    seq = node.update_task("upd-1", {"traceFile": str(trace), "label": "night", "fixFrame": 60})
    applied, error = node.supervisor.wait_update("upd-1", seq, timeout=5)
    assert (applied, error) == (True, None)
    assert "update night 60" in read_lines(trace)


def test_an_invalid_update_is_rejected_and_the_worker_keeps_its_parameters(node, tmp_path):
    from skalds.errors import AttachmentValidationError

    trace = tmp_path / "t"
    submit(node, "upd-2", trace, mainSeconds=30, fixFrame=10)
    wait_for(lambda: "main" in read_lines(trace))
    with pytest.raises(AttachmentValidationError) as info:
        node.update_task("upd-2", {"traceFile": str(trace), "fixFrame": 0})
    assert "upd-2" in str(info.value) and "fixFrame" in str(info.value)
    assert "greater than or equal to 1" in str(info.value)
    time.sleep(0.2)
    assert not any(line.startswith("update") for line in read_lines(trace))
    assert node.supervisor.tasks["upd-2"].attachments["fixFrame"] == 10
    assert status_of(node, "upd-2") is S.RUNNING


def test_an_update_handler_that_raises_does_not_kill_the_worker(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "upd-3", trace, mainSeconds=30, failIn="update")
    wait_for(lambda: "main" in read_lines(trace))
    seq = node.update_task("upd-3", {"traceFile": str(trace), "failIn": "update", "label": "x"})
    applied, error = node.supervisor.wait_update("upd-3", seq, timeout=5)
    assert applied and error == "RuntimeError: boom in update"
    assert status_of(node, "upd-3") is S.RUNNING


def test_cancel_runs_release_and_records_cancelled(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "can-1", trace, mainSeconds=30)
    wait_for(lambda: "main" in read_lines(trace))
    node.event_bus.publish(
        Topic.TASK_CANCEL, "can-1", TaskEvent(task_ids=["can-1"]).model_dump_json()
    )
    wait_status(node, "can-1", S.CANCELLED)
    wait_for(lambda: node.cache.get(keys.task_heartbeat("can-1")) == str(keys.HEARTBEAT_CANCELLED))
    assert read_lines(trace)[-1] == "release"


def test_a_worker_that_ignores_sigterm_is_killed_after_the_grace_period(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "stubborn", trace, mainSeconds=60, ignoreSigterm=True)
    wait_for(lambda: "main" in read_lines(trace))
    pid = node.supervisor.tasks["stubborn"].pid
    started = time.monotonic()
    node.cancel_task("stubborn")
    wait_status(node, "stubborn", S.CANCELLED, timeout=10)
    took = time.monotonic() - started
    assert 0.9 <= took < 5, took  # grace period is 1 s
    assert pid is not None and not process_alive(pid)


def test_cancel_leaves_no_child_or_grandchild_behind(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "family", trace, mainSeconds=60, spawnChildren=True)
    wait_for(lambda: len([x for x in read_lines(trace) if x.startswith("child")]) == 2)
    family = wait_for(lambda: (pids := family_pids(trace)) and len(pids) >= 3 and pids)
    assert all(process_alive(pid) for pid in family)
    node.cancel_task("family")
    wait_status(node, "family", S.CANCELLED)
    wait_for(lambda: not any(process_alive(pid) for pid in family), timeout=5)


def test_a_finished_worker_leaves_no_process_behind(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "leftovers", trace, spawnChildren=True)
    wait_status(node, "leftovers", S.FINISHED)
    pids = [int(x.split()[1]) for x in read_lines(trace) if x.startswith("child")]
    wait_for(lambda: not any(process_alive(pid) for pid in pids), timeout=5)


@pytest.mark.parametrize(("code", "reason"), [(3, "exited with code 3"), (0, "exited with code 0")])
def test_a_worker_that_exits_abruptly_is_failed_with_the_reason(node, tmp_path, code, reason):
    trace = tmp_path / "t"
    submit(node, f"exit-{code}", trace, osExit=code)
    task = wait_status(node, f"exit-{code}", S.FAILED)
    assert task.error_message is not None and reason in task.error_message
    assert node.cache.get(keys.task_heartbeat(f"exit-{code}")) == str(keys.HEARTBEAT_FAILED)


def test_a_sigkilled_worker_is_failed_at_once(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "killed", trace, mainSeconds=60)
    wait_for(lambda: "main" in read_lines(trace))
    pid = node.supervisor.tasks["killed"].pid
    started = time.monotonic()
    os.kill(pid, signal.SIGKILL)
    task = wait_status(node, "killed", S.FAILED, timeout=5)
    assert time.monotonic() - started < 1.0
    assert task.error_message == "worker process was killed by SIGKILL"


def test_an_exception_fails_the_task_with_text_and_traceback(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "boom", trace, failIn="main")
    task = wait_status(node, "boom", S.FAILED)
    assert task.error_message == "RuntimeError: boom in main"
    assert node.cache.get(keys.task_has_error("boom")) == "true"
    exception = node.cache.get(keys.task_exception("boom"))
    assert exception is not None and "Traceback" in exception and "boom in main" in exception
    assert read_lines(trace)[-1] == "release"


def test_an_exception_in_initialize_fails_the_task(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "init-fail", trace, failIn="initialize")
    task = wait_status(node, "init-fail", S.FAILED)
    assert task.error_message == "RuntimeError: boom in initialize"


def test_pause_stops_the_worker_and_resume_continues_it(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "pz", trace, mainSeconds=60)
    wait_for(lambda: "main" in read_lines(trace))
    pid = node.supervisor.tasks["pz"].pid
    assert node.pause_task("pz") is True
    assert status_of(node, "pz") is S.PAUSED
    wait_for(lambda: proc_state(pid) == "T")
    assert node.pause_task("pz") is False  # already paused
    assert node.resume_task("pz") is True
    assert status_of(node, "pz") is S.RUNNING
    wait_for(lambda: proc_state(pid) != "T")


def test_a_paused_worker_can_be_cancelled(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "pz-cancel", trace, mainSeconds=60)
    wait_for(lambda: "main" in read_lines(trace))
    node.event_bus.publish(
        Topic.TASK_PAUSE, "pz-cancel", TaskEvent(task_ids=["pz-cancel"]).model_dump_json()
    )
    wait_status(node, "pz-cancel", S.PAUSED)
    node.cancel_task("pz-cancel")
    wait_status(node, "pz-cancel", S.CANCELLED)
    assert read_lines(trace)[-1] == "release"


def test_workers_send_heartbeats_that_the_node_writes_to_the_cache(node, tmp_path):
    trace = tmp_path / "t"
    submit(node, "hb", trace, mainSeconds=60)
    wait_for(lambda: node.cache.get(keys.task_heartbeat("hb")) is not None)
    first = node.supervisor.tasks["hb"].heartbeat
    wait_for(lambda: node.supervisor.tasks["hb"].heartbeat != first, timeout=5)
    assert 0 <= int(node.cache.get(keys.task_heartbeat("hb")) or -9) < 200


def test_workers_may_start_multiprocessing_pools(skalds_node_factory, tmp_path):
    from tests.workers_pool import PoolWorker

    node = skalds_node_factory(workers=[PoolWorker])
    out = tmp_path / "pool.txt"
    task = Task(
        id="pool", class_name="PoolWorker", executor=node.skald_id, attachments={"out": str(out)}
    )
    node.store.create_task(task)
    node.event_bus.publish(
        Topic.TASK_ASSIGN, "pool", TaskEvent(task_ids=["pool"]).model_dump_json()
    )
    wait_status(node, "pool", S.FINISHED)
    assert out.read_text() == "[0, 1, 4, 9]"


def test_a_killed_fork_server_is_replaced_and_running_workers_are_unaffected(
    node, tmp_path, caplog
):
    first = tmp_path / "first"
    submit(node, "survivor", first, mainSeconds=2)
    wait_for(lambda: "main" in read_lines(first))
    runtime = node.supervisor.runtime
    old, _kind = runtime.fork_server
    os.kill(old, signal.SIGKILL)
    wait_for(lambda: runtime.fork_server[0] != old, timeout=5)
    assert f"the fork server (pid {old}) is gone" in caplog.text
    # the running worker finishes normally and is recorded as such
    wait_status(node, "survivor", S.FINISHED, timeout=10)
    assert read_lines(first)[-1] == "release"
    # and new tasks still start, from the new fork server
    submit(node, "after", tmp_path / "after")
    wait_status(node, "after", S.FINISHED)


def test_a_task_starting_while_the_supervisor_loop_reads_the_tasks_does_not_break_it(node):
    """``spawn`` adds to the runtime's tasks from a lane while the supervisor loop looks
    at them for its next timer; that once raised "dictionary changed size during
    iteration" and ended the loop, after which no task could start."""
    runtime = node.supervisor.runtime

    class Arriving:
        """A task whose timer fields are read while another task starts."""

        cancel_at = killed = code_at = None

        @property
        def eof_at(self) -> None:
            runtime._handles.setdefault("started-meanwhile", Arriving())
            return None

    runtime._handles["looked-at"] = Arriving()
    try:
        assert runtime._next_timeout() == 1.0
    finally:
        runtime._handles.pop("looked-at", None)
        runtime._handles.pop("started-meanwhile", None)


def test_the_supervisor_loop_outlives_an_error_of_its_own(node, tmp_path, monkeypatch):
    runtime = node.supervisor.runtime
    original = runtime._on_timers
    failures = []

    def broken_once() -> None:
        if not failures:
            failures.append(1)
            raise RuntimeError("a bug in the loop, on purpose")
        original()

    with collected_log(logging.ERROR) as lines:
        monkeypatch.setattr(runtime, "_on_timers", broken_once)
        runtime._wake()
        wait_for(lambda: failures)
        submit(node, "after-the-bug", tmp_path / "after")
        wait_status(node, "after-the-bug", S.FINISHED)
    assert any("supervisor loop failed" in line for line in lines), lines
