"""Convergence on the in-memory backends: what a user last asked for is what runs.

An update to a paused task, an update whose event was lost, a failover after the
deadline, and the exit code of a seed-style single_process script. (Fencing, on the
in-memory backends and the real services: tests/test_fencing.py.)
"""

from __future__ import annotations

import logging
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import psutil
import pytest

from skalds.errors import BackendUnavailableError, ConfigError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.plugins import Backends
from skalds.ports import Topic
from tests.fencing_helpers import ROOT, live_pids, running_on
from tests.helpers import collected_log, post_probe_task, read_lines, stored, wait_for
from tests.workers import ProbeWorker

S = TaskLifecycleStatus


def running_then_paused(client, backends: Backends, task_id: str, trace: Path) -> None:
    """Create a long ProbeWorker task through the API, wait until its worker runs, pause it."""
    post_probe_task(client, task_id, trace, attachments={"mainSeconds": 120})
    wait_for(lambda: stored(backends, task_id).lifecycle_status is S.RUNNING, 20)
    wait_for(lambda: live_pids(trace))
    assert client.post(f"/api/tasks/{task_id}/pause").is_success
    wait_for(lambda: stored(backends, task_id).lifecycle_status is S.PAUSED, 10)


# -- 4. a paused task's update ---------------------------------------------------------------------


def test_a_big_update_to_a_paused_task_reaches_it_on_resume_and_the_node_stays_responsive(
    skalds_backends, make_node, controller, traces
):
    make_node()
    client, _ = controller()
    trace = traces("paused")
    running_then_paused(client, skalds_backends, "paused", trace)

    big = {"traceFile": str(trace), "label": "big", "payload": "x" * 600_000, "mainSeconds": 120}
    res = client.put("/api/tasks/paused/attachments", json={"attachments": big})
    assert res.status_code == 200, res.text
    assert client.post("/api/tasks/paused/resume").is_success

    wait_for(lambda: stored(skalds_backends, "paused").lifecycle_status is S.RUNNING, 10)
    wait_for(lambda: any(line.startswith("update big") for line in read_lines(trace)), 10)
    other = traces("other")
    post_probe_task(client, "other", other)
    wait_for(lambda: stored(skalds_backends, "other").lifecycle_status is S.FINISHED, 10)


# -- 5. lost update events -------------------------------------------------------------------------


def test_an_update_whose_event_was_lost_reaches_the_worker_by_reconcile(
    skalds_backends, make_node, controller, traces, monkeypatch
):
    make_node(reconcile_interval=1.0)
    client, _ = controller()
    trace = traces("lost")
    post_probe_task(client, "lost", trace, attachments={"mainSeconds": 120})
    wait_for(lambda: stored(skalds_backends, "lost").lifecycle_status is S.RUNNING, 20)
    wait_for(lambda: live_pids(trace))

    bus = skalds_backends.event_bus
    publish = bus.publish

    def down_for_updates(topic: str, key: str, value: Any) -> None:
        if str(topic) == Topic.TASK_UPDATE_ATTACHMENT.value:
            raise BackendUnavailableError("event bus is down (test)")
        publish(topic, key, value)

    monkeypatch.setattr(bus, "publish", down_for_updates)
    new = {"traceFile": str(trace), "label": "late", "mainSeconds": 120}
    res = client.put("/api/tasks/lost/attachments", json={"attachments": new})
    assert res.status_code == 200, res.text
    assert res.json()["updateSent"] is False

    wait_for(lambda: any(line.startswith("update late") for line in read_lines(trace)), 10)


# -- 6. deadlines gate the start only -------------------------------------------------------------


def test_persistent_tasks_have_no_default_deadline():
    assert Task(id="p", className="W", isPersistent=True).deadline_date_time is None
    assert Task(id="o", className="W").deadline_date_time is not None


