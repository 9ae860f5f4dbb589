"""The dispatcher's decisions one by one: strategies, eligibility, dependencies, retries."""

from __future__ import annotations

import random
from dataclasses import dataclass

import pytest

from skalds.model.task import ModeEnum, RetryPolicy, Task, TaskLifecycleStatus
from skalds_controller.nodes import NodeInfo
from skalds_controller.placement import NodeSlot, node_resources, node_slots
from skalds_controller.rules import (
    Readiness,
    backoff_seconds,
    check_dependencies,
    deadline_passed,
    plan_retry,
)
from skalds_controller.strategies import LeastTasks, RandomChoice, RoundRobin, make_strategy

S = TaskLifecycleStatus
NOW = 1_800_000_000_000


def task(task_id: str = "t", **fields) -> Task:
    fields.setdefault("className", "Probe")
    return Task(id=task_id, **fields)


@dataclass
class Node:
    node_id: str
    load: int = 0


# -- strategies -----------------------------------------------------------------------------


def test_least_tasks_picks_the_least_loaded_node_and_breaks_ties_by_id():
    pick = LeastTasks().pick
    assert pick([Node("b", 2), Node("a", 3), Node("c", 1)]).node_id == "c"
    assert pick([Node("b", 1), Node("a", 1)]).node_id == "a"


def test_round_robin_goes_round_and_skips_nodes_that_are_not_eligible():
    rr = RoundRobin()
    every = [Node("a"), Node("b"), Node("c")]
    assert [rr.pick(every).node_id for _ in range(4)] == ["a", "b", "c", "a"]
    assert rr.pick([Node("a"), Node("c")]).node_id == "c"  # b is full this time
    assert rr.pick(every).node_id == "a"


def test_random_choice_is_reproducible_with_a_seed():
    nodes = [Node("a"), Node("b"), Node("c")]
    first = [RandomChoice(random.Random(7)).pick(nodes).node_id for _ in range(5)]
    again = [RandomChoice(random.Random(7)).pick(nodes).node_id for _ in range(5)]
    assert first == again


def test_make_strategy_knows_the_three_names_and_refuses_others():
    assert isinstance(make_strategy("LEAST_TASKS"), LeastTasks)
    assert isinstance(make_strategy("ROUND_ROBIN"), RoundRobin)
    assert isinstance(make_strategy("RANDOM"), RandomChoice)
    with pytest.raises(ValueError):
        make_strategy("FASTEST")


# -- eligibility ----------------------------------------------------------------------------------


def node(node_id: str, *, online=True, mode="node", max_workers=4, **info) -> NodeInfo:
    info.setdefault("workers", [{"className": "Probe"}])
    info["capacity"] = {"maxWorkers": max_workers, **info.get("capacity", {})}
    return NodeInfo(node_id, mode, online, NOW, info)


def test_only_online_node_mode_skalds_get_slots_loaded_from_the_store():
    nodes = [node("a"), node("gone", online=False), node("edge", mode="edge")]
    active = [task("1", executor="a", lifecycleStatus=S.RUNNING), task("2", executor="a")]
    slots = node_slots(nodes, active)
    assert list(slots) == ["a"] and slots["a"].load == 2 and slots["a"].free == 2


def test_a_node_refuses_an_unknown_class_and_a_full_house():
    slot = node_slots([node("a", max_workers=1)], [])["a"]
    assert slot.refusal(task(className="Other")) == "does not run Other"
    assert slot.refusal(task()) is None
    slot.take(task())
    assert slot.refusal(task()) == "is full (1/1 workers)"


def test_resources_are_counted_against_what_the_node_reports():
    slot = node_slots([node("a", resources={"gpu": 2})], [])["a"]
    gpu = task(resources={"gpu": 1})
    slot.take(gpu)
    slot.take(gpu)
    assert slot.refusal(gpu) == "has 0 gpu free, the task needs 1"
    bare = NodeSlot("b", 4, frozenset({"Probe"}))
    assert bare.refusal(gpu) == "has 0 gpu free, the task needs 1"  # not reported = none


