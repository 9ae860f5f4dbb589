"""The dispatcher on the in-memory backends with real nodes: who runs what, when, how often.

Tasks are created through the REST API without an executor, as users do; the
controller's background (monitor + dispatcher) places them.
"""

from __future__ import annotations

import contextlib
import dataclasses
import itertools
import json
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from skalds.errors import BackendUnavailableError
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.ports.cache import HashDelete, HashSet, Set
from skalds.ports.event_bus import BusMessage, Topic
from skalds.utils.time import now_ms
from skalds_controller import ControllerSettings, DispatchStrategy, create_app
from skalds_controller.background import Background, start_background
from skalds_controller.deps import Context
from skalds_controller.dispatcher import Dispatcher
from tests.helpers import post_probe_task, read_lines, stored, wait_for
from tests.workers import OtherProbeWorker, ProbeWorker

S = TaskLifecycleStatus


@dataclass
class Controller:
    """One controller process as a test sees it: its API and its background parts."""

    context: Context
    background: Background
    client: TestClient

    @property
    def dispatcher(self) -> Dispatcher:
        assert self.background.dispatcher is not None
        return self.background.dispatcher

    def create(self, task_id: str, trace: Path, **fields: Any) -> dict[str, Any]:
        return post_probe_task(self.client, task_id, trace, **fields)

    def task(self, task_id: str) -> Task:
        return stored(self.context.backends, task_id)

    def status(self, task_id: str) -> TaskLifecycleStatus:
        return self.task(task_id).lifecycle_status


@pytest.fixture
def controllers(skalds_backends) -> Iterator[Callable[..., Controller]]:
    """``start(**settings)``: a controller on the shared backends (stopped at the end)."""
    started: list[Controller] = []

    def start(**settings: Any) -> Controller:
        settings.setdefault("load_entry_points", False)
        app = create_app(ControllerSettings(**settings), backends=skalds_backends)
        context = app.state.context
        controller = Controller(context, start_background(context), TestClient(app))
        started.append(controller)
        return controller

    yield start
    for controller in started:
        controller.background()


@pytest.fixture
def make_node(skalds_node_factory):
    def make(*workers: type, **config: Any):
        config.setdefault("cancel_grace_seconds", 0.5)
        return skalds_node_factory(workers=list(workers or [ProbeWorker]), **config)

    return make


def wait_status(ctl: Controller, task_id: str, *statuses: S, timeout: float = 10.0) -> Task:
    return wait_for(
        lambda: (t := ctl.task(task_id)).lifecycle_status in statuses and t, timeout=timeout
    )


# -- strategies -----------------------------------------------------------------------------


def test_least_tasks_spreads_a_burst_evenly(make_node, controllers, tmp_path):
    a, b = make_node(), make_node()
    ctl = controllers()
    for i in range(6):
        ctl.create(f"t{i}", tmp_path / f"t{i}", attachments={"mainSeconds": 30})
    for i in range(6):
        wait_status(ctl, f"t{i}", S.RUNNING)
    placed = Counter(ctl.task(f"t{i}").executor for i in range(6))
    assert placed == {a.skald_id: 3, b.skald_id: 3}


def test_round_robin_takes_nodes_in_turn_whatever_their_load(make_node, controllers, tmp_path):
    nodes = sorted([make_node(), make_node(), make_node()], key=lambda n: n.skald_id)
    ids = [n.skald_id for n in nodes]
    ctl = controllers(dispatcher_strategy="ROUND_ROBIN")
    for i in range(2):  # the first node is busier; round robin does not care
        ctl.create(
            f"pinned{i}", tmp_path / f"p{i}", executor=ids[0], attachments={"mainSeconds": 30}
        )
    placed = []
    for i in range(6):
        ctl.create(f"t{i}", tmp_path / f"t{i}", attachments={"mainSeconds": 30})
        placed.append(wait_status(ctl, f"t{i}", S.ASSIGNING, S.RUNNING).executor)
    assert placed == [ids[i % 3] for i in range(6)]


def test_random_uses_every_node(make_node, controllers, tmp_path):
    ids = {make_node().skald_id for _ in range(3)}
    ctl = controllers(dispatcher_strategy="RANDOM")
    for i in range(36):
        ctl.create(f"t{i}", tmp_path / f"t{i}")
    done = [wait_status(ctl, f"t{i}", S.FINISHED) for i in range(36)]
    assert {t.executor for t in done} == ids  # all three used: missing one has p < 2e-6


def test_the_strategy_switches_at_runtime(make_node, controllers, tmp_path):
    nodes = sorted([make_node(), make_node(), make_node()], key=lambda n: n.skald_id)
    ids = [n.skald_id for n in nodes]
    ctl = controllers()
    assert ctl.dispatcher.describe()["strategy"] == "LEAST_TASKS"
    for i in range(2):
        ctl.create(
            f"pinned{i}", tmp_path / f"p{i}", executor=ids[0], attachments={"mainSeconds": 30}
        )
    ctl.create("least", tmp_path / "least", attachments={"mainSeconds": 30})
    assert wait_status(ctl, "least", S.ASSIGNING, S.RUNNING).executor == ids[1]

    ctl.background.set_strategy("ROUND_ROBIN")
    placed = []
    for i in range(3):
        ctl.create(f"rr{i}", tmp_path / f"rr{i}", attachments={"mainSeconds": 30})
        placed.append(wait_status(ctl, f"rr{i}", S.ASSIGNING, S.RUNNING).executor)
    assert placed == ids
    assert ctl.context.settings.dispatcher_strategy == DispatchStrategy.ROUND_ROBIN

    ctl.context.settings.dispatcher_strategy = DispatchStrategy.RANDOM  # the settings way
    ctl.create("rnd", tmp_path / "rnd")
    wait_status(ctl, "rnd", S.FINISHED)
    assert ctl.dispatcher.describe()["strategy"] == "RANDOM"
    with pytest.raises(ValueError):
        ctl.background.set_strategy("FASTEST")


