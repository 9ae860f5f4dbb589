"""The monitor on the in-memory backends with real nodes: deaths, stalls, cache outages."""

from __future__ import annotations

import contextlib
import dataclasses
import os
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skalds.memory import MemoryEventBus, MemoryStore
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.plugins import Backends
from skalds_controller import ControllerSettings, create_app
from skalds_controller.background import start_background
from skalds_controller.monitor import Monitor
from tests.helpers import (
    SwitchableCache,
    post_probe_task,
    process_alive,
    read_lines,
    stored,
    wait_for,
)
from tests.workers import ProbeWorker

S = TaskLifecycleStatus


@pytest.fixture
def skalds_backends() -> Iterator[Backends]:
    """The plugin's fresh in-memory backends, with a cache the test can switch off."""
    backends = Backends(MemoryEventBus(), SwitchableCache(), MemoryStore())
    yield backends
    backends.close()


@pytest.fixture
def make_node(skalds_node_factory):
    def make(**config: Any):
        config.setdefault("cancel_grace_seconds", 0.5)
        return skalds_node_factory(workers=[ProbeWorker], **config)

    return make


def crash(node, monkeypatch) -> float:
    """Stop ``node`` as a SIGKILL looks from outside: its registry entry is left to expire."""
    monkeypatch.setattr(node._reporter, "leave", lambda: None)
    node.stop()
    return time.monotonic()


def create(client: TestClient, task_id: str, trace: Any, **fields: Any) -> None:
    """A ProbeWorker task that runs 30 s unless ``attachments`` say otherwise."""
    fields["attachments"] = {"mainSeconds": 30, **fields.get("attachments", {})}
    post_probe_task(client, task_id, trace, **fields)


def running_on(backends: Backends, task_id: str, node_id: str) -> bool:
    task = stored(backends, task_id)
    return task.lifecycle_status is S.RUNNING and task.executor == node_id


# -- node deaths ------------------------------------------------------------------------------


def test_a_node_that_dies_is_offline_within_three_seconds(make_node, controller, monkeypatch):
    node = make_node()
    _, background = controller(mode="MONITOR")
    assert background.dispatcher is None and background.monitor is not None
    monitor = background.monitor
    wait_for(lambda: node.skald_id in monitor.online_nodes())
    died = crash(node, monkeypatch)
    wait_for(lambda: node.skald_id not in monitor.online_nodes(), timeout=5)
    assert time.monotonic() - died < 3.3


def test_a_dead_nodes_persistent_tasks_move_and_the_others_fail(
    skalds_backends, make_node, controller, monkeypatch, tmp_path
):
    doomed = make_node()
    client, _ = controller()
    create(client, "keep", tmp_path / "keep", isPersistent=True)
    create(client, "once", tmp_path / "once")
    for task_id in ("keep", "once"):
        wait_for(lambda task_id=task_id: running_on(skalds_backends, task_id, doomed.skald_id))
        wait_for(lambda task_id=task_id: "main" in read_lines(tmp_path / task_id))
    heir = make_node()
    died = crash(doomed, monkeypatch)

    wait_for(lambda: running_on(skalds_backends, "keep", heir.skald_id), timeout=6)
    moved_after = time.monotonic() - died
    wait_for(lambda: read_lines(tmp_path / "keep").count("main") == 2)
    once = stored(skalds_backends, "once")
    assert once.lifecycle_status is S.FAILED
    assert once.error_message == f"node {doomed.skald_id} went offline while the task was Running"
    assert read_lines(tmp_path / "once").count("main") == 1
    assert moved_after < 3.5, f"re-placed {moved_after:.2f} s after the node died"


