"""A worker that refuses new attachments says why, and the API passes the reason on."""

from __future__ import annotations

import json
from typing import Any

from skalds.model.event import TaskEvent
from skalds.ports.event_bus import BusMessage, Topic
from tests.helpers import read_lines, wait_for


def start(client: Any, tmp_path: Any, **attachments: Any) -> dict[str, Any]:
    values = {"traceFile": str(tmp_path / "t1"), "mainSeconds": 30, **attachments}
    body = {"id": "t1", "className": "ProbeWorker", "attachments": values}
    assert client.post("/api/tasks", json=body).status_code == 201
    wait_for(lambda: "main" in read_lines(tmp_path / "t1"))
    return values


def worker_updates(skalds_backends: Any) -> list[dict[str, Any]]:
    """The JSON of every UpdateApplied/UpdateFailed event the nodes publish from now on."""
    seen: list[dict[str, Any]] = []

    def handle(msg: BusMessage) -> None:
        event = json.loads(msg.value)
        if event.get("title", "").startswith("Update"):
            seen.append(event)

    skalds_backends.event_bus.subscribe(
        [Topic.TASKWORKER_UPDATE.value], handle, group="test-update-reason"
    )
    return seen


def test_the_workers_reason_for_refusing_an_update_is_in_the_answer(
    client, node, skalds_backends, tmp_path
):
    values = start(client, tmp_path, failIn="update")
    res = client.put("/api/tasks/t1/attachments", json={"attachments": {**values, "label": "x"}})
    body = res.json()
    assert res.status_code == 200
    assert body["updateSent"] is True and body["updateReceived"] is False
    assert body["updateError"] == (
        f"the worker's update handler failed on node {node.skald_id}: "
        "RuntimeError: boom in update; see GET /api/tasks/t1/logs"
    )


def test_update_events_carry_the_reason_only_when_refused(client, node, skalds_backends, tmp_path):
    seen = worker_updates(skalds_backends)
    values = start(client, tmp_path)
    # The probe applies this one, then refuses every later update
    fail_next = {**values, "label": "a", "failIn": "update"}
    ok = client.put("/api/tasks/t1/attachments", json={"attachments": fail_next})
    assert ok.json()["updateReceived"] is True and ok.json()["updateError"] is None
    client.put("/api/tasks/t1/attachments", json={"attachments": {**fail_next, "label": "b"}})

    applied, failed = wait_for(lambda: len(seen) == 2 and seen)
    assert applied["title"] == "UpdateApplied" and "message" not in applied  # the seed's JSON
    assert failed["title"] == "UpdateFailed"
    assert failed["message"] == "RuntimeError: boom in update"
    assert TaskEvent.model_validate(failed).message == "RuntimeError: boom in update"


def test_a_task_event_without_a_message_keeps_the_seed_format():
    event = TaskEvent(id="evt_001", title="Assign Task", task_ids=["task_123"])
    assert set(json.loads(event.model_dump_json())) == {
        "id",
        "title",
        "initiator",
        "recipient",
        "createDateTime",
        "updateDateTime",
        "taskIds",
    }
    long = TaskEvent(task_ids=["t"], message="x" * 5000)
    assert long.message is not None and len(long.message) == 2000
    assert TaskEvent.model_validate_json(long.model_dump_json()).message == long.message
