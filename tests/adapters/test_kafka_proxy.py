"""The seed API ``skalds.proxy.kafka`` on the real broker (KafkaProxy, KafkaAdmin...)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest

pytest.importorskip("skalds_kafka")

from skalds.errors import PublishError
from skalds.model.event import TaskEvent
from skalds.ports import Topic
from tests.backends.kafka import (
    KafkaInbox,
    skalds_log_records,
    unique,
)
from tests.helpers import wait_for

SEEDS = Path(__file__).resolve().parents[1] / "seeds"
SEED_MONGO_URL = "mongodb://root:root@localhost:27017/"  # what the seed script uses


def test_the_seed_import_path_re_exports_the_adapter():
    import skalds.proxy.kafka as seed
    import skalds_kafka.proxy as adapter

    for name in ("KafkaConfig", "KafkaProxy", "KafkaTopic", "KafkaAdmin"):
        assert getattr(seed, name) is getattr(adapter, name)
    assert seed.__all__ == ["KafkaAdmin", "KafkaConfig", "KafkaProxy", "KafkaTopic"]
    assert adapter.__all__ == ["KafkaAdmin", "KafkaConfig", "KafkaProxy", "KafkaTopic"]


def test_kafka_topic_names_the_shared_seed_topics():
    from skalds.proxy.kafka import KafkaTopic

    assert KafkaTopic.TASK_ASSIGN == "task.assign"
    assert KafkaTopic.TASK_CANCEL == "task.cancel"
    assert KafkaTopic.TASK_UPDATE_ATTACHMENT == "task.update.attachment"
    assert KafkaTopic.TASKWORKER_UPDATE == "taskworker.update"
    assert KafkaTopic is Topic


def test_produce_delivers_the_seed_task_event_keyed_by_task_id(bus):
    from skalds.proxy.kafka import KafkaConfig, KafkaProxy, KafkaTopic

    task_id = unique("task")
    inbox = KafkaInbox()
    sub = bus.subscribe([KafkaTopic.TASK_ASSIGN], inbox, group=unique("group"))
    try:
        with KafkaProxy(KafkaConfig(host="127.0.0.1", port=9092)) as proxy:
            task_event = TaskEvent(task_ids=[task_id])
            proxy.produce(KafkaTopic.TASK_ASSIGN, key=task_id, value=task_event.model_dump_json())
        mine = wait_for(lambda: [m for m in inbox.messages if m.key == task_id])
        assert mine[0].topic == "task.assign"
        assert TaskEvent.model_validate_json(mine[0].value).task_ids == [task_id]
    finally:
        sub.close()


def test_produce_to_an_unreachable_broker_raises_publish_error_naming_it():
    from skalds.proxy.kafka import KafkaConfig, KafkaProxy

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proxy = KafkaProxy(KafkaConfig(host="127.0.0.1", port=port, delivery_timeout=1.0))
    started = time.monotonic()
    with skalds_log_records() as logs:
        with pytest.raises(PublishError, match=rf"127\.0\.0\.1:{port}.*Connection refused"):
            proxy.produce("task.assign", key="t", value="{}")
        assert time.monotonic() - started < 5
        proxy.close()
    assert logs.messages(logging.WARNING) == []  # one exception, no reconnect spam


def test_kafka_admin_creates_lists_and_deletes_topics(bus):
    from skalds.proxy.kafka import KafkaAdmin, KafkaConfig

    admin = KafkaAdmin(KafkaConfig(host="127.0.0.1", port=9092, topic_partitions=2))
    name = unique("test.admin")
    admin.create_topics([name])
    admin.create_topics([name])  # already there: fine
    assert name in admin.list_topics()
    assert admin.topic_partitions(name) == 2
    assert admin.ensure_topics() == []  # the bus created the seed topics already
    admin.delete_topics([name])
    wait_for(lambda: name not in admin.list_topics())
    assert admin.ping()


def test_the_seed_create_task_script_sends_its_assign_event(bus):
    """tests/seeds/node_assign/create_task_script.py, verbatim (needs the Mongo adapter)."""
    try:
        import skalds.proxy.mongo  # noqa: F401
    except ImportError as exc:
        pytest.skip(f"the seed script also needs MongoDB support: {exc}")
    inbox = KafkaInbox()
    sub = bus.subscribe(["task.assign"], inbox, group=f"seed-{uuid.uuid4().hex[:8]}")
    db_name = f"test_kafka_seed_{uuid.uuid4().hex[:8]}"  # the shared server: a database of our own
    try:
        result = subprocess.run(
            [sys.executable, "create_task_script.py"],
            cwd=SEEDS / "node_assign",
            env={**os.environ, "DB_NAME": db_name},
            capture_output=True,
            text=True,
            timeout=60,
        )
        output = result.stdout + result.stderr
        if result.returncode != 0 and "MongoDB" in output and "Kafka" not in output:
            last = output.strip().splitlines()[-1]
            pytest.skip(f"the seed script stopped at its MongoDB step, before Kafka: {last}")
        assert result.returncode == 0, output[-2000:]
        mine = wait_for(lambda: [m for m in inbox.messages if m.key == "task_123"])
        assert TaskEvent.model_validate_json(mine[0].value).task_ids == ["task_123"]
    finally:
        sub.close()
        with contextlib.suppress(Exception):
            import pymongo

            client = pymongo.MongoClient(SEED_MONGO_URL, serverSelectionTimeoutMS=2000)
            client.drop_database(db_name)
            client.close()