class _OrderRecordingStore:
    """The test's store, noting when tasks are re-queued and when a node's are listed."""

    def __init__(self, store: Any) -> None:
        self._store = store
        self.calls: list[tuple[str, str]] = []

    def list_tasks(self, query: Any = None) -> Any:
        if query is not None and query.executor:
            self.calls.append(("list", query.executor))
        return self._store.list_tasks(query)

    def update_task(self, task_id: str, changes: Any, **kwargs: Any) -> Any:
        if changes.get("lifecycle_status") is S.CREATED:
            self.calls.append(("requeue", task_id))
        return self._store.update_task(task_id, changes, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def test_a_dead_nodes_reported_tasks_are_taken_back_before_its_tasks_are_queried(
    skalds_backends, make_node, monkeypatch, tmp_path
):
    """A store query by executor is a collection scan on FerretDB: not on the fast path."""
    store = _OrderRecordingStore(skalds_backends.store)
    backends = dataclasses.replace(skalds_backends, store=store)
    app = create_app(ControllerSettings(load_entry_points=False), backends=backends)
    background = start_background(app.state.context)
    try:
        doomed = make_node()
        create(TestClient(app), "keep", tmp_path / "keep", isPersistent=True)
        wait_for(lambda: running_on(skalds_backends, "keep", doomed.skald_id))
        assert background.monitor is not None
        wait_for(lambda: "keep" in background.monitor._reported.get(doomed.skald_id, []))
        heir = make_node()
        crash(doomed, monkeypatch)
        wait_for(lambda: running_on(skalds_backends, "keep", heir.skald_id), timeout=6)
    finally:
        background()
    assert ("requeue", "keep") in store.calls and ("list", doomed.skald_id) in store.calls
    requeued = store.calls.index(("requeue", "keep"))
    assert requeued < store.calls.index(("list", doomed.skald_id)), store.calls


def test_tasks_left_on_a_node_nobody_saw_alive_are_taken_back(
    skalds_backends, make_node, controller, tmp_path
):
    trace = {"traceFile": str(tmp_path / "keep"), "mainSeconds": 30}
    for task_id, persistent in (("keep", True), ("once", False)):
        skalds_backends.store.create_task(
            Task(
                id=task_id,
                className="ProbeWorker",
                attachments=trace,
                executor="ghost",
                lifecycleStatus=S.RUNNING,
                isPersistent=persistent,
            )
        )
    node = make_node()
    controller()
    wait_for(lambda: running_on(skalds_backends, "keep", node.skald_id), timeout=6)
    once = stored(skalds_backends, "once")
    assert once.lifecycle_status is S.FAILED and "node ghost went offline" in (
        once.error_message or ""
    )


# -- stalled workers ------------------------------------------------------------------------------


def test_a_worker_that_stops_beating_on_a_live_node_is_failed_and_stopped(
    skalds_backends, make_node, controller, tmp_path
):
    node = make_node(task_ttl_seconds=1.0)
    client, _ = controller(mode="MONITOR")  # no dispatcher: the tasks name their node
    node_id = node.skald_id
    create(client, "hung", tmp_path / "hung", executor=node_id)
    create(client, "fine", tmp_path / "fine", executor=node_id)
    wait_for(lambda: running_on(skalds_backends, "hung", node_id))
    wait_for(lambda: all(t.heartbeat > 0 for t in node.supervisor.snapshot()), timeout=5)
    pid = node.supervisor.tasks["hung"].pid
    assert pid is not None
    os.kill(pid, signal.SIGSTOP)  # the worker hangs: no heartbeat, process still there
    stopped = time.monotonic()
    try:
        failed = wait_for(
            lambda: (t := stored(skalds_backends, "hung")).lifecycle_status is S.FAILED and t,
            timeout=6,
        )
        assert time.monotonic() - stopped < 4.5
        assert "stopped sending heartbeats" in (failed.error_message or "")
        assert node_id in (failed.error_message or "")
        wait_for(lambda: not process_alive(pid), timeout=5)  # the cancel reached the node
        assert running_on(skalds_backends, "fine", node_id)
    finally:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)


# -- cache outages --------------------------------------------------------------------------------


def test_a_cache_outage_does_not_make_healthy_tasks_look_dead(
    skalds_backends, make_node, controller, tmp_path
):
    node = make_node(node_ttl_seconds=1.0, heartbeat_interval=0.5, task_ttl_seconds=1.0)
    client, _ = controller(mode="CONTROLLER")
    for task_id, persistent in (("keep", True), ("once", False)):
        create(client, task_id, tmp_path / task_id, isPersistent=persistent, executor=node.skald_id)
        wait_for(lambda task_id=task_id: running_on(skalds_backends, task_id, node.skald_id))
    settings = ControllerSettings(load_entry_points=False)
    # No lease: nothing stands between the monitor and its conclusions but the grace rule.
    monitor = Monitor(skalds_backends, settings, controller_id="c1", lease=None)
    monitor.start()
    try:
        wait_for(lambda: all(t.heartbeat > 0 for t in node.supervisor.snapshot()), timeout=5)
        wait_for(lambda: node.skald_id in monitor.online_nodes())
        cache = skalds_backends.cache
        assert isinstance(cache, SwitchableCache)
        cache.down = True
        time.sleep(2.5)  # longer than the node's registry TTL and the tasks' heartbeat TTL
        cache.down = False
        time.sleep(4.0)  # the monitor's grace, and some
        for task_id in ("keep", "once"):
            assert running_on(skalds_backends, task_id, node.skald_id)
            assert read_lines(tmp_path / task_id).count("main") == 1
        assert monitor.counts == {"nodesLost": 0, "requeued": 0, "failed": 0, "stalled": 0}
        assert node.skald_id in monitor.online_nodes()
    finally:
        monitor.stop()
