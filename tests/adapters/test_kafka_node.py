"""A Skald node on the Kafka bus, driven the way the seed scripts drive it (KafkaProxy)."""

from __future__ import annotations

import pytest

pytest.importorskip("skalds_kafka")

from skalds.config.skald_config import SkaldConfig
from skalds.memory import MemoryCache, MemoryStore
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node.skald import Skald
from skalds.plugins import Backends
from skalds.proxy.kafka import KafkaConfig, KafkaProxy, KafkaTopic
from tests.backends.kafka import KafkaInbox, make_kafka_bus, unique
from tests.helpers import read_lines, wait_for
from tests.workers import ProbeWorker

S = TaskLifecycleStatus


def test_a_node_runs_and_cancels_a_task_sent_through_the_seed_proxy(tmp_path):
    bus = make_kafka_bus()
    backends = Backends(bus, MemoryCache(), MemoryStore())
    node = Skald(
        SkaldConfig(
            skald_id=unique("kafka-node"),
            skald_mode="node",
            load_entry_points=False,
            log_path=str(tmp_path / "logs"),
            cancel_grace_seconds=2.0,
        ),
        backends=backends,
    )
    node.register_task_worker(ProbeWorker)
    task_id, trace = unique("task"), tmp_path / "trace"
    updates = KafkaInbox()
    watcher = bus.subscribe([KafkaTopic.TASKWORKER_UPDATE], updates, group=unique("watcher"))
    node.start()  # subscribes as skalds-node-<id>, after forking its fork server
    proxy = KafkaProxy(KafkaConfig(host="127.0.0.1", port=9092))
    try:
        backends.store.create_task(
            Task(
                id=task_id,
                class_name="ProbeWorker",
                executor=node.skald_id,
                attachments={"traceFile": str(trace), "mainSeconds": 30},
            )
        )
        event = TaskEvent(task_ids=[task_id]).model_dump_json()
        proxy.produce(KafkaTopic.TASK_ASSIGN, key=task_id, value=event)
        wait_for(lambda: "main" in read_lines(trace), timeout=20)

        proxy.produce(KafkaTopic.TASK_CANCEL, key=task_id, value=event)
        wait_for(lambda: backends.store.get_task(task_id).lifecycle_status is S.CANCELLED)

        def statuses() -> list[str]:
            return [
                TaskEvent.model_validate_json(m.value).title or ""
                for m in updates.messages
                if m.key == task_id
            ]

        wait_for(lambda: "Cancelled" in statuses())
        assert "Running" in statuses()
    finally:
        proxy.close()
        node.stop()
        watcher.close()
        backends.close()
