"""Fencing and convergence: a task runs at most once at a time, where the store says, and
ends in the state last asked for, whatever fails in between.

Each test reproduces a way this broke (a stale node, a re-queue, a replayed cancel,
orphaned workers, an update to a paused worker, a lost update event, a failover after
the deadline). The first three run on the in-memory backends and on the real services.
Live copies of a task are counted from what its worker processes wrote themselves.
"""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.plugins import Backends, make_backends, make_plugin_manager
from skalds.ports import Increment, Topic
from skalds.ports.event_bus import BusMessage
from tests.fencing_helpers import (
    NodeProcess,
    live_pids,
    node_processes,
    running_on,
    started_pids,
    wait_gone,
)
from tests.helpers import post_probe_task, read_lines, stored, wait_for

S = TaskLifecycleStatus
REDIS_URL = os.environ.get("SKALDS_TEST_FENCING_REDIS_URL", "redis://127.0.0.1:6379/12")


def real_services() -> dict[str, Any]:
    """Where the real services are (skips locally, fails in CI, when one is missing)."""
    from tests.backends.kafka import KAFKA_ADDRESS, kafka_port_open
    from tests.backends.mongo import require_mongo
    from tests.backends.redis import connect_cache
    from tests.conftest import require_service

    pytest.importorskip("skalds_kafka")
    require_service("Kafka", kafka_port_open(), KAFKA_ADDRESS)
    connect_cache("Redis", REDIS_URL).close()
    return {
        "event_bus_url": f"kafka://{KAFKA_ADDRESS}",
        "cache_url": REDIS_URL,
        "store_url": require_mongo(),
        "db_name": f"skalds_fencing_{uuid.uuid4().hex[:8]}",
    }


def drop_database(services: dict[str, Any]) -> None:
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(services["store_url"])
    with contextlib.suppress(pymongo.errors.PyMongoError):
        client.drop_database(services["db_name"])
    client.close()


@pytest.fixture(params=["memory", pytest.param("services", marks=pytest.mark.slow)])
def backend_kind(request) -> str:
    return str(request.param)


@pytest.fixture
def skalds_backends(backend_kind) -> Iterator[Backends]:
    """The in-memory backends, or the real services, shared by the nodes and controllers."""
    if backend_kind == "memory":
        backends = Backends(MemoryEventBus(), MemoryCache(), MemoryStore())
        yield backends
        backends.close()
        return
    services = real_services()
    backends = make_backends(make_plugin_manager(load_entry_points=True), SkaldConfig(**services))
    yield backends
    backends.close()
    drop_database(services)


def holds_for(seconds: float, check: Callable[[], bool]) -> bool:
    """Whether ``check`` stays true for ``seconds`` (looked at every 50 ms)."""
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if not check():
            return False
        time.sleep(0.05)
    return check()


