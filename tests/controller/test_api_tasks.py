"""The task endpoints of the REST API (embedded backends, a real node)."""

from __future__ import annotations

import pytest

from skalds.model.task import TaskLifecycleStatus
from tests.helpers import read_lines, wait_for
from tests.workers import OtherProbeWorker

S = TaskLifecycleStatus


def create(client, node, tmp_path, task_id="t1", **extra):
    body = {
        "id": task_id,
        "className": "ProbeWorker",
        "attachments": {"traceFile": str(tmp_path / task_id), **extra.pop("attachments", {})},
        "executor": node.skald_id,
        **extra,
    }
    return client.post("/api/tasks", json=body)


def test_create_runs_the_task_on_the_named_node(client, node, tmp_path):
    res = create(client, node, tmp_path, attachments={"mainSeconds": 30})
    assert res.status_code == 201, res.text
    assert res.json()["id"] == "t1" and res.json()["className"] == "ProbeWorker"
    wait_for(lambda: "main" in read_lines(tmp_path / "t1"))
    assert client.get("/api/tasks/t1").json()["lifecycleStatus"] == "Running"


def test_attachments_that_do_not_fit_the_schema_are_422_with_the_fields(client, node, tmp_path):
    res = create(client, node, tmp_path, attachments={"fixFrame": "many"})
    assert res.status_code == 422
    body = res.json()
    assert body["code"] == "VALIDATION_ERROR" and set(body) == {
        "error",
        "detail",
        "code",
        "timestamp",
    }
    assert {d["field"] for d in body["detail"]} == {"fixFrame"}


def test_a_class_of_a_node_that_just_came_up_is_accepted_at_once(
    client, node, skalds_node_factory, tmp_path
):
    assert create(client, node, tmp_path).status_code == 201  # the schemas are read now
    other = skalds_node_factory(workers=[OtherProbeWorker])
    body = {
        "id": "o1",
        "className": "OtherProbeWorker",
        "executor": other.skald_id,
        "attachments": {"traceFile": str(tmp_path / "o1")},
    }
    res = client.post("/api/tasks", json=body)
    assert res.status_code == 201, res.text  # not refused from the schemas read a moment ago


def test_an_unknown_class_is_422_listing_the_known_ones(client):
    res = client.post("/api/tasks", json={"className": "Nope", "attachments": {}})
    assert res.status_code == 422
    assert "ProbeWorker" in res.json()["error"] and res.json()["detail"]["known"] == ["ProbeWorker"]


def test_unknown_ids_are_404_task_not_found(client):
    for method, path in [
        ("get", "/api/tasks/none"),
        ("post", "/api/tasks/none/pause"),
        ("delete", "/api/tasks/none"),
    ]:
        res = getattr(client, method)(path)
        assert res.status_code == 404 and res.json()["code"] == "TASK_NOT_FOUND"


def test_update_attachments_reaches_the_running_worker(client, node, tmp_path):
    create(client, node, tmp_path, attachments={"mainSeconds": 30})
    wait_for(lambda: "main" in read_lines(tmp_path / "t1"))
    res = client.put(
        "/api/tasks/t1/attachments",
        json={
            "attachments": {
                "traceFile": str(tmp_path / "t1"),
                "label": "api",
                "fixFrame": 33,
                "mainSeconds": 30,
            }
        },
    )
    assert res.status_code == 200 and res.json()["updateSent"] is True
    wait_for(lambda: "update api 33" in read_lines(tmp_path / "t1"))