# -- eligibility and capacity -----------------------------------------------------------------


def test_only_nodes_that_run_the_class_get_its_tasks(make_node, controllers, tmp_path):
    make_node(ProbeWorker)
    other = make_node(OtherProbeWorker)
    ctl = controllers()
    for i in range(4):
        ctl.create(f"o{i}", tmp_path / f"o{i}", className="OtherProbeWorker")
    assert {wait_status(ctl, f"o{i}", S.FINISHED).executor for i in range(4)} == {other.skald_id}


def test_a_full_node_gets_no_more_tasks_until_one_ends(make_node, controllers, tmp_path):
    make_node(max_workers=2)
    ctl = controllers()
    for i in range(3):
        ctl.create(f"t{i}", tmp_path / f"t{i}", attachments={"mainSeconds": 1.0})
    wait_status(ctl, "t0", S.RUNNING)
    wait_status(ctl, "t1", S.RUNNING)
    time.sleep(0.3)
    waiting = ctl.task("t2")
    assert waiting.lifecycle_status is S.CREATED and waiting.executor is None
    assert wait_status(ctl, "t2", S.FINISHED).attempts == 1
    assert all(read_lines(tmp_path / f"t{i}").count("main") == 1 for i in range(3))


def test_a_task_needing_a_resource_no_node_has_waits_and_says_why(
    make_node, controllers, tmp_path, log_lines
):
    make_node()
    ctl = controllers()
    ctl.create("gpu", tmp_path / "gpu", resources={"gpu": 1})
    ctl.create("cpu", tmp_path / "cpu")
    wait_status(ctl, "cpu", S.FINISHED)
    assert ctl.status("gpu") is S.CREATED and ctl.task("gpu").executor is None
    wait_for(lambda: any("has 0 gpu free, the task needs 1" in line for line in log_lines))


def test_higher_priority_runs_first(make_node, controllers, tmp_path):
    make_node(max_workers=1)
    ctl = controllers()
    trace = tmp_path / "order"
    ctl.create("block", trace, attachments={"label": "block", "mainSeconds": 0.8})
    wait_status(ctl, "block", S.RUNNING)
    ctl.create("low", trace, priority=1, attachments={"label": "low"})
    ctl.create("high", trace, priority=9, attachments={"label": "high"})
    wait_status(ctl, "low", S.FINISHED)
    wait_status(ctl, "high", S.FINISHED)
    started = [line.split()[1] for line in read_lines(trace) if line.startswith("initialize")]
    assert started == ["block", "high", "low"]


# -- placing a task as the API creates it ---------------------------------------------------------


def _counted(ctl: Controller, node_id: str) -> None:
    """Wait until a dispatch pass has counted ``node_id``'s places (what placing on
    create takes from): the first passes may run before the monitor saw the node."""
    wait_for(lambda: node_id in (ctl.dispatcher._slots or {}))


def test_a_task_created_while_nothing_waits_is_placed_as_it_is_created(
    make_node, controllers, tmp_path
):
    node = make_node()
    ctl = controllers(dispatcher_reconcile_interval=60)
    _counted(ctl, node.skald_id)
    created = ctl.create("now", tmp_path / "now")
    # The response already names the node: stored Assigning there, sent task.assign
    assert created["lifecycleStatus"] == "Assigning"
    assert created["executor"] == node.skald_id
    done = wait_status(ctl, "now", S.FINISHED)
    assert done.executor == node.skald_id and done.attempts == 1
    assert read_lines(tmp_path / "now").count("main") == 1
    assert ctl.dispatcher.counts["placed_on_create"] == 1
    # A second task with that id is refused, and the place it was given is given back
    body = {"id": "now", "className": "ProbeWorker", "attachments": {"traceFile": "x"}}
    again = ctl.client.post("/api/tasks", json=body)
    assert again.status_code == 409 and again.json()["code"] == "CONFLICT"
    assert ctl.dispatcher.describe()["placed_on_create"] == 1
    assert wait_status(ctl, "now", S.FINISHED).attempts == 1


def test_while_a_task_waits_new_ones_queue_behind_it_in_priority_order(
    make_node, controllers, tmp_path
):
    node = make_node(max_workers=1)
    ctl = controllers(dispatcher_reconcile_interval=60)
    _counted(ctl, node.skald_id)
    trace = tmp_path / "order"
    first = ctl.create("block", trace, attachments={"label": "block", "mainSeconds": 0.8})
    assert first["lifecycleStatus"] == "Assigning"  # the only place, taken at creation
    wait_status(ctl, "block", S.RUNNING)
    # No place left: the next task waits in Created, and so does every task after it
    # (placing one at creation would jump the queue)
    low = ctl.create("low", trace, priority=1, attachments={"label": "low"})
    high = ctl.create("high", trace, priority=9, attachments={"label": "high"})
    assert (low["lifecycleStatus"], low["executor"]) == ("Created", None)
    assert (high["lifecycleStatus"], high["executor"]) == ("Created", None)
    wait_status(ctl, "low", S.FINISHED)
    started = [line.split()[1] for line in read_lines(trace) if line.startswith("initialize")]
    assert started == ["block", "high", "low"]


