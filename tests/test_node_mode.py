"""Node mode: tasks arrive as events, the store decides; restarts reconcile from the store."""

from __future__ import annotations

import threading
import time

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.errors import SkaldsError
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.node.skald import Skald
from skalds.ports import Topic
from tests.helpers import read_lines, wait_for
from tests.workers import ProbeWorker

S = TaskLifecycleStatus


def assign(bus, *task_ids: str, recipient: str | None = None) -> None:
    event = TaskEvent(task_ids=list(task_ids), recipient=recipient)
    bus.publish(Topic.TASK_ASSIGN, task_ids[0], event.model_dump_json())


def probe_task(task_id: str, executor: str | None, trace, **extra) -> Task:
    return Task(
        id=task_id,
        class_name="ProbeWorker",
        executor=executor,
        attachments={"traceFile": str(trace), **extra},
    )


def status(node, task_id: str) -> TaskLifecycleStatus:
    task = node.store.get_task(task_id)
    assert task is not None
    return task.lifecycle_status


def test_a_replayed_assign_event_starts_the_task_only_once(skalds_node_factory, tmp_path):
    node = skalds_node_factory(workers=[ProbeWorker])
    trace = tmp_path / "t"
    node.store.create_task(probe_task("once", node.skald_id, trace, mainSeconds=30))
    for _ in range(5):
        assign(node.event_bus, "once")
    wait_for(lambda: "main" in read_lines(trace))
    time.sleep(0.3)
    assert sum(1 for line in read_lines(trace) if line.startswith("before")) == 1
    assert status(node, "once") is S.RUNNING


def test_a_task_for_another_node_is_left_alone(skalds_node_factory, tmp_path):
    node = skalds_node_factory(workers=[ProbeWorker])
    trace = tmp_path / "t"
    node.store.create_task(probe_task("elsewhere", "some-other-node", trace))
    assign(node.event_bus, "elsewhere")
    time.sleep(0.3)
    assert read_lines(trace) == []
    assert status(node, "elsewhere") is S.CREATED


def test_an_event_for_another_recipient_is_ignored(skalds_node_factory, tmp_path):
    node = skalds_node_factory(workers=[ProbeWorker])
    trace = tmp_path / "t"
    node.store.create_task(probe_task("addressed", node.skald_id, trace))
    assign(node.event_bus, "addressed", recipient="not-me")
    time.sleep(0.3)
    assert status(node, "addressed") is S.CREATED
    assign(node.event_bus, "addressed", recipient=node.skald_id)
    wait_for(lambda: status(node, "addressed") is S.FINISHED)


def test_two_nodes_on_one_bus_each_run_only_their_tasks(skalds_node_factory, tmp_path):
    a = skalds_node_factory(workers=[ProbeWorker])
    b = skalds_node_factory(workers=[ProbeWorker])
    a.store.create_task(probe_task("for-a", a.skald_id, tmp_path / "a", mainSeconds=30))
    a.store.create_task(probe_task("for-b", b.skald_id, tmp_path / "b", mainSeconds=30))
    assign(a.event_bus, "for-a", "for-b")
    wait_for(lambda: "for-a" in a.supervisor.tasks and "for-b" in b.supervisor.tasks)
    assert "for-b" not in a.supervisor.tasks and "for-a" not in b.supervisor.tasks


def test_malformed_events_are_skipped_and_the_node_keeps_working(
    skalds_node_factory, tmp_path, caplog
):
    node = skalds_node_factory(workers=[ProbeWorker])
    bus = node.event_bus
    bus.publish(Topic.TASK_ASSIGN, "x", b"\xff\xfe not json")
    bus.publish(Topic.TASK_ASSIGN, "x", '{"taskIds": "not-a-list"}')
    bus.publish(Topic.TASK_ASSIGN, "x", "[]")
    bus.publish(Topic.TASK_CANCEL, "x", '{"no": "ids"}')
    assign(bus, "no-such-task")
    trace = tmp_path / "t"
    node.store.create_task(probe_task("after-poison", node.skald_id, trace))
    assign(bus, "after-poison")
    wait_for(lambda: status(node, "after-poison") is S.FINISHED)
    skipped = [r.getMessage() for r in caplog.records if "malformed event" in r.getMessage()]
    assert len(skipped) == 4
    assert all("task." in line and "@" in line for line in skipped)  # topic[partition]@offset
    assert any("unknown task no-such-task" in r.getMessage() for r in caplog.records)