class Recorder:
    """Records the raw events of some topics, to replay them later as a late duplicate."""

    def __init__(self, bus: Any, topics: tuple[str, ...]) -> None:
        self.messages: list[BusMessage] = []
        self._lock = threading.Lock()
        self.subscription = bus.subscribe(
            list(topics), self, group=f"recorder-{uuid.uuid4().hex[:6]}"
        )

    def __call__(self, msg: BusMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def of(self, topic: str) -> list[BusMessage]:
        with self._lock:
            return [m for m in self.messages if m.topic == topic]


# -- 1. a stale node ----------------------------------------------------------------------------


def test_a_stale_node_stopping_its_copy_leaves_the_tasks_new_home_running(
    skalds_backends, make_node, controller, traces, monkeypatch
):
    """Node A looked offline, its task moved to B; A's late stop must not end B's copy."""
    a = make_node(reconcile_interval=3600)
    client, _ = controller()
    trace = traces("moved")
    post_probe_task(client, "moved", trace, isPersistent=True, attachments={"mainSeconds": 120})
    wait_for(lambda: running_on(skalds_backends, "moved", a.skald_id), 20)
    wait_for(lambda: len(live_pids(trace)) == 1)
    (a_pid,) = live_pids(trace)
    b = make_node(reconcile_interval=3600)
    # A stops reporting but keeps running (a long GC pause, a network partition).
    monkeypatch.setattr(a._reporter, "report_once", lambda: None)
    wait_for(lambda: running_on(skalds_backends, "moved", b.skald_id), 30)
    wait_for(lambda: len(started_pids(trace)) == 2, 10)
    b_pid = started_pids(trace)[-1]

    a.reconcile()  # A finds the task moved and stops its own copy
    assert wait_gone([a_pid], 10) == []

    assert holds_for(2.0, lambda: running_on(skalds_backends, "moved", b.skald_id))
    assert live_pids(trace) == [b_pid]


# -- 2. re-queue and replayed cancels --------------------------------------------------------------


def test_requeueing_a_running_task_runs_it_again_instead_of_cancelling_it(
    skalds_backends, make_node, controller, traces
):
    node = make_node()
    client, _ = controller()
    trace = traces("again")
    post_probe_task(client, "again", trace, attachments={"mainSeconds": 120})
    wait_for(lambda: running_on(skalds_backends, "again", node.skald_id), 20)
    wait_for(lambda: len(live_pids(trace)) == 1)

    res = client.put("/api/tasks/again/status", json={"lifecycleStatus": "Created"})
    assert res.status_code == 200, res.text

    wait_for(lambda: len(started_pids(trace)) == 2, 20)
    assert holds_for(2.0, lambda: running_on(skalds_backends, "again", node.skald_id))
    assert len(live_pids(trace)) == 1


def test_a_replayed_cancel_of_an_earlier_run_leaves_the_rerun_alone(
    skalds_backends, make_node, controller, traces
):
    node = make_node()
    client, _ = controller()
    recorder = Recorder(skalds_backends.event_bus, (Topic.TASK_CANCEL.value,))
    trace = traces("rerun")
    post_probe_task(client, "rerun", trace, attachments={"mainSeconds": 120})
    wait_for(lambda: running_on(skalds_backends, "rerun", node.skald_id), 20)
    assert client.put("/api/tasks/rerun/status", json={"lifecycleStatus": "Cancelled"}).is_success
    wait_for(lambda: not live_pids(trace) and started_pids(trace), 10)
    wait_for(lambda: recorder.of(Topic.TASK_CANCEL.value), 10)
    assert client.put("/api/tasks/rerun/status", json={"lifecycleStatus": "Created"}).is_success
    wait_for(lambda: running_on(skalds_backends, "rerun", node.skald_id), 20)
    wait_for(lambda: len(live_pids(trace)) == 1, 10)

    old_cancel = recorder.of(Topic.TASK_CANCEL.value)[0]
    skalds_backends.event_bus.publish(Topic.TASK_CANCEL.value, old_cancel.key, old_cancel.value)

    assert holds_for(2.0, lambda: running_on(skalds_backends, "rerun", node.skald_id))
    assert len(live_pids(trace)) == 1
    recorder.subscription.close()


# -- 3. no worker outlives its node ----------------------------------------------------------


@pytest.fixture
def node_config(backend_kind, tmp_path) -> Iterator[dict[str, Any]]:
    """A node process's config: an SQLite file (embedded), or the real services."""
    config: dict[str, Any] = {
        "skald_id": f"orphan-{uuid.uuid4().hex[:6]}",
        "cancel_grace_seconds": 0.5,
        "load_entry_points": False,
        "log_path": str(tmp_path / "logs"),
        "run_dir": str(tmp_path / "run"),  # its lock file, left behind by the kill
    }
    if backend_kind == "memory":
        config["store_url"] = f"sqlite:///{tmp_path / 'tasks.db'}"
        yield config
        return
    services = real_services()
    config.update(services, load_entry_points=True)  # the adapters are plugins
    yield config
    drop_database(services)


def test_a_node_killed_with_its_fork_server_leaves_no_worker_and_restarts_it_once(
    node_config, traces, tmp_path
):
    backends = make_backends(make_plugin_manager(), SkaldConfig(**node_config))
    trace = traces("orphan")
    backends.store.create_task(
        Task(
            id="orphan",
            class_name="ProbeWorker",
            executor=node_config["skald_id"],
            is_persistent=True,
            attachments={"traceFile": str(trace), "mainSeconds": 300},
        )
    )
    try:
        with node_processes() as nodes:
            nodes.append(NodeProcess(node_config, tmp_path / "node-1.log"))
            wait_for(lambda: len(live_pids(trace)) == 1, 60)
            (first,) = live_pids(trace)

            nodes[0].kill_group()  # kill -9 -- -<pgid>: the node and its fork server
            assert wait_gone([first], 10) == [], (
                "a worker outlived its node\n" + nodes[0].output()[-3000:]
            )
            assert "release" in read_lines(trace)  # it cancelled itself: release ran

            nodes.append(NodeProcess(node_config, tmp_path / "node-2.log"))
            wait_for(lambda: len(started_pids(trace)) == 2, 60)
            assert holds_for(2.0, lambda: len(live_pids(trace)) == 1), nodes[1].output()[-3000:]
            assert stored(backends, "orphan").lifecycle_status is S.RUNNING
    finally:
        backends.close()


def test_a_node_that_wakes_after_its_task_moved_stops_its_copy_at_once(traces, tmp_path):
    """SIGSTOP longer than the node TTL (a VM pause): the node reconciles as it wakes,
    not at its next periodic reconcile (30 s by default)."""
    from skalds.sqlite.store import SqliteStore

    db = tmp_path / "tasks.db"
    config = {
        "skald_id": f"sleeper-{uuid.uuid4().hex[:6]}",
        "store_url": f"sqlite:///{db}",
        "cancel_grace_seconds": 0.5,
        "load_entry_points": False,
        "log_path": str(tmp_path / "logs"),
        "run_dir": str(tmp_path / "run"),
    }
    store = SqliteStore(str(db))
    trace = traces("sleepy")
    store.create_task(
        Task(
            id="sleepy",
            class_name="ProbeWorker",
            executor=config["skald_id"],
            is_persistent=True,
            attachments={"traceFile": str(trace), "mainSeconds": 300},
        )
    )
    try:
        with node_processes() as nodes:
            nodes.append(NodeProcess(config, tmp_path / "node.log"))
            wait_for(lambda: len(live_pids(trace)) == 1, 60)
            (pid,) = live_pids(trace)
            os.kill(nodes[0].proc.pid, signal.SIGSTOP)  # the node only: its worker runs on
            store.update_task(
                "sleepy",
                {"executor": "elsewhere", "incarnation": Increment(1)},
                expected_status={S.RUNNING},
            )
            time.sleep(3.5)  # longer than the node TTL (2.5 s)
            os.kill(nodes[0].proc.pid, signal.SIGCONT)
            assert wait_gone([pid], 4) == [], nodes[0].output()[-3000:]
            assert "reconciling with the store now" in nodes[0].output()
            task = stored_in(store, "sleepy")
            assert (task.lifecycle_status, task.executor) == (S.RUNNING, "elsewhere")
    finally:
        store.close()


def stored_in(store: Any, task_id: str) -> Task:
    task = store.get_task(task_id)
    assert task is not None
    return task
