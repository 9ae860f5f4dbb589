"""Task heartbeat, logs and update acknowledgements through the REST API."""

from __future__ import annotations

import json
import socket
import time

import pytest

from skalds.model.task import Task
from skalds.ports.cache import HashSet
from tests.helpers import read_lines, wait_for
from tests.workers import ProbeWorker

PARKED = "parked"
"""Executor of tasks planted in the store: no such node, so the dispatcher leaves them be."""


@pytest.fixture
def logging_node(skalds_node_factory, tmp_path):
    """A node that writes each task's log to its own file and reports it quickly."""
    return skalds_node_factory(
        workers=[ProbeWorker],
        skald_id="logging-node",
        log_split_with_worker_id=True,
        log_path=str(tmp_path / "task-logs"),
        heartbeat_interval=0.2,
    )


def start(client, node, tmp_path, task_id="t1", **attachments):
    body = {
        "id": task_id,
        "className": "ProbeWorker",
        "attachments": {"traceFile": str(tmp_path / task_id), "mainSeconds": 30, **attachments},
        "executor": node.skald_id,
    }
    res = client.post("/api/tasks", json=body)
    assert res.status_code == 201, res.text
    wait_for(lambda: "main" in read_lines(tmp_path / task_id))
    return body["attachments"]


# -- heartbeat --------------------------------------------------------------------------


def test_heartbeat_of_a_running_task_is_alive_with_a_history(client, logging_node, tmp_path):
    start(client, logging_node, tmp_path)
    body = wait_for(lambda: (b := client.get("/api/tasks/t1/heartbeat").json())["alive"] and b)
    assert isinstance(body["heartbeat"], int) and 0 <= body["heartbeat"] < 200
    assert body["lifecycleStatus"] == "Running" and body["executor"] == "logging-node"
    assert body["hasError"] is False
    history = wait_for(
        lambda: len(h := client.get("/api/tasks/t1/heartbeat").json()["history"]) >= 3 and h
    )
    times = [h["t"] for h in history]
    assert times == sorted(times) and all(isinstance(h["value"], int) for h in history)


def test_heartbeat_of_a_task_that_never_ran_is_not_alive(client, skalds_backends):
    skalds_backends.store.create_task(Task(id="idle", class_name="ProbeWorker", executor=PARKED))
    body = client.get("/api/tasks/idle/heartbeat").json()
    assert body == {
        "taskId": "idle",
        "heartbeat": None,
        "alive": False,
        "lifecycleStatus": "Created",
        "reportedStatus": None,
        "executor": PARKED,
        "hasError": False,
        "error": None,
        "history": [],
    }


def test_heartbeat_of_an_unknown_task_is_404(client):
    res = client.get("/api/tasks/nope/heartbeat")
    assert res.status_code == 404 and res.json()["code"] == "TASK_NOT_FOUND"


# -- logs -------------------------------------------------------------------------------


def wait_for_log(client, task_id="t1"):
    """The node publishes the log path with its next report after the task started."""
    wait_for(lambda: client.get(f"/api/tasks/{task_id}/logs").status_code == 200)


def test_logs_tail_the_file_the_node_published(client, logging_node, tmp_path):
    attachments = start(client, logging_node, tmp_path)
    wait_for_log(client)
    for label in ("one", "two", "three"):
        client.put(
            "/api/tasks/t1/attachments", json={"attachments": {**attachments, "label": label}}
        )
    res = client.get("/api/tasks/t1/logs", params={"tail": 2})
    assert res.status_code == 200, res.text
    body = res.json()
    assert body["node"] == "logging-node" and body["file"].endswith("t1.log")
    assert len(body["lines"]) == 2
    assert "label=two" in body["lines"][0] and "label=three" in body["lines"][1]


def test_logs_follow_streams_new_lines_and_ends_with_the_task(client, logging_node, tmp_path):
    attachments = start(client, logging_node, tmp_path, mainSeconds=2.5)
    wait_for_log(client)
    started = time.monotonic()
    with client.stream("GET", "/api/tasks/t1/logs", params={"follow": "true", "tail": 0}) as res:
        assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
        client.put(
            "/api/tasks/t1/attachments", json={"attachments": {**attachments, "label": "live"}}
        )
        lines = []
        for line in res.iter_lines():
            lines.append(line)
        # the loop ends by itself: the task finished and its log went quiet
    assert any("label=live" in line for line in lines)
    assert time.monotonic() - started < 8


def test_logs_are_404_when_nodes_publish_no_log_file(client, node, tmp_path):
    start(client, node, tmp_path)
    res = client.get("/api/tasks/t1/logs")
    assert res.status_code == 404 and res.json()["code"] == "LOG_NOT_FOUND"
    assert "LOG_SPLIT_WITH_WORKER_ID" in res.json()["error"]


def test_logs_of_an_unknown_task_are_404_task_not_found(client):
    res = client.get("/api/tasks/ghost/logs")
    assert res.status_code == 404 and res.json()["code"] == "TASK_NOT_FOUND"