def test_an_unknown_class_name_fails_that_task_with_a_clear_reason(skalds_node_factory):
    node = skalds_node_factory(workers=[ProbeWorker])
    node.store.create_task(Task(id="ghost", class_name="NoSuchWorker", executor=node.skald_id))
    assign(node.event_bus, "ghost")
    wait_for(lambda: status(node, "ghost") is S.FAILED)
    task = node.store.get_task("ghost")
    assert task is not None and task.error_message is not None
    assert "unknown worker className 'NoSuchWorker'" in task.error_message
    assert "ProbeWorker" in task.error_message  # lists what is registered
    assert task.attempts == 0  # nothing ran: no attempt counted, so no retry is due


def test_invalid_stored_attachments_fail_only_that_task(skalds_node_factory, tmp_path):
    node = skalds_node_factory(workers=[ProbeWorker])
    node.store.create_task(
        Task(
            id="bad",
            class_name="ProbeWorker",
            executor=node.skald_id,
            attachments={"fixFrame": "x"},
        )
    )
    node.store.create_task(probe_task("good", node.skald_id, tmp_path / "t"))
    assign(node.event_bus, "bad", "good")
    wait_for(lambda: status(node, "bad") is S.FAILED and status(node, "good") is S.FINISHED)
    task = node.store.get_task("bad")
    assert task is not None and "fixFrame" in (task.error_message or "")
    assert "traceFile" in (task.error_message or "")
    assert task.attempts == 0
    good = node.store.get_task("good")
    assert good is not None and good.attempts == 1


def test_an_assigned_task_starts_from_one_compare_and_set_without_a_read(
    skalds_node_factory, tmp_path, monkeypatch
):
    """The node's compare-and-set returns the task: no read per assignment."""
    node = skalds_node_factory(workers=[ProbeWorker])
    task = probe_task("direct", node.skald_id, tmp_path / "t")
    node.store.create_task(task.model_copy(update={"lifecycle_status": S.ASSIGNING}))
    node_reads: list[str] = []
    real_get = node.store.get_task

    def get_task(task_id: str) -> Task | None:
        if threading.current_thread() is not threading.main_thread():
            node_reads.append(task_id)  # the node's threads, not this test's polling
        return real_get(task_id)

    monkeypatch.setattr(node.store, "get_task", get_task)
    assign(node.event_bus, "direct")
    wait_for(lambda: status(node, "direct") is S.FINISHED)
    assert node_reads == []
    stored = real_get("direct")
    assert stored is not None and stored.attempts == 1 and stored.executor == node.skald_id


def test_update_event_makes_the_node_read_new_attachments_from_the_store(
    skalds_node_factory, tmp_path
):
    node = skalds_node_factory(workers=[ProbeWorker])
    trace = tmp_path / "t"
    node.store.create_task(probe_task("upd", node.skald_id, trace, mainSeconds=30))
    assign(node.event_bus, "upd")
    wait_for(lambda: "main" in read_lines(trace))
    node.store.update_task(
        "upd",
        {
            "attachments": {
                "traceFile": str(trace),
                "label": "stored",
                "fixFrame": 42,
                "mainSeconds": 30,
            }
        },
    )
    event = TaskEvent(task_ids=["upd"])
    node.event_bus.publish(Topic.TASK_UPDATE_ATTACHMENT, "upd", event.model_dump_json())
    wait_for(lambda: "update stored 42" in read_lines(trace))


def test_node_registers_itself_and_its_workers_in_the_cache(skalds_node_factory):
    import json

    node = skalds_node_factory(workers=[ProbeWorker])
    cache = node.cache
    assert node.skald_id in cache.hash_get_all(keys.SKALDS_HASH)
    assert cache.hash_get_all(keys.SKALDS_MODE_HASH)[node.skald_id] == "node"
    assert cache.list_get(keys.skald_allowed_classes(node.skald_id)) == ["ProbeWorker"]
    info = json.loads(cache.get(keys.skald_info(node.skald_id)) or "{}")
    assert info["capacity"]["maxWorkers"] == node.config.max_workers
    assert info["capacity"]["cpuCount"] >= 1 and info["capacity"]["memoryTotal"] > 0
    schema = info["workers"][0]["schema"]
    assert info["workers"][0]["className"] == "ProbeWorker"
    assert "traceFile" in schema["properties"] and "traceFile" in schema["required"]