def test_placing_on_create_gives_a_node_no_more_than_max_assigning_unstarted_tasks(
    skalds_backends, controllers, tmp_path
):
    _fake_node(skalds_backends.cache, "ghost", max_workers=50)  # never starts anything
    ctl = controllers(dispatcher_max_assigning_per_node=3, dispatcher_reconcile_interval=60)
    _counted(ctl, "ghost")
    statuses = [ctl.create(f"g{i}", tmp_path / f"g{i}")["lifecycleStatus"] for i in range(5)]
    assert statuses == ["Assigning"] * 3 + ["Created"] * 2
    time.sleep(0.3)  # the pass the fourth task asked for ran: the ghost is still busy
    tasks = [ctl.task(f"g{i}") for i in range(5)]
    assert [t.executor for t in tasks] == ["ghost"] * 3 + [None] * 2
    assert ctl.dispatcher.counts["placed_on_create"] == 3


def test_a_task_placed_on_create_that_its_node_never_starts_is_placed_again(
    skalds_backends, make_node, controllers, tmp_path
):
    _fake_node(skalds_backends.cache, "ghost")
    ctl = controllers(dispatcher_assign_timeout=0.5, dispatcher_reconcile_interval=60)
    _counted(ctl, "ghost")
    created = ctl.create("lost", tmp_path / "lost")
    assert (created["lifecycleStatus"], created["executor"]) == ("Assigning", "ghost")
    real = make_node()
    skalds_backends.cache.apply([HashDelete(keys.SKALDS_HASH, ("ghost",))])
    done = wait_status(ctl, "lost", S.FINISHED)
    assert done.executor == real.skald_id and read_lines(tmp_path / "lost").count("main") == 1


def test_place_on_create_off_leaves_every_task_to_the_passes(make_node, controllers, tmp_path):
    node = make_node()
    ctl = controllers(dispatcher_place_on_create=False, dispatcher_reconcile_interval=60)
    _counted(ctl, node.skald_id)
    created = ctl.create("later", tmp_path / "later")
    assert (created["lifecycleStatus"], created["executor"]) == ("Created", None)
    assert wait_status(ctl, "later", S.FINISHED).executor == node.skald_id
    assert ctl.dispatcher.counts["placed_on_create"] == 0


# -- dependencies, deadlines, retries -------------------------------------------------------------


def test_a_task_waits_for_its_dependencies_then_runs(make_node, controllers, tmp_path):
    make_node()
    ctl = controllers()
    ctl.create("first", tmp_path / "first", attachments={"mainSeconds": 0.8})
    ctl.create("second", tmp_path / "second", dependencies=["first"])
    wait_status(ctl, "first", S.RUNNING)
    time.sleep(0.3)
    assert ctl.status("second") is S.CREATED
    wait_status(ctl, "second", S.FINISHED)
    assert ctl.task("second").update_date_time >= ctl.task("first").update_date_time


def test_a_failed_or_missing_dependency_fails_the_task_with_the_reason(
    make_node, controllers, tmp_path
):
    make_node()
    ctl = controllers()
    ctl.create("broken", tmp_path / "broken", attachments={"failIn": "main"})
    ctl.create("after", tmp_path / "after", dependencies=["broken"])
    ctl.create("orphan", tmp_path / "orphan", dependencies=["no-such-task"])
    failed = wait_status(ctl, "after", S.FAILED)
    assert "dependency 'broken' is Failed" in (failed.error_message or "")
    assert "boom in main" in (failed.error_message or "")
    orphan = wait_status(ctl, "orphan", S.FAILED)
    assert "dependency 'no-such-task' does not exist" in (orphan.error_message or "")
    assert read_lines(tmp_path / "after") == [] and read_lines(tmp_path / "orphan") == []


def test_an_expired_deadline_fails_the_task_instead_of_running_it(make_node, controllers, tmp_path):
    make_node()
    ctl = controllers()
    ctl.create("late", tmp_path / "late", deadline=1)
    ctl.create("blocker", tmp_path / "blocker", attachments={"mainSeconds": 30})
    ctl.create("waits", tmp_path / "waits", dependencies=["blocker"], deadline=now_ms() + 800)
    late = wait_status(ctl, "late", S.FAILED)
    assert "deadline passed" in (late.error_message or "")
    waits = wait_status(ctl, "waits", S.FAILED, timeout=3)
    assert "deadline passed" in (waits.error_message or "")
    assert read_lines(tmp_path / "late") == [] and read_lines(tmp_path / "waits") == []


def test_a_failing_task_is_retried_with_exponential_backoff(make_node, controllers, tmp_path):
    make_node()
    ctl = controllers()
    policy = {"maxAttempts": 3, "backoffSeconds": 0.3, "maxBackoffSeconds": 0.5}
    trace = tmp_path / "flaky"
    ctl.create("flaky", trace, retryPolicy=policy, attachments={"failIn": "main"})
    starts: list[float] = []
    deadline = time.monotonic() + 10
    while len(starts) < 3 and time.monotonic() < deadline:
        if read_lines(trace).count("main") > len(starts):
            starts.append(time.monotonic())
        time.sleep(0.005)
    final = wait_status(ctl, "flaky", S.FAILED)
    time.sleep(0.8)  # no fourth try
    assert read_lines(trace).count("main") == 3 and ctl.task("flaky").attempts == 3
    assert ctl.status("flaky") is S.FAILED and "boom in main" in (final.error_message or "")
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    assert 0.28 <= gaps[0] < 1.5 and 0.48 <= gaps[1] < 1.8, gaps  # 0.3 s, then 0.6 capped at 0.5