def fake_node(cache, log_file, hostname=None):
    info = {
        "id": "fake",
        "mode": "node",
        "hostname": hostname or socket.gethostname(),
        "tasks": [{"id": "victim", "className": "ProbeWorker", "logFile": log_file}],
    }
    cache.apply([HashSet("skalds:hash", {"fake": str(int(time.time() * 1000))}, ttl=30)])
    cache.set("skalds:fake:info", json.dumps(info), ttl=30)


@pytest.mark.parametrize(
    "log_file",
    ["/etc/passwd", "/tmp/../etc/victim.log", "relative/victim.log", "/etc/hostname"],
)
def test_logs_never_read_a_path_that_is_not_a_task_log(client, skalds_backends, log_file, tmp_path):
    skalds_backends.store.create_task(Task(id="victim", class_name="ProbeWorker"))
    fake_node(skalds_backends.cache, log_file)
    res = client.get("/api/tasks/victim/logs")
    assert res.status_code == 404 and res.json()["code"] == "LOG_NOT_FOUND"
    assert "root:" not in res.text


def test_logs_never_follow_a_symlink(client, skalds_backends, tmp_path):
    secret = tmp_path / "secret.txt"
    secret.write_text("password=hunter2\n")
    link = tmp_path / "victim.log"
    link.symlink_to(secret)
    skalds_backends.store.create_task(Task(id="victim", class_name="ProbeWorker"))
    fake_node(skalds_backends.cache, str(link))
    res = client.get("/api/tasks/victim/logs")
    assert res.status_code == 404 and "hunter2" not in res.text


def test_logs_on_another_machine_are_404_saying_where(client, skalds_backends, tmp_path):
    (tmp_path / "victim.log").write_text("hello\n")
    skalds_backends.store.create_task(Task(id="victim", class_name="ProbeWorker"))
    fake_node(skalds_backends.cache, str(tmp_path / "victim.log"), hostname="far-away")
    res = client.get("/api/tasks/victim/logs")
    assert res.status_code == 404 and "far-away" in res.json()["error"]


@pytest.mark.parametrize("tail", [-1, 10_001, "many"])
def test_a_bad_tail_is_422(client, tail):
    res = client.get("/api/tasks/t1/logs", params={"tail": tail})
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"


# -- attachment update acknowledgements ---------------------------------------------------


def test_an_update_the_worker_applied_is_received(client, node, tmp_path):
    attachments = start(client, node, tmp_path)
    res = client.put(
        "/api/tasks/t1/attachments", json={"attachments": {**attachments, "fixFrame": 7}}
    )
    assert res.status_code == 200
    body = res.json()
    assert body["updateSent"] is True and body["updateReceived"] is True
    assert body["updateError"] is None and body["task"]["attachments"]["fixFrame"] == 7


def test_an_update_the_worker_rejected_says_so(client, node, tmp_path):
    attachments = start(client, node, tmp_path, failIn="update")
    res = client.put(
        "/api/tasks/t1/attachments", json={"attachments": {**attachments, "label": "x"}}
    )
    body = res.json()
    assert body["updateSent"] is True and body["updateReceived"] is False
    assert "update handler failed" in body["updateError"]


def test_an_update_of_a_task_not_running_is_stored_only(client, node, skalds_backends):
    skalds_backends.store.create_task(Task(id="later", class_name="ProbeWorker", executor=PARKED))
    res = client.put("/api/tasks/later/attachments", json={"attachments": {"traceFile": "x"}})
    body = res.json()
    assert res.status_code == 200 and body["updateSent"] is False
    assert body["updateReceived"] is False and body["updateError"] is None
    assert client.get("/api/tasks/later").json()["attachments"] == {"traceFile": "x"}


@pytest.mark.parametrize(
    "payload",
    [{"attachments": {"fixFrame": "many", "traceFile": "x"}}, {"attachments": []}, {}, []],
)
def test_bad_attachment_updates_are_422(client, node, skalds_backends, payload):
    skalds_backends.store.create_task(Task(id="later", class_name="ProbeWorker", executor=PARKED))
    res = client.put("/api/tasks/later/attachments", json=payload)
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    ("payload", "code", "status"),
    [
        ({"lifecycleStatus": "Running"}, "INVALID_STATUS", 400),
        ({"lifecycleStatus": "Finished"}, "INVALID_STATUS", 400),
        ({"lifecycleStatus": "Sleeping"}, "VALIDATION_ERROR", 422),
        ({"lifecycleStatus": 3}, "VALIDATION_ERROR", 422),
    ],
)
def test_invalid_status_changes_are_rejected(client, skalds_backends, payload, code, status):
    skalds_backends.store.create_task(Task(id="later", class_name="ProbeWorker", executor=PARKED))
    res = client.put("/api/tasks/later/status", json=payload)
    assert res.status_code == status and res.json()["code"] == code


def test_resuming_a_task_that_is_not_paused_is_409(client, skalds_backends):
    skalds_backends.store.create_task(Task(id="later", class_name="ProbeWorker", executor=PARKED))
    res = client.post("/api/tasks/later/resume")
    assert res.status_code == 409 and res.json()["code"] == "INVALID_STATUS"
