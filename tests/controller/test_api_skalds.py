"""``/api/skalds``: nodes as they report themselves, online or gone."""

from __future__ import annotations

import pytest

from skalds.ports.cache import HashSet
from tests.helpers import read_lines, wait_for
from tests.workers import OtherProbeWorker, ProbeWorker


@pytest.fixture
def edge(skalds_node_factory, tmp_path):
    (tmp_path / "edge.yml").write_text("TaskWorkers: {}\n")
    return skalds_node_factory(
        workers=[OtherProbeWorker],
        skald_id="edge-1",
        skald_mode="edge",
        yaml_file=str(tmp_path / "edge.yml"),
    )


def ids(res):
    assert res.status_code == 200, res.text
    return [n["id"] for n in res.json()["items"]]


def test_list_filters_by_type_and_status(client, node, edge):
    assert ids(client.get("/api/skalds")) == sorted([node.skald_id, "edge-1"])
    assert ids(client.get("/api/skalds", params={"type": "edge"})) == ["edge-1"]
    assert ids(client.get("/api/skalds", params={"type": "node"})) == [node.skald_id]
    assert ids(client.get("/api/skalds", params={"status": "offline"})) == []
    edge.stop()
    assert ids(client.get("/api/skalds", params={"status": "offline"})) == ["edge-1"]
    assert ids(client.get("/api/skalds", params={"status": "online"})) == [node.skald_id]


@pytest.mark.parametrize("params", [{"type": "cloud"}, {"status": "up"}, {"type": 1}])
def test_unknown_filter_values_are_422(client, params):
    res = client.get("/api/skalds", params=params)
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"


def test_one_skald_shows_its_workers_and_their_schemas(client, node):
    body = client.get(f"/api/skalds/{node.skald_id}").json()
    assert body["status"] == "online" and body["mode"] == "node"
    assert body["classNames"] == ["ProbeWorker"]
    (worker,) = body["workers"]
    assert worker["className"] == "ProbeWorker" and "traceFile" in worker["schema"]["properties"]
    assert body["hostname"] and body["pid"] > 0


def test_skald_tasks_join_the_store_with_what_the_node_reports(client, node, tmp_path):
    client.post(
        "/api/tasks",
        json={
            "id": "t1",
            "className": "ProbeWorker",
            "attachments": {"traceFile": str(tmp_path / "t1"), "mainSeconds": 30},
            "executor": node.skald_id,
        },
    )
    wait_for(lambda: "main" in read_lines(tmp_path / "t1"))

    def reported():
        items = client.get(f"/api/skalds/{node.skald_id}/tasks").json()["items"]
        return items and items[0]["reportedStatus"] == "Running" and items

    (row,) = wait_for(reported, timeout=5)
    assert row["id"] == "t1" and row["lifecycleStatus"] == "Running" and row["pid"] > 0


def test_skald_status_has_its_heartbeat(client, node):
    body = client.get(f"/api/skalds/{node.skald_id}/status").json()
    assert body["status"] == "online" and body["heartbeatAgeMs"] < 5000
    assert isinstance(body["heartbeat"], int) and body["runningTasks"] == 0


def test_a_stopped_skald_is_offline_not_forgotten(client, skalds_node_factory):
    other = skalds_node_factory(workers=[ProbeWorker], skald_id="leaving")
    assert client.get("/api/skalds/leaving/status").json()["status"] == "online"
    other.stop()
    assert client.get("/api/skalds/leaving/status").json()["status"] == "offline"
    assert client.get("/api/skalds/leaving").status_code == 200


def test_statistics_add_up_the_nodes(client, node, edge):
    assert client.get("/api/skalds/summary/statistics").json()["online"] == 2
    edge.stop()
    body = client.get("/api/skalds/summary/statistics").json()
    assert body["total"] == 2 and body["online"] == 1 and body["offline"] == 1
    assert body["byMode"]["edge"] == {"online": 0, "offline": 1}
    assert body["classNames"] == {"ProbeWorker": 1}  # offline nodes run nothing
    assert body["capacity"]["free"] == body["capacity"]["maxWorkers"] > 0


@pytest.mark.parametrize("suffix", ["", "/tasks", "/status"])
def test_unknown_skalds_are_404_skald_not_found(client, suffix):
    res = client.get(f"/api/skalds/nobody{suffix}")
    assert res.status_code == 404 and res.json()["code"] == "SKALD_NOT_FOUND"
    assert set(res.json()) == {"error", "detail", "code", "timestamp"}


def test_an_overlong_skald_id_is_422(client):
    res = client.get("/api/skalds/" + "x" * 300)
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"


@pytest.mark.parametrize(
    "info",
    [
        '{"tasks": [1, {"no": "id"}], "workers": "x", "capacity": 3}',
        '{"tasks": [',
        "[]",
    ],
)
def test_a_garbled_node_entry_does_not_break_the_views(client, node, skalds_backends, info):
    skalds_backends.cache.apply([HashSet("skalds:hash", {"garbled": "not-a-time"})])
    skalds_backends.cache.set("skalds:garbled:info", info)
    assert "garbled" in ids(client.get("/api/skalds"))
    assert client.get("/api/skalds/garbled/tasks").json()["items"] == []
    assert client.get("/api/skalds/summary/statistics").status_code == 200
    assert client.get("/api/system/dashboard/summary").status_code == 200