def test_a_task_that_fails_before_running_is_not_retried(make_node, controllers, tmp_path):
    make_node()
    ctl = controllers()
    policy = {"maxAttempts": 5, "backoffSeconds": 0.05}
    ctl.create("gone", tmp_path / "gone", retryPolicy=policy, dependencies=["nothing"])
    wait_status(ctl, "gone", S.FAILED)
    time.sleep(0.5)
    assert ctl.status("gone") is S.FAILED and ctl.task("gone").attempts == 0


# -- assignments that are not picked up -----------------------------------------------------------


def _fake_node(cache, node_id: str, max_workers: int = 5) -> None:
    """A registry entry for a node that never reads the bus (it died right after reporting)."""
    info = {
        "capacity": {"maxWorkers": max_workers},
        "workers": [{"className": "ProbeWorker"}],
        "tasks": [],
    }
    cache.apply(
        [
            HashSet(keys.SKALDS_HASH, {node_id: str(now_ms())}, 30),
            HashSet(keys.SKALDS_MODE_HASH, {node_id: "node"}, 30),
            Set(keys.skald_info(node_id), json.dumps(info), 30),
        ]
    )


def test_an_assignment_nobody_picks_up_goes_back_to_created(
    skalds_backends, make_node, tmp_path, log_lines
):
    _fake_node(skalds_backends.cache, "ghost")
    settings = ControllerSettings(load_entry_points=False)
    dispatcher = Dispatcher(skalds_backends, settings, controller_id="c1", assign_timeout=0.5)
    dispatcher.start()
    try:
        store = skalds_backends.store
        store.create_task(
            Task(id="t", className="ProbeWorker", attachments={"traceFile": str(tmp_path / "t")})
        )
        dispatcher.wake()
        wait_for(lambda: (t := store.get_task("t")) and t.executor == "ghost")
        real = make_node()
        skalds_backends.cache.apply([HashDelete(keys.SKALDS_HASH, ("ghost",))])
        done = wait_for(lambda: (t := store.get_task("t")).lifecycle_status is S.FINISHED and t)
        assert done.executor == real.skald_id and read_lines(tmp_path / "t").count("main") == 1
        assert any("node ghost did not pick the task up within 0.5 s" in x for x in log_lines)
    finally:
        dispatcher.stop()


def test_a_node_holds_at_most_max_assigning_unstarted_tasks_and_each_start_frees_one(
    skalds_backends, log_lines
):
    """A burst waits in Created, not in a slow node's backlog, and flows on as it starts."""
    _fake_node(skalds_backends.cache, "ghost", max_workers=50)
    store = skalds_backends.store
    settings = ControllerSettings(load_entry_points=False, dispatcher_max_assigning_per_node=3)
    dispatcher = Dispatcher(skalds_backends, settings, controller_id="c1")
    assert dispatcher.max_assigning == 3
    for i in range(7):
        store.create_task(Task(id=f"m{i}", className="ProbeWorker"))

    def on_ghost() -> list[Task]:
        tasks = [store.get_task(f"m{i}") for i in range(7)]
        return [t for t in tasks if t is not None and t.executor == "ghost"]

    dispatcher.start()
    try:
        wait_for(lambda: len(on_ghost()) == 3)
        time.sleep(0.3)  # passes run meanwhile (the timer, the node's report): still 3
        dispatcher.wake()
        time.sleep(0.1)
        assert len(on_ghost()) == 3
        assert all(t.lifecycle_status is S.ASSIGNING for t in on_ghost())
        for step in range(2):  # the node starts one: its Running event lets one more go
            started = next(t for t in on_ghost() if t.lifecycle_status is S.ASSIGNING)
            store.update_task(
                started.id, {"lifecycle_status": S.RUNNING}, expected_status={S.ASSIGNING}
            )
            event = TaskEvent(task_ids=[started.id], title=S.RUNNING.value, initiator="ghost")
            skalds_backends.event_bus.publish(
                Topic.TASKWORKER_UPDATE, started.id, event.model_dump_json()
            )
            wait_for(lambda step=step: len(on_ghost()) == 4 + step)
            time.sleep(0.1)
            assert len(on_ghost()) == 4 + step
        assert sum(t.lifecycle_status is S.ASSIGNING for t in on_ghost()) == 3
    finally:
        dispatcher.stop()
    waiting = [store.get_task(f"m{i}") for i in range(7)]
    assert sum(t is not None and t.lifecycle_status is S.CREATED for t in waiting) == 2
    # holding back for a moment is not a reason to log about every waiting task
    assert not any("waits for a node" in line for line in log_lines)


def test_a_saturated_pass_looks_only_at_deadlines_of_the_rest_of_the_queue(skalds_backends):
    """A burst's backlog is not judged whole at every pass; its deadlines still hold."""
    _fake_node(skalds_backends.cache, "ghost", max_workers=100)
    store = skalds_backends.store
    settings = ControllerSettings(load_entry_points=False, dispatcher_max_assigning_per_node=2)
    dispatcher = Dispatcher(skalds_backends, settings, controller_id="c1")
    for i in range(40):
        store.create_task(Task(id=f"q{i:02d}", className="ProbeWorker", priority=5))
    late = Task(id="late", className="ProbeWorker", priority=0, deadlineDateTime=now_ms() + 300)
    store.create_task(late)
    looked: list[str] = []
    consider = dispatcher._consider

    def counting(task: Task, *args: Any) -> Any:
        looked.append(task.id)
        return consider(task, *args)

    dispatcher._consider = counting  # type: ignore[method-assign]
    try:
        dispatcher.run_pass(full=True)
        assert sorted(looked) == ["q00", "q01", "q02"]  # two placed, the third held back
        looked.clear()
        time.sleep(0.35)
        dispatcher.run_pass()
        assert looked == ["q02"]  # the node still has two unstarted: only the head judged
    finally:
        dispatcher.stop()
    failed = store.get_task("late")
    assert failed is not None and failed.lifecycle_status is S.FAILED
    assert "deadline" in (failed.error_message or "")
    assert sum(store.get_task(f"q{i:02d}").executor == "ghost" for i in range(40)) == 2


