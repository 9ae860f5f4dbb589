"""System endpoints and metrics: status, dashboard summary, JSON figures, Prometheus text."""

from __future__ import annotations

from fastapi.testclient import TestClient
from prometheus_client.parser import text_string_to_metric_families

from skalds.model.task import Task, TaskLifecycleStatus
from skalds_controller import ControllerSettings, create_app
from skalds_controller.live_metrics import metrics_of
from tests.helpers import wait_for

S = TaskLifecycleStatus


def samples(text: str) -> dict[tuple[str, tuple], float]:
    """Prometheus text → {(sample name, sorted labels): value}."""
    out = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            out[(sample.name, tuple(sorted(sample.labels.items())))] = sample.value
    return out


def add_task(store, task_id, status=S.CREATED, **fields):
    """Plant a task no node runs (``executor`` names no node, so nothing dispatches it)."""
    task = store.create_task(Task(id=task_id, class_name="Planted", executor="parked", **fields))
    if status is not S.CREATED:
        store.update_task(task.id, {"lifecycle_status": status, **fields})
    return task


def test_status_says_what_runs_and_how_much(client, node, skalds_backends):
    add_task(skalds_backends.store, "a")
    add_task(skalds_backends.store, "b", S.FINISHED)
    body = client.get("/api/system/status").json()
    assert body["mode"] == "DISPATCHER" and body["version"]
    assert body["runs"] == {"api": True, "monitor": True, "liveEvents": True, "dispatcher": True}
    assert body["uptimeSeconds"] >= 0 and body["controllerId"].startswith("controller-")
    assert body["counts"]["tasks"] == 2 and body["counts"]["activeTasks"] == 1
    assert body["counts"]["nodesOnline"] == 1 and body["counts"]["nodesOffline"] == 0


def test_status_in_controller_mode_runs_the_api_only(skalds_backends, node):
    settings = ControllerSettings(mode="CONTROLLER", load_entry_points=False)
    with TestClient(create_app(settings, backends=skalds_backends)) as c:
        runs = c.get("/api/system/status").json()["runs"]
    assert runs == {"api": True, "monitor": False, "liveEvents": False, "dispatcher": False}


def test_dashboard_summary_counts_tasks_nodes_and_shows_failure_reasons(
    client, node, skalds_backends, skalds_node_factory, tmp_path
):
    store = skalds_backends.store
    add_task(store, "ok", S.FINISHED)
    add_task(store, "old-failure", S.FAILED, error_message="deadline passed")
    add_task(store, "new-failure", S.FAILED, error_message="worker heartbeat stalled")
    (tmp_path / "edge.yml").write_text("TaskWorkers: {}\n")
    gone = skalds_node_factory(
        skald_id="edge-1", skald_mode="edge", yaml_file=str(tmp_path / "edge.yml")
    )
    wait_for(lambda: client.get("/api/system/dashboard/summary").json()["nodes"]["online"] == 2)
    gone.stop()
    body = client.get("/api/system/dashboard/summary").json()
    assert body["tasks"]["total"] == 3
    assert body["tasks"]["byStatus"]["Failed"] == 2 and body["tasks"]["byStatus"]["Finished"] == 1
    assert body["nodes"]["byMode"] == {
        "node": {"online": 1, "offline": 0},
        "edge": {"online": 0, "offline": 1},
    }
    assert body["capacity"]["maxWorkers"] > 0
    reasons = [(f["id"], f["reason"]) for f in body["recentFailures"]]
    assert reasons == [
        ("new-failure", "worker heartbeat stalled"),
        ("old-failure", "deadline passed"),
    ]


def test_system_metrics_are_json_figures(client, node, skalds_backends):
    add_task(skalds_backends.store, "a", S.FINISHED)
    metrics = metrics_of(client.app)
    for ms in (5, 10, 40):
        metrics.observe_dispatch_latency(ms / 1000)
    body = client.get("/api/system/metrics").json()
    assert body["tasks"]["Finished"] == 1 and body["nodes"] == {"online": 1, "offline": 0}
    assert body["dispatch"]["count"] == 3 and body["dispatch"]["p50Ms"] == 10.0
    assert body["dispatch"]["p99Ms"] == 40.0