def test_a_stopped_node_leaves_the_registry(skalds_node_factory):
    node = skalds_node_factory(workers=[ProbeWorker])
    node.stop()
    assert node.skald_id not in node.cache.hash_get_all(keys.SKALDS_HASH)


def test_node_heartbeat_expires_when_the_node_dies(skalds_backends, tmp_path):
    node = Skald(
        SkaldConfig(
            skald_id="mortal", load_entry_points=False, node_ttl_seconds=0.5, heartbeat_interval=0.1
        ),
        backends=skalds_backends,
    )
    node.register_task_worker(ProbeWorker)
    node.start()
    try:
        wait_for(lambda: "mortal" in skalds_backends.cache.hash_get_all(keys.SKALDS_HASH))
        node._reporter._stop.set()  # the node "dies": no more heartbeats
        wait_for(
            lambda: "mortal" not in skalds_backends.cache.hash_get_all(keys.SKALDS_HASH), timeout=3
        )
    finally:
        node.stop()


def test_restart_reconciles_from_the_store(skalds_backends, tmp_path):
    """Tasks the store says run here are started again; a lost assign event is recovered."""
    store = skalds_backends.store
    cfg = dict(skald_id="phoenix", load_entry_points=False, cancel_grace_seconds=1.0)
    store.create_task(probe_task("was-running", "phoenix", tmp_path / "r", mainSeconds=30))
    store.update_task("was-running", {"lifecycle_status": S.RUNNING})
    store.create_task(probe_task("never-got-event", "phoenix", tmp_path / "c", mainSeconds=30))
    store.create_task(probe_task("assigning", "phoenix", tmp_path / "a", mainSeconds=30))
    store.update_task("assigning", {"lifecycle_status": S.ASSIGNING})
    store.create_task(probe_task("cancelled", "phoenix", tmp_path / "x"))
    store.update_task("cancelled", {"lifecycle_status": S.CANCELLED})
    store.create_task(probe_task("not-mine", "other", tmp_path / "o"))

    node = Skald(SkaldConfig(**cfg), backends=skalds_backends)
    node.register_task_worker(ProbeWorker)
    node.start()
    try:
        wait_for(
            lambda: {"was-running", "never-got-event", "assigning"} <= set(node.supervisor.tasks)
        )
        assert "cancelled" not in node.supervisor.tasks and "not-mine" not in node.supervisor.tasks
        # the store says "Cancelled" while the task runs here: the periodic reconcile stops it
        store.update_task("assigning", {"lifecycle_status": S.CANCELLED})
        node.reconcile()
        assert node.supervisor.wait_ended("assigning", 5)
    finally:
        node.stop()
    # stopping a node is not cancelling its tasks: they resume when it comes back
    assert store.get_task("never-got-event").lifecycle_status is S.RUNNING
    again = Skald(SkaldConfig(**cfg), backends=skalds_backends)
    again.register_task_worker(ProbeWorker)
    again.start()
    try:
        wait_for(lambda: {"was-running", "never-got-event"} <= set(again.supervisor.tasks))
    finally:
        again.stop()


def test_a_node_at_capacity_leaves_extra_tasks_for_later(skalds_node_factory, tmp_path):
    node = skalds_node_factory(workers=[ProbeWorker], max_workers=1)
    node.store.create_task(probe_task("first", node.skald_id, tmp_path / "1", mainSeconds=30))
    node.store.create_task(probe_task("second", node.skald_id, tmp_path / "2", mainSeconds=30))
    assign(node.event_bus, "first")
    wait_for(lambda: "first" in node.supervisor.tasks)
    assign(node.event_bus, "second")
    time.sleep(0.3)
    assert status(node, "second") is S.CREATED
    node.cancel_task("first")
    assert node.supervisor.wait_ended("first", 5)
    node.reconcile()
    wait_for(lambda: "second" in node.supervisor.tasks)


@pytest.mark.parametrize("mode", ["edge"])
def test_edge_mode_without_a_yaml_file_is_a_clear_error(skalds_backends, mode):
    from skalds.errors import ConfigError

    node = Skald(SkaldConfig(skald_mode=mode, load_entry_points=False), backends=skalds_backends)
    with pytest.raises(ConfigError, match="yaml_file"):
        node.start()