# -- exactly once ---------------------------------------------------------------------------------


def test_two_controllers_never_start_a_task_twice(make_node, controllers, tmp_path):
    for _ in range(3):
        make_node()
    first, second = controllers(), controllers()
    for i in range(60):
        (first if i % 2 else second).create(f"t{i}", tmp_path / f"t{i}")
    for i in range(60):
        task = wait_status(first, f"t{i}", S.FINISHED)
        assert task.attempts == 1
        assert read_lines(tmp_path / f"t{i}").count("main") == 1
    counts = sorted(c.dispatcher.counts["assigned"] for c in (first, second))
    assert counts == [0, 60]  # only the lease holder dispatched


def test_two_dispatchers_without_a_lease_still_assign_each_task_once(
    skalds_backends, make_node, tmp_path
):
    for _ in range(2):
        make_node()
    settings = ControllerSettings(load_entry_points=False)
    racing = [
        Dispatcher(skalds_backends, settings, controller_id=f"c{i}", lease=None) for i in range(2)
    ]
    for dispatcher in racing:
        dispatcher.start()
    try:
        store, bus = skalds_backends.store, skalds_backends.event_bus
        wait_for(lambda: all(d.describe()["subscribed"] for d in racing))
        for i in range(60):
            trace = str(tmp_path / f"t{i}")
            store.create_task(
                Task(id=f"t{i}", className="ProbeWorker", attachments={"traceFile": trace})
            )
            event = TaskEvent(task_ids=[f"t{i}"], initiator="test")
            bus.publish(Topic.TASK_CREATED.value, f"t{i}", event.model_dump_json())
        for i in range(60):
            wait_for(lambda i=i: store.get_task(f"t{i}").lifecycle_status is S.FINISHED)
            assert read_lines(tmp_path / f"t{i}").count("main") == 1
        assert sum(d.counts["assigned"] for d in racing) == 60
    finally:
        for dispatcher in racing:
            dispatcher.stop()


def test_the_other_controller_takes_over_when_the_leader_stops(make_node, controllers, tmp_path):
    make_node()
    first, second = controllers(), controllers()
    wait_for(lambda: first.dispatcher.leading or second.dispatcher.leading)
    leader, other = (first, second) if first.dispatcher.leading else (second, first)
    assert not other.dispatcher.leading
    leader.background()
    started = time.monotonic()
    other.create("after", tmp_path / "after")
    wait_status(other, "after", S.FINISHED)
    assert time.monotonic() - started < 3.0 and other.dispatcher.leading


# -- what the mode starts, what is reported -----------------------------------------------------


def test_controller_mode_runs_no_monitor_and_no_dispatcher(make_node, controllers, tmp_path):
    make_node()
    ctl = controllers(mode="CONTROLLER")
    assert ctl.background.monitor is None and ctl.background.dispatcher is None
    ctl.create("idle", tmp_path / "idle")
    time.sleep(0.3)
    assert ctl.status("idle") is S.CREATED
    with pytest.raises(RuntimeError, match="no dispatcher"):
        ctl.background.set_strategy("RANDOM")


class Recorder:
    """Stands in for the application's metrics."""

    def __init__(self) -> None:
        self.latencies: list[float] = []
        self.handled: list[str] = []
        self.failed: list[str] = []

    def observe_dispatch_latency(self, seconds: float) -> None:
        self.latencies.append(seconds)

    def event_handled(self, source: str) -> None:
        self.handled.append(source)

    def event_failed(self, source: str) -> None:
        self.failed.append(source)


def test_dispatches_and_bad_events_are_reported_and_survived(skalds_backends, make_node, tmp_path):
    make_node()
    app = create_app(ControllerSettings(load_entry_points=False), backends=skalds_backends)
    recorder = Recorder()
    background = start_background(app.state.context, observer=recorder)
    try:
        ctl = Controller(app.state.context, background, TestClient(app))
        ctl.create("one", tmp_path / "one")
        wait_status(ctl, "one", S.FINISHED)
        assert len(recorder.latencies) == 1 and 0 <= recorder.latencies[0] < 1
        assert "dispatcher" in recorder.handled
        skalds_backends.event_bus.publish(Topic.TASK_CREATED.value, "x", b"{not json")
        wait_for(lambda: recorder.failed == ["dispatcher"])
        ctl.create("two", tmp_path / "two")
        wait_status(ctl, "two", S.FINISHED)
        assert background.describe()["dispatcher"]["assigned"] == 2
        node_id = ctl.task("two").executor
        wait_for(lambda: background.describe()["monitor"]["online"] == [node_id])
    finally:
        background()


# -- cost -------------------------------------------------------------------------------------


