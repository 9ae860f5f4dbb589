"""``skalds up``: the controller and a node with the example workers, in one process."""

from __future__ import annotations

import os
import re
import signal
import socket
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import httpx
import pytest

from skalds.cli import main
from tests.conftest import require_service
from tests.helpers import wait_for

API_LINE = re.compile(r"^\s*API\s+(http://\S+)/api/docs$", re.MULTILINE)
_SERVICE_ENV = ("KAFKA_", "REDIS_", "MONGO_", "SKALDS_", "SYSTEM_CONTROLLER_", "SKALD_", "DB_NAME")


class Up:
    """``skalds up`` in a child process; stdout and stderr are collected separately."""

    def __init__(self, cwd: Path, *args: str, **env: str) -> None:
        clean = {k: v for k, v in os.environ.items() if not k.startswith(_SERVICE_ENV)}
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "skalds", "up", "--port", "0", *args],
            cwd=cwd,
            env={**clean, "PYTHONUNBUFFERED": "1", **env},
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        self.out: list[str] = []
        self.err: list[str] = []
        for stream, sink in ((self.proc.stdout, self.out), (self.proc.stderr, self.err)):
            threading.Thread(target=self._read, args=(stream, sink), daemon=True).start()

    @staticmethod
    def _read(stream: Any, sink: list[str]) -> None:
        for line in stream:
            sink.append(line)

    def text(self) -> str:
        return "".join(self.out) + "".join(self.err)

    def url(self, timeout: float = 30) -> str:
        def found() -> str | None:
            match = API_LINE.search("".join(self.out))
            return match.group(1) if match else None

        try:
            return wait_for(found, timeout=timeout)
        except AssertionError:
            raise AssertionError(f"no API address printed:\n{self.text()}") from None

    def terminate(self) -> int:
        self.proc.send_signal(signal.SIGTERM)
        try:
            return self.proc.wait(30)
        finally:
            if self.proc.poll() is None:
                self.proc.kill()
                self.proc.wait()


def run_example_tasks(url: str, node_id: str) -> None:
    """A one-shot job (placed by the dispatcher) runs to Finished; a camera stream
    (sent to the node by name) keeps running."""
    with httpx.Client(base_url=url, timeout=10) as api:
        job = {
            "id": "job-1",
            "className": "MultiStageJobWorker",
            "attachments": {
                "jobId": "job-1",
                "subTasks": [{"name": "download", "duration": 0.2}, {"name": "process"}],
                "seed": 1,
            },
        }
        created = api.post("/api/tasks", json=job)
        assert created.status_code == 201, created.text
        camera = {
            "id": "cam-1",
            "className": "CameraStreamWorker",
            "executor": node_id,
            "isPersistent": True,
            "attachments": {"rtspUrl": "rtsp://camera/1", "fixFrame": 5},
        }
        assert api.post("/api/tasks", json=camera).status_code == 201

        def status(task_id: str) -> str:
            return str(api.get(f"/api/tasks/{task_id}").json()["lifecycleStatus"])

        wait_for(lambda: status("job-1") == "Finished", timeout=20)
        assert api.get("/api/tasks/job-1").json()["executor"] == node_id
        wait_for(lambda: status("cam-1") == "Running", timeout=20)


def test_up_runs_the_example_workers_and_a_sigterm_stops_everything_cleanly(tmp_path, capsys):
    up = Up(tmp_path, "--skald-id", "up-node")
    try:
        url = up.url()
        banner = "".join(up.out)
        assert "CameraStreamWorker, MultiStageJobWorker" in banner
        assert f"{url}/dashboard" in banner and "embedded" in banner
        assert httpx.get(f"{url}/api/docs", timeout=5).status_code == 200
        run_example_tasks(url, "up-node")
        cam_log = tmp_path / "logs" / "cam-1.log"
        wait_for(lambda: cam_log.exists() and "frames analysed" in cam_log.read_text())
        assert main(["task", "logs", "cam-1", "--tail", "5", "--url", url]) == 0
        assert "frames analysed" in capsys.readouterr().out
        assert main(["task", "logs", "job-1", "--follow", "--url", url]) == 0  # ends: job ended
        assert "all 2 stages done" in capsys.readouterr().out
    finally:
        code = up.terminate()
    assert code == 0, up.text()
    # the persistent worker was stopped through its release handler, not killed
    assert "closing stream rtsp://camera/1" in cam_log.read_text(), up.text()
    assert "skald up-node stopped" in up.text()


def test_up_refuses_a_non_loopback_address_without_a_token(monkeypatch, capsys):
    monkeypatch.delenv("SKALDS_API_TOKEN", raising=False)
    assert main(["up", "--host", "0.0.0.0", "--no-entry-points"]) == 2
    assert "without an API token" in capsys.readouterr().err


def test_up_service_options_must_be_host_and_port(capsys):
    assert main(["up", "--redis", "cache:port", "--no-entry-points"]) == 2
    assert "--redis 'cache:port': expected HOST:PORT" in capsys.readouterr().err


def _port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(0.5)
        return sock.connect_ex(("127.0.0.1", port)) == 0


@pytest.mark.slow
def test_up_runs_the_same_on_the_real_services(tmp_path):
    for name, port in (("Kafka", 9092), ("Redis", 6379)):
        require_service(name, _port_open(port), f"127.0.0.1:{port}")
    from tests.backends.mongo import require_mongo

    mongo_url = require_mongo()
    db_name = f"skalds_up_{uuid.uuid4().hex[:8]}"
    node_id = f"up-{uuid.uuid4().hex[:6]}"
    groups_before = _kafka_groups()
    up = Up(
        tmp_path,
        "--skald-id",
        node_id,
        "--kafka",
        "127.0.0.1:9092",
        "--redis",
        "127.0.0.1:6379",
        "--mongo",
        mongo_url,
        DB_NAME=db_name,
    )
    try:
        url = up.url(timeout=60)
        assert "kafka://127.0.0.1:9092" in "".join(up.out)
        health = httpx.get(f"{url}/api/system/health", timeout=10).json()
        assert health["status"] == "healthy", health
        run_example_tasks(url, node_id)
        # The node and the controller share one consumer group: each event once.
        assert _kafka_groups() - groups_before == {f"skalds-node-{node_id}"}
    finally:
        code = up.terminate()
        import pymongo

        client: pymongo.MongoClient[Any] = pymongo.MongoClient(mongo_url)
        client.drop_database(db_name)
        client.close()
    assert code == 0, up.text()
    assert "closing stream rtsp://camera/1" in (tmp_path / "logs" / "cam-1.log").read_text()


def _kafka_groups() -> set[str]:
    from confluent_kafka.admin import AdminClient

    admin = AdminClient({"bootstrap.servers": "127.0.0.1:9092"})
    listed = admin.list_consumer_groups(request_timeout=10).result(timeout=15)
    return {g.group_id for g in listed.valid}