def test_node_resources_are_read_from_either_place_and_garbage_offers_nothing():
    assert node_resources({"resources": {"gpu": 2}}) == {"gpu": 2.0}
    assert node_resources({"capacity": {"resources": {"gpu": "1"}}}) == {"gpu": 1.0}
    assert node_resources({"resources": {"gpu": "many", "tpu": 1}}) == {"tpu": 1.0}
    assert node_resources({"resources": ["gpu"]}) == {}


# -- dependencies and deadlines -------------------------------------------------------------------


def test_dependencies_wait_until_all_finished():
    deps = {
        "a": task("a", lifecycleStatus=S.FINISHED, updateDateTime=NOW - 5),
        "b": task("b", lifecycleStatus=S.RUNNING),
    }
    waiting = task("t", dependencies=["a", "b"])
    assert check_dependencies(waiting, deps.get).readiness is Readiness.WAIT
    deps["b"] = task("b", lifecycleStatus=S.FINISHED, updateDateTime=NOW)
    ready = check_dependencies(waiting, deps.get)
    assert ready.readiness is Readiness.READY and ready.finished_at_ms == NOW


@pytest.mark.parametrize(
    ("dep", "reason"),
    [
        (task("a", lifecycleStatus=S.FAILED, errorMessage="x"), "dependency 'a' is Failed: x"),
        (task("a", lifecycleStatus=S.CANCELLED), "dependency 'a' is Cancelled"),
        (None, "dependency 'a' does not exist"),
    ],
)
def test_a_failed_cancelled_or_missing_dependency_fails_with_the_reason(dep, reason):
    check = check_dependencies(task("t", dependencies=["a"]), {"a": dep}.get)
    assert check.readiness is Readiness.FAIL and check.reason == reason


def test_a_task_depending_on_itself_fails():
    check = check_dependencies(task("t", dependencies=["t"]), {}.get)
    assert check.readiness is Readiness.FAIL and "itself" in (check.reason or "")


def test_deadline_passed_at_the_deadline_itself():
    assert deadline_passed(task(deadlineDateTime=NOW), NOW)
    assert not deadline_passed(task(deadlineDateTime=NOW + 1), NOW)


# -- retries --------------------------------------------------------------------------------------


def test_backoff_doubles_from_the_second_try_and_is_capped():
    policy = RetryPolicy(maxAttempts=10, backoffSeconds=1, maxBackoffSeconds=5)
    assert [backoff_seconds(policy, n) for n in range(1, 6)] == [1, 2, 4, 5, 5]
    assert backoff_seconds(policy, 10_000) == 5


def failed(**fields) -> Task:
    fields.setdefault("retryPolicy", {"maxAttempts": 3, "backoffSeconds": 2})
    fields.setdefault("attempts", 1)
    fields.setdefault("errorMessage", "RuntimeError: boom\nTraceback ...")
    fields.setdefault("deadlineDateTime", NOW + 60_000)
    return task(lifecycleStatus=S.FAILED, **fields)


def test_a_failed_task_with_tries_left_is_planned_after_its_backoff():
    plan = plan_retry(failed(attempts=2), NOW)
    assert plan is not None and plan.not_before_ms == NOW + 4000
    assert plan.message == "attempt 2 of 3 failed (RuntimeError: boom); next try in 4 s"


@pytest.mark.parametrize(
    "why",
    [
        {"retryPolicy": None},
        {"attempts": 0},  # never started: it would fail the same way again
        {"attempts": 3},  # no tries left
        {"mode": ModeEnum.ACTIVE},  # an edge node's YAML task stays with its node
        {"deadlineDateTime": NOW},
    ],
)
def test_no_retry_without_policy_start_tries_time_or_for_edge_tasks(why):
    assert plan_retry(failed(**why), NOW) is None


def test_only_failed_tasks_are_retried():
    assert plan_retry(failed().model_copy(update={"lifecycle_status": S.CANCELLED}), NOW) is None