def test_a_burst_of_tasks_is_placed_without_listing_the_store_again(
    make_node, controllers, tmp_path, skalds_backends, monkeypatch
):
    # Listing active tasks is a full scan on some stores (FerretDB): only the periodic
    # full pass may do it, never each event.
    make_node(max_workers=50)
    ctl = controllers()
    wait_for(lambda: ctl.dispatcher.counts["passes"] >= 1)  # the first (full) pass is done
    listed: list[Any] = []
    real_list = skalds_backends.store.list_tasks
    monkeypatch.setattr(
        skalds_backends.store, "list_tasks", lambda q=None: listed.append(q) or real_list(q)
    )
    for i in range(30):
        ctl.create(f"burst{i}", tmp_path / f"b{i}")
    for i in range(30):
        wait_status(ctl, f"burst{i}", S.FINISHED)
    active_listings = [
        q for q in listed if q is not None and q.statuses and S.RUNNING in q.statuses
    ]
    assert len(active_listings) <= 2, listed  # at most the 5 s full passes meanwhile


# -- one pass, several assignments at once --------------------------------------------------------


class _SlowStore:
    """The in-memory store with a round trip's delay on updates, counting overlaps."""

    def __init__(self, store: Any, delay: float, fail_for: str | None = None) -> None:
        self._store = store
        self._delay = delay
        self._fail_for = fail_for
        self._lock = threading.Lock()
        self.in_flight = 0
        self.most_in_flight = 0
        self.batches: list[list[str]] = []

    @contextlib.contextmanager
    def _round_trip(self, task_ids: list[str]) -> Iterator[None]:
        with self._lock:
            self.in_flight += 1
            self.most_in_flight = max(self.most_in_flight, self.in_flight)
        try:
            time.sleep(self._delay)
            if self._fail_for in task_ids:
                raise BackendUnavailableError("the store went away")
            yield
        finally:
            with self._lock:
                self.in_flight -= 1

    def update_task(self, task_id: str, changes: Any, **kwargs: Any) -> Any:
        with self._round_trip([task_id]):
            return self._store.update_task(task_id, changes, **kwargs)

    def update_tasks(self, task_ids: list[str], changes: Any, **kwargs: Any) -> Any:
        self.batches.append(list(task_ids))
        with self._round_trip(task_ids):
            return self._store.update_tasks(task_ids, changes, **kwargs)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._store, name)


def _burst(
    skalds_backends, store: _SlowStore, count: int, concurrency: int, nodes: int = 1
) -> Dispatcher:
    for n in range(nodes):
        _fake_node(skalds_backends.cache, f"ghost-{n}")
    backends = dataclasses.replace(skalds_backends, store=store)
    settings = ControllerSettings(load_entry_points=False)
    dispatcher = Dispatcher(backends, settings, controller_id="c1", assign_concurrency=concurrency)
    for i in range(count):
        store.create_task(Task(id=f"b{i}", className="ProbeWorker"))
    return dispatcher


def test_a_pass_assigns_each_nodes_tasks_in_one_batch(skalds_backends):
    store = _SlowStore(skalds_backends.store, delay=0.0)
    dispatcher = _burst(skalds_backends, store, 12, concurrency=8, nodes=2)
    try:
        dispatcher.run_pass(full=True)
    finally:
        dispatcher.stop()
    assert dispatcher.counts["assigned"] == 10  # each node offers 5 places
    assert sorted(len(batch) for batch in store.batches) == [5, 5]  # a round trip per node
    placed = [store.get_task(f"b{i}") for i in range(12)]
    for batch in store.batches:
        assert len({store.get_task(task_id).executor for task_id in batch}) == 1
    assert sum(t.lifecycle_status is S.ASSIGNING for t in placed) == 10
    assert sum(t.lifecycle_status is S.CREATED and t.executor is None for t in placed) == 2


@pytest.mark.parametrize("concurrency", [1, 3])
def test_a_pass_makes_up_to_assign_concurrency_nodes_batches_at_once(skalds_backends, concurrency):
    store = _SlowStore(skalds_backends.store, delay=0.05)
    dispatcher = _burst(skalds_backends, store, 8, concurrency, nodes=4)
    try:
        dispatcher.run_pass(full=True)
    finally:
        dispatcher.stop()
    assert len(store.batches) == 4 and store.most_in_flight == concurrency
    assert dispatcher.counts["assigned"] == 8
    assert all(store.get_task(f"b{i}").lifecycle_status is S.ASSIGNING for i in range(8))


def test_a_failed_batch_fails_the_pass_after_filing_the_other_nodes(skalds_backends):
    store = _SlowStore(skalds_backends.store, delay=0.01, fail_for="b1")
    dispatcher = _burst(
        skalds_backends, store, 3, 4, nodes=2
    )  # b0, b2 on one node, b1 on the other
    try:
        with pytest.raises(BackendUnavailableError):
            dispatcher.run_pass(full=True)
        assert dispatcher.counts["assigned"] == 2
        assert store.get_task("b1").lifecycle_status is S.CREATED
        store._fail_for = None
        dispatcher.run_pass(full=True)  # the next pass places the one left over
    finally:
        dispatcher.stop()
    assert dispatcher.counts["assigned"] == 3
    assert all(store.get_task(f"b{i}").executor.startswith("ghost-") for i in range(3))


class _ReadCountingStore(_SlowStore):
    """Counts ``get_task`` calls per task id (no delay)."""

    def __init__(self, store: Any) -> None:
        super().__init__(store, delay=0.0)
        self.reads: Counter[str] = Counter()

    def get_task(self, task_id: str) -> Any:
        self.reads[task_id] += 1
        return self._store.get_task(task_id)


