"""``/api/system/dispatcher``: see the dispatcher's state and switch its strategy at runtime."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skalds.model.task import TaskLifecycleStatus
from skalds_controller import ControllerSettings, create_app
from tests.helpers import post_probe_task, wait_for
from tests.workers import ProbeWorker

S = TaskLifecycleStatus


@pytest.fixture
def api(skalds_backends) -> Iterator[Callable[..., TestClient]]:
    """``start(**settings)``: a running controller's API (lifespan entered) on shared backends."""
    clients: list[TestClient] = []

    def start(**settings: Any) -> TestClient:
        settings.setdefault("load_entry_points", False)
        client = TestClient(create_app(ControllerSettings(**settings), backends=skalds_backends))
        client.__enter__()
        clients.append(client)
        return client

    yield start
    for client in clients:
        client.__exit__(None, None, None)


def create(client: TestClient, task_id: str, trace: Any, **fields: Any) -> None:
    post_probe_task(client, task_id, trace, attachments={"mainSeconds": 30}, **fields)


def placed_on(client: TestClient, task_id: str) -> str:
    def executor() -> str | None:
        task = client.get(f"/api/tasks/{task_id}").json()
        running = task["lifecycleStatus"] in (S.ASSIGNING.value, S.RUNNING.value)
        return task["executor"] if running else None

    return wait_for(executor)


def test_the_dispatcher_state_shows_strategy_leadership_and_counts(api):
    client = api(dispatcher_strategy="RANDOM")
    wait_for(lambda: client.get("/api/system/dispatcher").json()["leading"])
    body = client.get("/api/system/dispatcher").json()
    assert body["strategy"] == "RANDOM"
    assert body["leaseHolder"] == body["controllerId"]
    assert isinstance(body["assigned"], int) and isinstance(body["retried"], int)


def test_a_strategy_switch_applies_to_the_next_tasks(api, skalds_node_factory, tmp_path):
    nodes = sorted(
        (skalds_node_factory(workers=[ProbeWorker]) for _ in range(2)), key=lambda n: n.skald_id
    )
    ids = [n.skald_id for n in nodes]
    client = api()
    for i in range(2):  # the first node is busier: LEAST_TASKS would avoid it
        create(client, f"pinned{i}", tmp_path / f"p{i}", executor=ids[0])
        placed_on(client, f"pinned{i}")

    res = client.put("/api/system/dispatcher/strategy", json={"strategy": "ROUND_ROBIN"})

    assert res.status_code == 200 and res.json()["strategy"] == "ROUND_ROBIN"
    assert client.get("/api/system/dispatcher").json()["strategy"] == "ROUND_ROBIN"
    assert client.get("/api/system/status").json()["dispatcherStrategy"] == "ROUND_ROBIN"
    placed = []
    for i in range(2):
        create(client, f"rr{i}", tmp_path / f"rr{i}")
        placed.append(placed_on(client, f"rr{i}"))
    assert placed == ids


def test_strategy_names_are_case_insensitive(api):
    client = api()
    res = client.put("/api/system/dispatcher/strategy", json={"strategy": " least_tasks "})
    assert res.status_code == 200 and res.json()["strategy"] == "LEAST_TASKS"


@pytest.mark.parametrize("body", [{"strategy": "FASTEST"}, {"strategy": 3}, {}])
def test_an_unknown_strategy_is_422_listing_the_valid_ones(api, body):
    client = api()
    res = client.put("/api/system/dispatcher/strategy", json=body)
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"
    detail = res.json()["detail"]
    assert detail[0]["field"] == "strategy"
    if body:
        for name in ("LEAST_TASKS", "ROUND_ROBIN", "RANDOM"):
            assert name in detail[0]["message"]
    assert client.get("/api/system/dispatcher").json()["strategy"] == "LEAST_TASKS"


@pytest.mark.parametrize("mode", ["CONTROLLER", "MONITOR"])
def test_a_controller_without_a_dispatcher_says_so_with_409(api, mode):
    client = api(mode=mode)
    for res in (
        client.get("/api/system/dispatcher"),
        client.put("/api/system/dispatcher/strategy", json={"strategy": "RANDOM"}),
    ):
        assert res.status_code == 409 and res.json()["code"] == "CONFLICT"
        assert f"runs no dispatcher (mode {mode})" in res.json()["error"]
        assert "SYSTEM_CONTROLLER_MODE=DISPATCHER" in res.json()["error"]


def test_the_endpoint_documents_that_a_switch_is_per_process(api):
    spec = api(mode="CONTROLLER").get("/api/openapi.json").json()
    put = spec["paths"]["/api/system/dispatcher/strategy"]["put"]
    assert "per controller process" in put["description"]
