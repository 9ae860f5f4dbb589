"""A node on the real services survives restarts of Redis, FerretDB and Kafka.

Running workers keep running; what happened during an outage is recorded once the
service is back; the node reconciles with the store after reconnecting, so no
assignment or cancel is lost.
"""

from __future__ import annotations

import importlib.util
import os
import time
import uuid

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.node.skald import Skald
from skalds.ports import Topic
from tests.conftest import require_service
from tests.helpers import read_lines, wait_for
from tests.services_control import start_service, stop_service
from tests.test_e2e_services import _reachable
from tests.workers import ProbeWorker

S = TaskLifecycleStatus
MONGO_URL = os.environ.get("SKALDS_TEST_MONGO_URL", "mongodb://root:root@127.0.0.1:27017/")

pytestmark = pytest.mark.slow


@pytest.fixture
def node(tmp_path):
    for name, port in (("Kafka", 9092), ("Redis", 6379), ("FerretDB", 27017)):
        require_service(name, _reachable(port), f"127.0.0.1:{port}")
    for module in ("skalds_kafka.bus", "skalds_mongo.store", "skalds_redis.cache"):
        require_service(f"adapter {module}", importlib.util.find_spec(module) is not None, "here")
    cfg = SkaldConfig(
        skald_id=f"outage-{uuid.uuid4().hex[:6]}",
        event_bus_url="kafka://127.0.0.1:9092",
        cache_url="redis://127.0.0.1:6379/0",
        store_url=MONGO_URL,
        db_name=f"skalds_outage_{uuid.uuid4().hex[:6]}",
        reconcile_interval=3.0,
        cancel_grace_seconds=2.0,
        log_path=str(tmp_path / "logs"),
    )
    app = Skald(cfg)
    app.register_task_worker(ProbeWorker)
    app.start()
    yield app
    app.stop()


def submit(node, task_id: str, trace, **attachments) -> None:
    node.store.create_task(
        Task(
            id=task_id,
            class_name="ProbeWorker",
            executor=node.skald_id,
            attachments={"traceFile": str(trace), **attachments},
        )
    )
    node.event_bus.publish(
        Topic.TASK_ASSIGN, task_id, TaskEvent(task_ids=[task_id]).model_dump_json()
    )


def test_redis_restart_keeps_workers_running_and_heartbeats_resume(node, tmp_path):
    submit(node, "r1", tmp_path / "r1", mainSeconds=120)
    wait_for(lambda: "main" in read_lines(tmp_path / "r1"), timeout=30)
    pid = node.supervisor.tasks["r1"].pid
    stop_service("redis")
    try:
        time.sleep(2)
        assert node.supervisor.tasks["r1"].pid == pid
    finally:
        start_service("redis")
    wait_for(lambda: node.skald_id in node.cache.hash_get_all(keys.SKALDS_HASH), timeout=15)
    wait_for(lambda: node.cache.get(keys.task_heartbeat("r1")) is not None, timeout=15)
    assert node.supervisor.tasks["r1"].pid == pid


def test_a_task_that_ends_while_the_store_is_down_is_recorded_when_it_is_back(node, tmp_path):
    submit(node, "m1", tmp_path / "m1", mainSeconds=4)
    wait_for(lambda: "main" in read_lines(tmp_path / "m1"), timeout=30)
    stop_service("ferretdb")
    try:
        wait_for(lambda: "m1" not in node.supervisor.tasks, timeout=15)  # it finished meanwhile
        assert "m1" in node.supervisor.unsaved_final
    finally:
        start_service("ferretdb")
    wait_for(lambda: node.store.get_task("m1").lifecycle_status is S.FINISHED, timeout=20)
    time.sleep(4)  # a reconcile later: it was not mistaken for a task to restart
    assert sum(line.startswith("before") for line in read_lines(tmp_path / "m1")) == 1


def test_a_cancel_made_while_kafka_is_down_is_not_lost(node, tmp_path):
    submit(node, "k1", tmp_path / "k1", mainSeconds=120)
    wait_for(lambda: "main" in read_lines(tmp_path / "k1"), timeout=30)
    pid = node.supervisor.tasks["k1"].pid
    stop_service("kafka")
    try:
        time.sleep(1)
        assert node.supervisor.tasks["k1"].pid == pid  # workers keep running
        # a controller cancels through the store (the truth); the event cannot be sent
        node.store.update_task("k1", {"lifecycle_status": S.CANCELLED})
    finally:
        start_service("kafka")
    wait_for(lambda: "k1" not in node.supervisor.tasks, timeout=60)
    assert read_lines(tmp_path / "k1")[-1] == "release"
    # and the bus works again for new assignments
    submit(node, "k2", tmp_path / "k2")
    wait_for(lambda: node.store.get_task("k2").lifecycle_status is S.FINISHED, timeout=60)
