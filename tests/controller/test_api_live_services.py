"""Live events, heartbeats, update acknowledgements and metrics on the real services.

Kafka carries the events, Redis (a database of its own, emptied first) the node
registry and heartbeats, FerretDB (a fresh database) the tasks.
"""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from collections.abc import Iterator
from typing import Any

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.plugins import Backends, make_backends, make_plugin_manager
from tests.backends.kafka import KAFKA_ADDRESS, kafka_port_open
from tests.backends.mongo import require_mongo
from tests.backends.redis import connect_cache
from tests.conftest import require_service
from tests.controller.test_api_events import SseReader, is_status
from tests.helpers import read_lines, wait_for

pytestmark = pytest.mark.slow

REDIS_URL = os.environ.get("SKALDS_TEST_LIVE_REDIS_URL", "redis://127.0.0.1:6379/12")


@pytest.fixture
def skalds_backends() -> Iterator[Backends]:
    """Real backends for the controller and the node of a test (replaces the in-memory ones)."""
    pytest.importorskip("skalds_kafka")
    require_service("Kafka", kafka_port_open(), KAFKA_ADDRESS)
    import redis

    connect_cache("Redis", REDIS_URL).close()
    redis.Redis.from_url(REDIS_URL).flushdb()  # our own database: no other run's nodes
    mongo_url = require_mongo()
    db_name = f"skalds_live_{uuid.uuid4().hex[:8]}"
    config = SkaldConfig(
        event_bus_url=f"kafka://{KAFKA_ADDRESS}",
        cache_url=REDIS_URL,
        store_url=mongo_url,
        db_name=db_name,
    )
    backends = make_backends(make_plugin_manager(load_entry_points=True), config)
    yield backends
    backends.close()
    import pymongo

    client: pymongo.MongoClient[dict[str, Any]] = pymongo.MongoClient(mongo_url)
    with contextlib.suppress(pymongo.errors.PyMongoError):
        client.drop_database(db_name)
    client.close()


def start(client, node, tmp_path, task_id="t1"):
    attachments = {"traceFile": str(tmp_path / task_id), "mainSeconds": 30}
    body = {
        "id": task_id,
        "className": "ProbeWorker",
        "attachments": attachments,
        "executor": node.skald_id,
    }
    assert client.post("/api/tasks", json=body).status_code == 201
    wait_for(lambda: "main" in read_lines(tmp_path / task_id), timeout=30)
    return attachments


def test_a_cancel_reaches_the_task_stream_within_a_second(client, node, tmp_path):
    client.app.state.live_events.keepalive_seconds = 0.1
    start(client, node, tmp_path)
    with client.stream("GET", "/api/events/tasks", params={"taskId": "t1"}) as res:
        sse = SseReader(res)
        assert sse.next(10)["data"]["items"][0]["status"] == "Running"
        started = time.monotonic()
        client.put("/api/tasks/t1/status", json={"lifecycleStatus": "Cancelled"})
        sse.until(is_status("Cancelled"), timeout=1.0)
        assert time.monotonic() - started < 1.0


def test_the_worker_acknowledges_an_update_through_kafka(client, node, tmp_path):
    attachments = start(client, node, tmp_path)
    res = client.put(
        "/api/tasks/t1/attachments", json={"attachments": {**attachments, "label": "k"}}
    )
    body = res.json()
    assert body["updateSent"] is True and body["updateReceived"] is True, body


def test_heartbeat_skalds_and_metrics_read_redis_and_mongo(client, node, tmp_path):
    start(client, node, tmp_path)
    beat = wait_for(lambda: (b := client.get("/api/tasks/t1/heartbeat").json())["alive"] and b)
    assert beat["lifecycleStatus"] == "Running" and isinstance(beat["heartbeat"], int)
    assert [n["id"] for n in client.get("/api/skalds").json()["items"]] == [node.skald_id]
    text = client.get("/metrics").text
    assert 'skalds_tasks{status="Running"} 1.0' in text
    assert "skalds_nodes_online 1.0" in text
