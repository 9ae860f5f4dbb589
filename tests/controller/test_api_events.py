"""Server-Sent Events: pushed when tasks, nodes or totals change; cleaned up on disconnect."""

from __future__ import annotations

import asyncio
import json
import threading
import time

import httpx
import pytest
import uvicorn
from fastapi.testclient import TestClient

from skalds_controller import ControllerSettings, create_app
from skalds_controller.live_stream import LiveClient, LiveEvent
from tests.helpers import read_lines, wait_for
from tests.workers import ProbeWorker


class SseReader:
    """Reads ``event:``/``data:`` blocks from a streaming response, with a deadline."""

    def __init__(self, response: httpx.Response) -> None:
        self.lines = response.iter_lines()
        self.comments = 0

    def next(self, timeout: float = 5.0) -> dict | None:
        """The next event (keep-alive comments are counted, not returned)."""
        deadline = time.monotonic() + timeout
        event: dict = {}
        for line in self.lines:
            if line.startswith(":"):
                self.comments += 1
            elif line.startswith("event: "):
                event["event"] = line[7:]
            elif line.startswith("data: "):
                event["data"] = json.loads(line[6:])
            elif line == "" and "event" in event:
                return event
            if time.monotonic() > deadline:
                return None
        return None

    def until(self, predicate, timeout: float = 5.0) -> dict:
        """Skip events until one matches; fail after ``timeout`` seconds."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            event = self.next(deadline - time.monotonic())
            if event is not None and predicate(event):
                return event
        raise AssertionError(f"no matching event within {timeout} s")


@pytest.fixture
def hub(client):
    hub = client.app.state.live_events
    hub.keepalive_seconds = 0.1  # idle streams tick often, so reads never block long
    return hub


def create_running(client, node, tmp_path, task_id="t1"):
    res = client.post(
        "/api/tasks",
        json={
            "id": task_id,
            "className": "ProbeWorker",
            "attachments": {"traceFile": str(tmp_path / task_id), "mainSeconds": 30},
            "executor": node.skald_id,
        },
    )
    assert res.status_code == 201, res.text
    wait_for(lambda: "main" in read_lines(tmp_path / task_id))


def is_status(status):
    return lambda e: e["event"] == "task.status" and e["data"]["status"] == status


def test_a_cancel_reaches_the_task_stream_within_a_second(client, hub, node, tmp_path):
    create_running(client, node, tmp_path)
    with client.stream("GET", "/api/events/tasks", params={"taskId": "t1"}) as res:
        assert res.headers["content-type"].startswith("text/event-stream")
        sse = SseReader(res)
        first = sse.next()
        assert first["event"] == "snapshot"
        assert first["data"]["items"] == [
            {"taskId": "t1", "status": "Running", "node": node.skald_id}
        ]
        started = time.monotonic()
        client.put("/api/tasks/t1/status", json={"lifecycleStatus": "Cancelled"})
        event = sse.until(is_status("Cancelled"), timeout=1.0)
        assert time.monotonic() - started < 1.0
        assert event["data"]["taskId"] == "t1"


def test_a_status_reported_by_the_node_reaches_the_stream_within_a_second(
    client, hub, node, tmp_path
):
    create_running(client, node, tmp_path)
    with client.stream("GET", "/api/events/tasks") as res:
        sse = SseReader(res)
        assert sse.next()["event"] == "snapshot"
        started = time.monotonic()
        assert client.post("/api/tasks/t1/pause").status_code == 200
        event = sse.until(is_status("Paused"), timeout=1.0)
        assert time.monotonic() - started < 1.0 and event["data"]["node"] == node.skald_id


def test_the_task_filter_leaves_other_tasks_out(client, hub, node, tmp_path):
    with client.stream("GET", "/api/events/tasks", params={"taskId": "wanted"}) as res:
        sse = SseReader(res)
        assert sse.next()["data"]["items"] == []  # not created yet: nothing to show
        for task_id in ("other", "wanted"):
            client.post(
                "/api/tasks",
                json={
                    "id": task_id,
                    "className": "ProbeWorker",
                    "attachments": {"traceFile": str(tmp_path / task_id)},
                    "executor": node.skald_id,
                },
            )
        seen = [sse.until(lambda e: e["event"] == "task.status")["data"]["taskId"]]
        seen += [e["data"]["taskId"] for e in iter(lambda: sse.next(0.5), None)]
        assert set(seen) == {"wanted"}


def test_an_idle_stream_carries_keep_alive_comments(client, hub):
    with client.stream("GET", "/api/events/status") as res:
        sse = SseReader(res)
        assert sse.next()["event"] == "status"
        assert sse.next(0.5) is None
        assert sse.comments >= 2


def test_nodes_joining_and_leaving_reach_the_skald_stream(client, hub, node, skalds_node_factory):
    with client.stream("GET", "/api/events/skalds") as res:
        sse = SseReader(res)
        snapshot = sse.next()
        assert [n["id"] for n in snapshot["data"]["items"]] == [node.skald_id]
        other = skalds_node_factory(workers=[ProbeWorker], skald_id="joiner")
        joined = sse.until(lambda e: e["event"] == "skald.joined", timeout=3)
        assert joined["data"]["id"] == "joiner" and joined["data"]["status"] == "online"
        other.stop()
        left = sse.until(lambda e: e["event"] == "skald.left", timeout=3)
        assert left["data"]["id"] == "joiner" and left["data"]["status"] == "offline"


def test_the_status_stream_sends_new_totals_when_a_task_is_created(client, hub, node, tmp_path):
    with client.stream("GET", "/api/events/status") as res:
        sse = SseReader(res)
        first = sse.next()
        assert first["data"]["tasks"]["Created"] == 0
        assert first["data"]["nodes"]["online"] == 1
        client.post(
            "/api/tasks",
            json={
                "id": "s1",
                "className": "ProbeWorker",
                "attachments": {"traceFile": str(tmp_path / "s1")},
            },
        )
        # the dispatcher moves it on at once: any status counts, the total must change
        event = sse.until(lambda e: sum(e["data"]["tasks"].values()) == 1, timeout=1.0)
        assert event["event"] == "status"


def test_a_closed_connection_is_forgotten(client, hub):
    with client.stream("GET", "/api/events/tasks") as res:
        sse = SseReader(res)  # kept: dropping the line iterator closes the response
        assert sse.next()["event"] == "snapshot"
        assert hub.client_count == 1
    wait_for(lambda: hub.client_count == 0, timeout=3)


def test_a_client_that_goes_away_is_forgotten_by_a_real_server(skalds_backends, node):
    app = create_app(ControllerSettings(load_entry_points=False), backends=skalds_backends)
    server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=0, log_level="warning"))
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started)
        port = server.servers[0].sockets[0].getsockname()[1]
        hub = app.state.live_events
        hub.keepalive_seconds = 0.1
        with httpx.stream("GET", f"http://127.0.0.1:{port}/api/events/skalds", timeout=5) as res:
            sse = SseReader(res)  # kept: dropping the line iterator closes the connection
            assert sse.next()["event"] == "snapshot"
            assert hub.client_count == 1
        wait_for(lambda: hub.client_count == 0, timeout=3)
        metrics = httpx.get(f"http://127.0.0.1:{port}/metrics").text
        assert "skalds_controller_sse_clients 0.0" in metrics
    finally:
        server.should_exit = True
        thread.join(timeout=10)


def test_a_slow_client_loses_its_oldest_events_not_memory():
    async def scenario() -> LiveClient:
        client = LiveClient("tasks", asyncio.get_running_loop(), max_queue=10)
        for i in range(5000):
            client.offer(LiveEvent("tasks", "task.status", {"n": i}, "t", i))
        return client

    client = asyncio.run(scenario())
    assert client.queue.qsize() == 10 and client.take_dropped() == 4990
    assert client.queue.get_nowait().data == {"n": 4990}  # the newest are kept


def test_sse_accepts_the_token_as_a_query_parameter(skalds_backends, node):
    settings = ControllerSettings(api_token="s3cret", load_entry_points=False)
    with TestClient(create_app(settings, backends=skalds_backends)) as c:
        assert c.get("/api/events/status").status_code == 401
        assert c.get("/api/events/status", params={"token": "wrong"}).status_code == 401
        assert c.get("/api/tasks", params={"token": "s3cret"}).status_code == 401  # SSE only
        with c.stream("GET", "/api/events/status", params={"token": "s3cret"}) as res:
            assert res.status_code == 200
            assert SseReader(res).next()["event"] == "status"


def test_live_events_do_not_run_in_controller_mode(skalds_backends, node):
    settings = ControllerSettings(mode="CONTROLLER", load_entry_points=False)
    with TestClient(create_app(settings, backends=skalds_backends)) as c:
        res = c.get("/api/events/tasks")
        assert res.status_code == 503 and res.json()["code"] == "SERVICE_UNAVAILABLE"
        assert "MONITOR" in res.json()["error"]


@pytest.mark.parametrize("task_id", ["../x", "a b", "x" * 300, ""])
def test_a_bad_task_filter_is_422(client, task_id):
    res = client.get("/api/events/tasks", params={"taskId": task_id})
    assert res.status_code == 422 and res.json()["code"] == "VALIDATION_ERROR"


def test_an_unreadable_store_is_an_error_event_not_a_broken_stream(
    client, hub, skalds_backends, monkeypatch
):
    from skalds.errors import BackendUnavailableError

    def down(*args, **kwargs):
        raise BackendUnavailableError("store is unreachable")

    monkeypatch.setattr(skalds_backends.store, "count_tasks", down)
    monkeypatch.setattr(skalds_backends.store, "count_by_status", down)
    with client.stream("GET", "/api/events/status") as res:
        sse = SseReader(res)
        event = sse.next()
        assert event["event"] == "error" and event["data"]["code"] == "SERVICE_UNAVAILABLE"
        assert sse.next(0.3) is None and sse.comments >= 1  # still open, still ticking


def test_the_dispatcher_and_the_live_events_share_one_consumer_group():
    """Each event reaches a controller once, however many of its parts follow it."""
    from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
    from skalds.plugins import Backends
    from tests.contract.test_shared_subscription import CountingBus

    bus = CountingBus(MemoryEventBus())
    backends = Backends(bus, MemoryCache(), MemoryStore())
    settings = ControllerSettings(load_entry_points=False, mode="DISPATCHER", controller_id="c-one")
    app = create_app(settings, backends=backends)
    with TestClient(app) as client:
        dispatcher = app.state.context.background.dispatcher
        wait_for(lambda: dispatcher.describe()["subscribed"])
        assert bus.groups == ["c-one.events"]
        bus.publish("task.created", "t-1", '{"taskIds": ["t-1"], "initiator": "test"}')
        # both parts got it: each counts the events it handled, by source
        wait_for(lambda: {"dispatcher", "live"} <= _sources_that_handled_events(client))


def _sources_that_handled_events(client: TestClient) -> set[str]:
    """Sources whose ``skalds_controller_events_handled_total`` is above zero."""
    sources = set()
    for line in client.get("/metrics").text.splitlines():
        if line.startswith("skalds_controller_events_handled_total{"):
            labels, value = line.rsplit(" ", 1)
            if float(value) > 0:
                sources.add(labels.split('source="', 1)[1].split('"', 1)[0])
    return sources