def test_failover_moves_a_started_persistent_task_whose_deadline_passed(
    skalds_backends, make_node, controller, traces, monkeypatch
):
    a = make_node()
    client, _ = controller()
    trace = traces("late")
    deadline = int(time.time() * 1000) + 2000
    post_probe_task(
        client,
        "late",
        trace,
        isPersistent=True,
        deadline=deadline,
        attachments={"mainSeconds": 120},
    )
    wait_for(lambda: running_on(skalds_backends, "late", a.skald_id), 20)
    b = make_node()
    while time.time() * 1000 <= deadline + 200:
        time.sleep(0.1)
    monkeypatch.setattr(a._reporter, "leave", lambda: None)
    a.stop()  # a crash, seen from outside: its registry entry is left to expire

    wait_for(
        lambda: (
            stored(skalds_backends, "late").lifecycle_status is not S.CREATED
            and stored(skalds_backends, "late").executor != a.skald_id
        ),
        20,
    )
    task = stored(skalds_backends, "late")
    assert (task.lifecycle_status, task.executor) in {
        (S.ASSIGNING, b.skald_id),
        (S.RUNNING, b.skald_id),
    }, task.error_message
    wait_for(lambda: running_on(skalds_backends, "late", b.skald_id), 10)


# -- single_process exit codes from app.run() ----------------------------------------------------

SEED_STYLE_SCRIPT = """
from skalds import Skald
from skalds.config.skald_config import SkaldConfig
from tests.workers import ProbeWorker

config = SkaldConfig(skald_mode="single_process", yaml_file={yaml!r}, load_entry_points=False)
app = Skald(config)
app.register_task_worker(ProbeWorker)
app.run()
"""


