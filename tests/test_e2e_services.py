"""The seed examples end to end on the real services (Kafka, Redis, FerretDB on loopback).

The seed scripts run unmodified, with their own connection strings
(``mongodb://root:root@localhost:27017/``): ``scripts/services`` starts FerretDB with
``SKALDS_FERRETDB_AUTH=root:root`` so that URL authenticates.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from tests.conftest import require_service
from tests.helpers import wait_for

SEEDS = Path(__file__).parent / "seeds"
ROOT = Path(__file__).resolve().parents[1]
MONGO_URL = os.environ.get("SKALDS_TEST_MONGO_URL", "mongodb://root:root@127.0.0.1:27017/")

pytestmark = pytest.mark.slow


def _reachable(port: int) -> bool:
    import socket

    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.fixture(scope="module")
def services() -> None:
    for name, port in (("Kafka", 9092), ("Redis", 6379), ("FerretDB", 27017)):
        require_service(name, _reachable(port), f"127.0.0.1:{port}")
    import importlib.util

    for module in ("skalds_kafka.bus", "skalds_mongo.store", "skalds_redis.cache"):
        found = importlib.util.find_spec(module) is not None
        require_service(f"adapter {module}", found, "this environment")


class Proc:
    """A child process whose combined output is collected line by line."""

    def __init__(self, args: list[str], cwd: Path) -> None:
        env = {**os.environ, "PYTHONUNBUFFERED": "1"}
        self.proc = subprocess.Popen(
            args, cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, env=env
        )
        self.lines: list[str] = []
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.lines.append(line.rstrip("\n"))

    def saw(self, text: str) -> bool:
        return any(text in line for line in list(self.lines))

    def wait_for(self, text: str, timeout: float = 30) -> None:
        try:
            wait_for(lambda: self.saw(text), timeout=timeout, interval=0.05)
        except AssertionError:
            tail = "\n".join(self.lines[-40:])
            raise AssertionError(f"never saw {text!r}; output:\n{tail}") from None

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            return self.proc.wait()


def run_script(name: str, cwd: Path) -> str:
    result = subprocess.run(
        [sys.executable, name], cwd=cwd, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stdout + result.stderr
    return result.stdout + result.stderr


def forget_task(task_id: str) -> None:
    """Remove a fixed-id task left by an earlier run (the seed ids are constants)."""
    import pymongo

    client: pymongo.MongoClient = pymongo.MongoClient(MONGO_URL, serverSelectionTimeoutMS=5000)
    try:
        client["skalds"]["tasks"].delete_many({"id": task_id})
    finally:
        client.close()


def test_seed_node_examples_assign_update_and_cancel(services):
    cwd = SEEDS / "node_update"
    forget_task("task_123")
    node = Proc([sys.executable, "skald_node.py"], cwd)
    try:
        node.wait_for("skald skald_123 starting in node mode")
        run_script("create_task_script.py", cwd)
        node.wait_for("RTSP URL: rtsp://example.com/stream, Fix Frame: 10")
        run_script("update_task_script.py", cwd)
        node.wait_for(
            "Updating MyWorker with RTSP URL: rtsp://example.com/new_stream, Fix Frame: 60"
        )
        node.wait_for("RTSP URL: rtsp://example.com/new_stream, Fix Frame: 60")

        from skalds.model.event import TaskEvent
        from skalds.proxy.kafka import KafkaConfig, KafkaProxy, KafkaTopic

        proxy = KafkaProxy(KafkaConfig(host="127.0.0.1", port=9092))
        proxy.produce(
            KafkaTopic.TASK_CANCEL,
            key="task_123",
            value=TaskEvent(task_ids=["task_123"]).model_dump_json(),
        )
        node.wait_for("task task_123 cancelled")
    finally:
        code = node.stop()
    assert code == 0, "\n".join(node.lines[-20:])

    from skalds.proxy.mongo import MongoConfig, MongoProxy
    from skalds.repository.repository import TaskRepository

    task = TaskRepository(MongoProxy(mongo_config=MongoConfig(host=MONGO_URL))).get_task_by_task_id(
        "task_123"
    )
    assert task is not None and task.lifecycle_status.value == "Cancelled"


def test_seed_create_script_before_the_node_starts_is_not_lost(services):
    """The node reconciles from the store at start: an assignment made while it was down runs."""
    cwd = SEEDS / "node_assign"
    forget_task("task_123")
    run_script("create_task_script.py", cwd)
    node = Proc([sys.executable, "skald_node.py"], cwd)
    try:
        node.wait_for("RTSP URL: rtsp://example.com/stream, Fix Frame: 10", timeout=45)
    finally:
        node.stop()
    forget_task("task_123")


def test_intro_edge_example_runs_on_real_services(services, tmp_path):
    cwd = SEEDS / "intro_edge"
    app = Proc([sys.executable, "app.py"], cwd)
    try:
        app.wait_for("Starting MyWorker with RTSP URL: rtsp://192.168.1.1/camera1")
        app.wait_for("RTSP URL: rtsp://192.168.1.1/camera1, Fix Frame: 10")
        app.wait_for("job-12345: Download Data (try 1)")
    finally:
        code = app.stop()
    assert code == 0, "\n".join(app.lines[-20:])
    time.sleep(0.1)