def test_a_task_created_through_this_controller_is_dispatched_without_reading_it_back(
    skalds_backends, make_node, tmp_path
):
    make_node()
    store = _ReadCountingStore(skalds_backends.store)
    backends = dataclasses.replace(skalds_backends, store=store)
    app = create_app(ControllerSettings(load_entry_points=False), backends=backends)
    with TestClient(app) as client:
        context = app.state.context
        wait_for(lambda: context.background is not None and context.background.dispatcher)
        # The first pass after winning the lease lists the store; later ones do not.
        post_probe_task(client, "warm-up", tmp_path / "warm-up")
        wait_for(lambda: stored(skalds_backends, "warm-up").lifecycle_status is S.FINISHED)
        for i in range(5):
            post_probe_task(client, f"mine{i}", tmp_path / f"mine{i}")
        for i in range(5):
            wait_for(lambda i=i: stored(skalds_backends, f"mine{i}").lifecycle_status is S.FINISHED)
        # Created elsewhere (another controller's API): only its event tells this one.
        skalds_backends.store.create_task(
            Task(
                id="theirs", className="ProbeWorker", attachments={"traceFile": str(tmp_path / "t")}
            )
        )
        event = TaskEvent(task_ids=["theirs"], initiator="controller-other")
        skalds_backends.event_bus.publish(
            Topic.TASK_CREATED.value, "theirs", event.model_dump_json()
        )
        wait_for(lambda: stored(skalds_backends, "theirs").lifecycle_status is S.FINISHED)
    assert all(store.reads[f"mine{i}"] == 0 for i in range(5)), store.reads
    assert store.reads["theirs"] >= 1


def test_a_task_assigned_by_hand_through_this_controller_takes_its_place_without_a_read(
    skalds_backends, make_node, tmp_path
):
    node = make_node(max_workers=1)
    store = _ReadCountingStore(skalds_backends.store)
    backends = dataclasses.replace(skalds_backends, store=store)
    app = create_app(ControllerSettings(load_entry_points=False), backends=backends)
    trace = tmp_path / "order"
    with TestClient(app) as client:
        context = app.state.context
        wait_for(lambda: context.background is not None and context.background.dispatcher)
        post_probe_task(client, "warm-up", tmp_path / "warm-up")
        wait_for(lambda: stored(skalds_backends, "warm-up").lifecycle_status is S.FINISHED)
        # Given a task assigned by hand (executor given) running on the only place
        post_probe_task(
            client,
            "by-hand",
            trace,
            executor=node.skald_id,
            attachments={"label": "by-hand", "mainSeconds": 0.8},
        )
        wait_for(lambda: stored(skalds_backends, "by-hand").lifecycle_status is S.RUNNING)
        # When a task for the dispatcher comes meanwhile
        post_probe_task(client, "queued", trace, attachments={"label": "queued"})
        time.sleep(0.3)
        # Then it waits for the place, and runs once the first one is done
        assert stored(skalds_backends, "queued").lifecycle_status is S.CREATED
        wait_for(lambda: stored(skalds_backends, "queued").lifecycle_status is S.FINISHED)
    started = [line.split()[1] for line in read_lines(trace) if line.startswith("initialize")]
    assert started == ["by-hand", "queued"]
    # and the dispatcher knew the first task from the API, not from the store
    assert store.reads["by-hand"] == 0, store.reads


# -- which events make a pass -------------------------------------------------------------------


def _worker_update(task_id: str, title: S) -> BusMessage:
    event = TaskEvent(task_ids=[task_id], title=title.value, initiator="some-node")
    return BusMessage(Topic.TASKWORKER_UPDATE.value, task_id, event.model_dump_json().encode())


def test_an_end_makes_a_pass_only_when_a_task_waits_or_may_be_retried(skalds_backends):
    _fake_node(skalds_backends.cache, "ghost", max_workers=1)
    store = skalds_backends.store
    dispatcher = Dispatcher(
        skalds_backends, ControllerSettings(load_entry_points=False), controller_id="c1"
    )
    # Given nothing waiting after a pass
    dispatcher.run_pass(full=True)
    dispatcher._wake.clear()
    # When a task elsewhere finishes or is cancelled, no pass is asked for
    dispatcher._on_message(_worker_update("elsewhere", S.FINISHED))
    dispatcher._on_message(_worker_update("elsewhere-2", S.CANCELLED))
    assert not dispatcher._wake.is_set()
    # but a failure is (its retry policy may re-queue it)
    dispatcher._on_message(_worker_update("elsewhere-3", S.FAILED))
    assert dispatcher._wake.is_set()
    # Given one task placed on the only place and one waiting for it
    store.create_task(Task(id="first", className="ProbeWorker"))
    store.create_task(Task(id="second", className="ProbeWorker"))
    dispatcher.run_pass(full=True)
    assert store.get_task("first").executor == "ghost"
    assert store.get_task("second").lifecycle_status is S.CREATED
    dispatcher._wake.clear()
    # When the placed one finishes, a pass is asked for, and it places the other
    dispatcher._on_message(_worker_update("first", S.FINISHED))
    assert dispatcher._wake.is_set()
    dispatcher.run_pass()
    assert store.get_task("second").executor == "ghost"


def _start(store: Any, dispatcher: Dispatcher, task_id: str) -> None:
    """What a node does when it starts a task: Assigning → Running, then its event."""
    store.update_task(task_id, {"lifecycle_status": S.RUNNING}, expected_status={S.ASSIGNING})
    dispatcher._on_message(_worker_update(task_id, S.RUNNING))