@pytest.mark.parametrize(
    ("attachments", "code"),
    [({}, 0), ({"failIn": "main"}, 1), ({"fixFrame": 0}, 2)],
    ids=["finished", "failed", "bad-config"],
)
def test_a_seed_style_single_process_script_exits_with_the_tasks_code(tmp_path, attachments, code):
    yaml = tmp_path / "single.yml"
    extra = "".join(f"      {k}: {v}\n" for k, v in attachments.items())
    yaml.write_text(
        "TaskWorkers:\n  job:\n    className: ProbeWorker\n    attachments:\n"
        f"      traceFile: {tmp_path / 'trace'}\n" + extra
    )
    script = SEED_STYLE_SCRIPT.format(yaml=str(yaml))
    proc = subprocess.run(
        [sys.executable, "-c", script],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == code, proc.stderr[-2000:]


# -- attachments versions ------------------------------------------------------------


def test_the_api_shows_the_applied_attachments_version_next_to_the_stored_one(
    skalds_backends, make_node, controller, traces
):
    make_node()
    client, _ = controller()
    trace = traces("versions")
    created = post_probe_task(client, "versions", trace, attachments={"mainSeconds": 120})
    assert (created["attachmentsVersion"], created["appliedAttachmentsVersion"]) == (0, 0)
    wait_for(lambda: stored(skalds_backends, "versions").lifecycle_status is S.RUNNING, 20)

    new = {"traceFile": str(trace), "label": "two", "mainSeconds": 120}
    answer = client.put("/api/tasks/versions/attachments", json={"attachments": new}).json()
    assert answer["updateReceived"] is True and answer["updateHeld"] is False
    assert answer["task"]["attachmentsVersion"] == 1

    def shown() -> tuple[int, int]:
        task = client.get("/api/tasks/versions").json()
        return task["attachmentsVersion"], task["appliedAttachmentsVersion"]

    wait_for(lambda: shown() == (1, 1))

    assert client.post("/api/tasks/versions/pause").is_success
    held = client.put(
        "/api/tasks/versions/attachments", json={"attachments": {**new, "label": "three"}}
    ).json()
    assert held["updateHeld"] is True and held["updateError"] is None
    assert shown() == (2, 1)  # the paused worker has not applied it


def test_a_paused_worker_gets_only_the_latest_of_several_updates_when_it_resumes(
    skalds_backends, make_node, controller, traces
):
    make_node()
    client, _ = controller()
    trace = traces("latest")
    running_then_paused(client, skalds_backends, "latest", trace)
    for n in range(1, 6):
        body = {"attachments": {"traceFile": str(trace), "label": f"v{n}", "mainSeconds": 120}}
        assert client.put("/api/tasks/latest/attachments", json=body).json()["updateHeld"]
    assert client.post("/api/tasks/latest/resume").is_success

    wait_for(lambda: any(line.startswith("update v5") for line in read_lines(trace)), 10)
    time.sleep(0.5)
    updates = [line for line in read_lines(trace) if line.startswith("update")]
    assert updates == ["update v5 10"]
    wait_for(lambda: stored(skalds_backends, "latest").applied_attachments_version == 5)


# -- a full queue --------------------------------------------------------------------


def test_events_dropped_from_a_full_queue_are_done_by_the_reconcile_they_trigger(
    skalds_backends, make_node, traces, monkeypatch
):
    from skalds.model.event import TaskEvent
    from skalds.node import events

    monkeypatch.setattr(events, "_MAX_IN_FLIGHT", 2)
    monkeypatch.setattr(events, "_QUEUE_WAIT", 0.0)
    node = make_node(reconcile_interval=3600)  # only a reconcile it asks for can help
    ids = [f"burst-{i}" for i in range(40)]
    for task_id in ids:
        node.store.create_task(
            Task(
                id=task_id,
                class_name="ProbeWorker",
                executor=node.skald_id,
                attachments={"traceFile": str(traces(task_id)), "mainSeconds": 60},
            )
        )

    def all_running() -> bool:
        return all(stored(skalds_backends, t).lifecycle_status is S.RUNNING for t in ids)

    with collected_log(logging.WARNING) as warnings:
        for task_id in ids:  # each start forks a process: the queue of two overflows
            event = TaskEvent(task_ids=[task_id], recipient=node.skald_id)
            node.event_bus.publish(Topic.TASK_ASSIGN, task_id, event.model_dump_json())
        wait_for(all_running, 30)
    assert any("dropped the event" in line for line in warnings)
    wait_for(lambda: all(len(live_pids(traces(t))) == 1 for t in ids))  # each started once


# -- one node id per host ---------------------------------------------------------------


def test_a_second_node_with_the_same_id_on_this_host_is_refused(skalds_node_factory):
    first = skalds_node_factory(workers=[ProbeWorker], skald_id="twice")
    with pytest.raises(ConfigError, match=r"'twice' is already running on this host \(pid \d+\)"):
        skalds_node_factory(workers=[ProbeWorker], skald_id="twice")
    assert first.supervisor.runtime is not None  # the first one is untouched
    first.stop()
    again = skalds_node_factory(workers=[ProbeWorker], skald_id="twice")  # free again
    assert again.skald_id == "twice"


def test_the_seeds_update_executor_is_a_placement_and_update_attachments_a_new_version():
    from skalds.memory import MemoryStore
    from skalds.repository.repository import TaskRepository

    repo = TaskRepository(MemoryStore())
    repo.create_task(Task(id="seed", class_name="W", attachments={"fixFrame": 1}))
    assert repo.update_executor("seed", "skald_123").incarnation == 1
    assert repo.update_executor("seed", "skald_456").incarnation == 2
    assert repo.update_attachments("seed", {"fixFrame": 2}).attachments_version == 1


def test_a_paused_task_stays_paused_when_its_node_restarts(skalds_backends, make_node, traces):
    node = make_node()
    trace = traces("nap")
    node.store.create_task(
        Task(
            id="nap",
            class_name="ProbeWorker",
            executor=node.skald_id,
            is_persistent=True,
            attachments={"traceFile": str(trace), "mainSeconds": 120},
        )
    )
    node.reconcile()
    wait_for(lambda: "main" in read_lines(trace))
    assert node.pause_task("nap")
    assert stored(skalds_backends, "nap").lifecycle_status is S.PAUSED
    node.stop()  # a node that stops leaves its tasks as they are in the store
    assert not live_pids(trace)

    again = make_node(skald_id=node.skald_id)
    wait_for(lambda: again.supervisor.local("nap") is not None)
    pid = again.supervisor.local("nap").pid  # paused at once: it may not trace its start
    wait_for(lambda: psutil.Process(pid).status() == psutil.STATUS_STOPPED)
    assert stored(skalds_backends, "nap").lifecycle_status is S.PAUSED
    assert again.supervisor.local("nap").status is S.PAUSED