def test_a_backend_down_at_start_is_one_clear_line_then_retried(tmp_path, caplog):
    """The node waits (with back-off) for a store that does not answer, then starts."""
    import threading

    from skalds import hookimpl
    from skalds.memory import MemoryStore
    from skalds.plugins import make_plugin_manager

    class SleepyStore(MemoryStore):
        def __init__(self) -> None:
            super().__init__()
            self.up = threading.Event()

        def ping(self) -> bool:
            return self.up.is_set()

    store = SleepyStore()

    class Plugin:
        @hookimpl
        def skalds_make_store(self, url):
            return store if url.startswith("sleepy://") else None

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    node = Skald(
        SkaldConfig(
            skald_id="patient", load_entry_points=False, store_url="sleepy://user:secret@db:1"
        ),
        plugin_manager=pm,
    )
    node.register_task_worker(ProbeWorker)
    starter = threading.Thread(target=node.start)
    starter.start()
    try:
        wait_for(lambda: "retrying in 1.0 s" in caplog.text, timeout=5)
        lines = [r.getMessage() for r in caplog.records if "cannot reach" in r.getMessage()]
        assert lines[0] == "cannot reach the store at sleepy://user:***@db:1; retrying in 0.5 s"
        assert "secret" not in caplog.text and "Traceback" not in caplog.text
        assert not starter.is_alive() or node._supervisor is None
        store.up.set()
        starter.join(timeout=10)
        assert node._supervisor is not None
    finally:
        node.stop()
        starter.join(timeout=10)


def test_stop_ends_a_start_that_waits_for_backends(caplog):
    import threading

    from skalds import hookimpl
    from skalds.errors import SkaldsError
    from skalds.memory import MemoryStore
    from skalds.plugins import make_plugin_manager

    class DeadStore(MemoryStore):
        def ping(self) -> bool:
            return False

    class Plugin:
        @hookimpl
        def skalds_make_store(self, url):
            return DeadStore() if url.startswith("dead://") else None

    pm = make_plugin_manager(load_entry_points=False)
    pm.register(Plugin())
    node = Skald(SkaldConfig(load_entry_points=False, store_url="dead://x"), plugin_manager=pm)
    errors: list[Exception] = []

    def start() -> None:
        try:
            node.start()
        except SkaldsError as exc:
            errors.append(exc)

    starter = threading.Thread(target=start)
    starter.start()
    wait_for(lambda: "cannot reach the store" in caplog.text, timeout=5)
    node.stop()
    starter.join(timeout=5)
    assert not starter.is_alive()
    assert [str(e) for e in errors] == ["node stopped before its backends were reachable"]


def test_a_burst_of_assignments_starts_exactly_max_workers_tasks(skalds_node_factory, tmp_path):
    # Starts run on several lanes at once; the node still never exceeds max_workers.
    node = skalds_node_factory(workers=[ProbeWorker], max_workers=3)
    ids = [f"burst{i}" for i in range(12)]
    for task_id in ids:
        task = probe_task(task_id, node.skald_id, tmp_path / task_id, mainSeconds=30)
        node.store.create_task(task)
    for task_id in ids:
        assign(node.event_bus, task_id)
    wait_for(lambda: len(node.supervisor.tasks) == 3)
    time.sleep(0.5)
    running = [t for t in ids if status(node, t) is S.RUNNING]
    assert len(node.supervisor.tasks) == 3 and sorted(running) == sorted(node.supervisor.tasks)
    assert all(status(node, t) is S.CREATED for t in ids if t not in running)


def test_parts_of_the_process_can_follow_the_nodes_own_bus_subscription(skalds_backends, tmp_path):
    """``skalds up``'s controller follows the node's subscription: no group of its own."""
    node = Skald(
        SkaldConfig(skald_id="sharing", log_path=str(tmp_path), load_entry_points=False),
        backends=skalds_backends,
    )
    node.register_task_worker(ProbeWorker)
    with pytest.raises(SkaldsError, match="not started"):
        node.events  # noqa: B018 - the property raises
    node.share_events(["taskworker.update", "task.assign"])
    node.start()
    try:
        with pytest.raises(SkaldsError, match="before the node starts"):
            node.share_events(["task.created"])
        seen: list[tuple[str, str | None]] = []
        node.events.follow(["taskworker.update"], lambda m: seen.append((m.topic, m.key)))
        skalds_backends.event_bus.publish("taskworker.update", "t-1", '{"taskIds": ["t-1"]}')
        wait_for(lambda: seen == [("taskworker.update", "t-1")])
        with pytest.raises(ValueError, match=r"task\.created"):
            node.events.follow(["task.created"], lambda m: None)
    finally:
        node.stop()