def test_pause_resume_and_cancel(client, node, tmp_path):
    create(client, node, tmp_path, attachments={"mainSeconds": 30})
    wait_for(lambda: "main" in read_lines(tmp_path / "t1"))
    assert client.post("/api/tasks/t1/pause").status_code == 200
    wait_for(lambda: client.get("/api/tasks/t1").json()["lifecycleStatus"] == "Paused")
    assert client.post("/api/tasks/t1/pause").json()["code"] == "INVALID_STATUS"
    assert client.post("/api/tasks/t1/resume").status_code == 200
    wait_for(lambda: client.get("/api/tasks/t1").json()["lifecycleStatus"] == "Running")
    res = client.put("/api/tasks/t1/status", json={"lifecycleStatus": "Cancelled"})
    assert res.status_code == 200 and res.json()["lifecycleStatus"] == "Cancelled"
    wait_for(lambda: read_lines(tmp_path / "t1")[-1] == "release")
    again = client.put("/api/tasks/t1/status", json={"lifecycleStatus": "Cancelled"})
    assert again.status_code == 409 and again.json()["code"] == "INVALID_STATUS"


def test_requeue_puts_a_finished_task_back_to_created(client, node, tmp_path):
    create(client, node, tmp_path)
    wait_for(lambda: client.get("/api/tasks/t1").json()["lifecycleStatus"] == "Finished")
    res = client.put("/api/tasks/t1/status", json={"lifecycleStatus": "Created"})
    assert res.status_code == 200
    assert res.json()["lifecycleStatus"] == "Created" and res.json()["executor"] is None


def test_list_filters_and_pages(client, node, tmp_path):
    for i in range(5):
        create(client, node, tmp_path, task_id=f"job-{i}", priority=i)
    res = client.get("/api/tasks", params={"id": "job-", "pageSize": 2, "page": 1})
    body = res.json()
    assert body["total"] == 5 and [t["id"] for t in body["items"]] == ["job-4", "job-3"]
    assert client.get("/api/tasks", params={"id": ".*"}).json()["total"] == 0  # literal prefix
    assert client.get("/api/tasks", params={"pageSize": 101}).status_code == 422


@pytest.mark.parametrize(
    "payload",
    [
        {"className": 5},
        {"className": "ProbeWorker", "priority": 11},
        {"className": "ProbeWorker", "id": "../../etc"},
        {"className": "ProbeWorker", "unknown": 1},
        [],
        "text",
    ],
)
def test_bad_bodies_are_422_not_500(client, payload):
    res = client.post("/api/tasks", json=payload)
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"


def test_oversized_bodies_are_413(client):
    res = client.post(
        "/api/tasks",
        content=b"{" + b" " * 2_000_000 + b"}",
        headers={"content-type": "application/json"},
    )
    assert res.status_code == 413 and res.json()["code"] == "PAYLOAD_TOO_LARGE"


def test_health_reports_each_backend(client):
    body = client.get("/api/system/health").json()
    assert body["status"] == "healthy"
    assert set(body["backends"]) == {"eventBus", "cache", "store"}


def test_a_token_protects_every_endpoint(skalds_backends, node):
    from fastapi.testclient import TestClient

    from skalds_controller import ControllerSettings, create_app

    app = create_app(
        ControllerSettings(api_token="s3cret", load_entry_points=False), backends=skalds_backends
    )
    with TestClient(app) as c:
        assert c.get("/api/tasks").status_code == 401
        assert c.get("/api/tasks", headers={"Authorization": "Bearer wrong"}).status_code == 401
        assert c.get("/api/tasks", headers={"Authorization": "Bearer s3cret"}).status_code == 200
        assert c.get("/api/system/health").status_code == 200  # probes stay open


def test_garbled_node_entries_in_the_cache_do_not_break_the_api(client, skalds_backends):
    from skalds.node import keys
    from skalds.ports import HashSet

    cache = skalds_backends.cache
    cache.apply([HashSet(keys.SKALDS_HASH, {"weird": "not-a-number"}, 30)])
    cache.set(keys.skald_info("weird"), '{"workers": "nope", "tasks": 5}', 30)
    assert client.get("/api/tasks/classnames").status_code == 200
    cache.set(keys.skald_info("weird"), "{not json", 30)
    res = client.get("/api/tasks/classnames")
    assert res.status_code == 200
    assert [c["className"] for c in res.json()["classNames"]] == ["ProbeWorker"]