def test_while_every_node_is_busy_starting_a_pass_waits_for_half_max_assigning_starts(
    skalds_backends,
):
    """A flood's starts do not each make a pass; enough of them to place a batch do."""
    _fake_node(skalds_backends.cache, "ghost", max_workers=100)
    store = skalds_backends.store
    settings = ControllerSettings(load_entry_points=False, dispatcher_max_assigning_per_node=4)
    dispatcher = Dispatcher(skalds_backends, settings, controller_id="c1")
    for i in range(10):
        store.create_task(Task(id=f"f{i}", className="ProbeWorker"))
    dispatcher.run_pass(full=True)
    placed = [f"f{i}" for i in range(10) if store.get_task(f"f{i}").executor == "ghost"]
    assert len(placed) == 4  # the node is busy starting them; six wait
    dispatcher._wake.clear()
    # When the node starts one, no pass yet: it still has three to start
    _start(store, dispatcher, placed[0])
    assert not dispatcher._wake.is_set()
    # nor for a task ending, or a new task: neither could be placed now
    dispatcher._on_message(_worker_update(placed[0], S.FINISHED))
    store.create_task(new := Task(id="new", className="ProbeWorker"))
    dispatcher.offer(new)
    assert not dispatcher._wake.is_set()
    # When another leaves without starting (cancelled), that is max_assigning // 2
    # places freed: a pass places as many more
    store.update_task(placed[1], {"lifecycle_status": S.CANCELLED}, expected_status={S.ASSIGNING})
    dispatcher._on_message(_worker_update(placed[1], S.CANCELLED))
    assert dispatcher._wake.is_set()
    dispatcher.run_pass()
    assert sum(store.get_task(f"f{i}").executor == "ghost" for i in range(10)) == 6
    # and the next pass waits for two more starts again
    dispatcher._wake.clear()
    _start(store, dispatcher, placed[2])
    assert not dispatcher._wake.is_set()
    _start(store, dispatcher, placed[3])
    assert dispatcher._wake.is_set()


def test_a_task_created_while_every_node_is_busy_is_placed_once_they_start_some(
    skalds_backends,
):
    """Nothing queued, every node busy: the new task waits for the starts, not a timer."""
    _fake_node(skalds_backends.cache, "ghost", max_workers=100)
    store = skalds_backends.store
    settings = ControllerSettings(
        load_entry_points=False,
        dispatcher_max_assigning_per_node=2,
        dispatcher_place_on_create=False,
    )
    dispatcher = Dispatcher(skalds_backends, settings, controller_id="c1")
    for task_id in ("a", "b"):
        store.create_task(Task(id=task_id, className="ProbeWorker"))
    dispatcher.run_pass(full=True)  # both placed: the node is busy, nothing waits
    assert {store.get_task(t).executor for t in ("a", "b")} == {"ghost"}
    dispatcher._wake.clear()
    store.create_task(late := Task(id="late", className="ProbeWorker"))
    dispatcher.offer(late)
    assert not dispatcher._wake.is_set()  # it could only wait
    _start(store, dispatcher, "a")  # the start that frees a place asks for the pass
    assert dispatcher._wake.is_set()
    dispatcher.run_pass()
    assert store.get_task("late").executor == "ghost"


def test_a_task_whose_dependency_ends_while_every_node_is_busy_is_placed_after_starts(
    skalds_backends,
):
    """The dependency's end cannot place it (every node is busy); the starts to come do."""
    _fake_node(skalds_backends.cache, "ghost", max_workers=100)
    store = skalds_backends.store
    settings = ControllerSettings(load_entry_points=False, dispatcher_max_assigning_per_node=2)
    dispatcher = Dispatcher(skalds_backends, settings, controller_id="c1")
    store.create_task(
        Task(id="parent", className="ProbeWorker", lifecycleStatus=S.RUNNING, executor="gone")
    )
    for task_id in ("a", "b"):
        store.create_task(Task(id=task_id, className="ProbeWorker"))
    store.create_task(Task(id="child", className="ProbeWorker", dependencies=["parent"]))
    dispatcher.run_pass(full=True)  # a, b placed: the node is busy; child waits for parent
    assert store.get_task("child").lifecycle_status is S.CREATED
    dispatcher._wake.clear()
    store.update_task("parent", {"lifecycle_status": S.FINISHED})
    dispatcher._on_message(_worker_update("parent", S.FINISHED))
    _start(store, dispatcher, "a")
    assert dispatcher._wake.is_set()
    dispatcher.run_pass()
    assert store.get_task("child").executor == "ghost"


def test_an_end_during_the_pass_that_leaves_a_task_waiting_asks_for_another_pass(
    skalds_backends,
):
    _fake_node(skalds_backends.cache, "ghost", max_workers=1)
    store = skalds_backends.store
    dispatcher = Dispatcher(
        skalds_backends, ControllerSettings(load_entry_points=False), controller_id="c1"
    )
    store.create_task(Task(id="first", className="ProbeWorker"))
    dispatcher.run_pass(full=True)  # "first" takes the only place; nothing waits
    assert store.get_task("first").executor == "ghost"
    store.create_task(Task(id="second", className="ProbeWorker"))
    dispatcher._note(dispatcher._noted, ["second"])  # as its task.created event does
    consider = dispatcher._consider

    def finishing_first_meanwhile(task: Task, *args: Any) -> Any:
        # "first" ends while this pass still counts its place as taken
        dispatcher._on_message(_worker_update("first", S.FINISHED))
        return consider(task, *args)

    dispatcher._consider = finishing_first_meanwhile  # type: ignore[method-assign]
    dispatcher._wake.clear()
    dispatcher.run_pass()
    # The pass left "second" waiting; the end it did not count asks for the next one
    assert store.get_task("second").lifecycle_status is S.CREATED
    assert dispatcher._wake.is_set()
    dispatcher._consider = consider  # type: ignore[method-assign]
    dispatcher.run_pass()
    assert store.get_task("second").executor == "ghost"
