"""Nodes report the resources they offer (``SKALD_RESOURCES``); tasks asking for them go there."""

from __future__ import annotations

import time
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skalds_controller import ControllerSettings, create_app
from skalds_controller.nodes import NodeDirectory
from tests.helpers import wait_for
from tests.workers import ProbeWorker


@pytest.fixture
def client(skalds_backends) -> Iterator[TestClient]:
    app = create_app(ControllerSettings(load_entry_points=False), backends=skalds_backends)
    with TestClient(app) as test_client:
        yield test_client


def create(client: TestClient, task_id: str, tmp_path: Any, **fields: Any) -> None:
    attachments = {"traceFile": str(tmp_path / task_id), "mainSeconds": 30}
    body = {"id": task_id, "className": "ProbeWorker", "attachments": attachments, **fields}
    assert client.post("/api/tasks", json=body).status_code == 201, body


def task(client: TestClient, task_id: str) -> dict[str, Any]:
    body: dict[str, Any] = client.get(f"/api/tasks/{task_id}").json()
    return body


def running_on(client: TestClient, task_id: str) -> str:
    return wait_for(lambda: (t := task(client, task_id))["lifecycleStatus"] == "Running" and t)[
        "executor"
    ]


def test_a_task_asking_for_a_gpu_goes_to_the_node_that_has_one(
    client, skalds_node_factory, tmp_path
):
    plain = skalds_node_factory(workers=[ProbeWorker])
    gpu = skalds_node_factory(workers=[ProbeWorker], resources={"gpu": 1})
    plain_too = skalds_node_factory(workers=[ProbeWorker])

    for i in range(3):
        create(client, f"gpu{i}", tmp_path, resources={"gpu": 1})
        if i == 0:
            assert running_on(client, "gpu0") == gpu.skald_id

    # The one GPU is taken: the other GPU tasks wait, the nodes without one never get them
    time.sleep(0.5)
    for waiting in ("gpu1", "gpu2"):
        assert task(client, waiting)["lifecycleStatus"] == "Created"
        assert task(client, waiting)["executor"] is None
    create(client, "cpu", tmp_path)
    assert running_on(client, "cpu") in {plain.skald_id, plain_too.skald_id}

    # When the GPU is free again, the next GPU task takes it
    client.put("/api/tasks/gpu0/status", json={"lifecycleStatus": "Cancelled"})
    assert running_on(client, "gpu1") == gpu.skald_id
    assert task(client, "gpu2")["lifecycleStatus"] == "Created"


def test_a_node_reports_no_resources_unless_told(skalds_backends, skalds_node_factory):
    bare = skalds_node_factory(workers=[ProbeWorker])
    rich = skalds_node_factory(workers=[ProbeWorker], resources="gpu=2,ram_gb=64")
    nodes = {n.id: n for n in NodeDirectory(skalds_backends.cache).list()}
    assert nodes[bare.skald_id].info["resources"] == {}
    assert nodes[rich.skald_id].info["resources"] == {"gpu": 2.0, "ram_gb": 64.0}


def test_the_api_shows_what_each_node_offers(client, skalds_node_factory):
    gpu = skalds_node_factory(workers=[ProbeWorker], resources={"gpu": 2, "ram_gb": 64})
    plain = skalds_node_factory(workers=[ProbeWorker])
    assert client.get(f"/api/skalds/{gpu.skald_id}").json()["resources"] == {
        "gpu": 2,
        "ram_gb": 64,
    }
    assert client.get(f"/api/skalds/{plain.skald_id}").json()["resources"] == {}