def test_prometheus_text_has_tasks_nodes_events_and_dispatch_latency(
    client, node, skalds_backends, tmp_path
):
    add_task(skalds_backends.store, "done", S.FINISHED)
    client.post(
        "/api/tasks",
        json={
            "id": "live",
            "className": "ProbeWorker",
            "attachments": {"traceFile": str(tmp_path / "live")},
            "executor": node.skald_id,
        },
    )
    metrics_of(client.app).observe_dispatch_latency(0.004)
    wait_for(lambda: client.get("/api/tasks/live").json()["lifecycleStatus"] == "Finished")
    res = client.get("/metrics")
    assert res.status_code == 200 and res.headers["content-type"].startswith("text/plain")
    got = samples(res.text)
    assert got[("skalds_tasks", (("status", "Finished"),))] == 2
    assert got[("skalds_nodes_online", ())] == 1
    assert got[("skalds_dispatch_latency_seconds_count", ())] == 1
    assert got[("skalds_dispatch_latency_seconds_bucket", (("le", "0.005"),))] == 1
    assert got[("skalds_dispatch_latency_seconds_bucket", (("le", "0.0025"),))] == 0
    wait_for(lambda: metrics_of(client.app).snapshot()["events"]["handledTotal"] >= 3)
    got = samples(client.get("/metrics").text)
    assert got[("skalds_controller_events_handled_total", (("source", "live"),))] >= 3
    assert got[("skalds_backend_up", (("backend", "store"),))] == 1


def test_a_malformed_bus_event_counts_as_failed(client, skalds_backends):
    skalds_backends.event_bus.publish("taskworker.update", "x", b"not json")
    # the live-event hub and the dispatcher each consume it, and each counts it once
    key = ("skalds_controller_events_failed_total", (("source", "live"),))
    wait_for(lambda: samples(client.get("/metrics").text).get(key) == 1)
    assert metrics_of(client.app).snapshot()["events"]["failedTotal"] >= 1


def test_each_app_has_its_own_registry(skalds_backends, node):
    apps = [
        create_app(ControllerSettings(load_entry_points=False), backends=skalds_backends)
        for _ in range(2)
    ]
    with TestClient(apps[0]) as first, TestClient(apps[1]) as second:
        metrics_of(first.app).observe_dispatch_latency(0.01)
        one = samples(first.get("/metrics").text)
        other = samples(second.get("/metrics").text)
    assert one[("skalds_dispatch_latency_seconds_count", ())] == 1
    assert other[("skalds_dispatch_latency_seconds_count", ())] == 0


def test_metrics_need_the_token_when_one_is_set(skalds_backends, node):
    settings = ControllerSettings(api_token="s3cret", load_entry_points=False)
    with TestClient(create_app(settings, backends=skalds_backends)) as c:
        assert c.get("/metrics").status_code == 401
        assert c.get("/api/system/status").status_code == 401
        ok = c.get("/metrics", headers={"Authorization": "Bearer s3cret"})
        assert ok.status_code == 200 and "skalds_tasks" in ok.text


def test_an_unreachable_store_is_503_not_500(client, skalds_backends, monkeypatch):
    from skalds.errors import BackendUnavailableError

    def down(*args, **kwargs):
        raise BackendUnavailableError("store at mongodb://db:27017 is unreachable")

    monkeypatch.setattr(skalds_backends.store, "count_tasks", down)
    monkeypatch.setattr(skalds_backends.store, "count_by_status", down)
    for path in ("/api/system/status", "/api/system/dashboard/summary", "/api/system/metrics"):
        res = client.get(path)
        assert res.status_code == 503 and res.json()["code"] == "SERVICE_UNAVAILABLE"
    got = samples(client.get("/metrics").text)
    assert got[("skalds_backend_up", (("backend", "store"),))] == 0
