"""The node's lanes: per-task order, different tasks in parallel, exclusive work alone."""

from __future__ import annotations

import threading
import time

import pytest

from skalds.node.lanes import LaneExecutor


@pytest.fixture
def lanes():
    executor = LaneExecutor(4, name="test-lane")
    yield executor
    executor.shutdown(wait=True)


def test_work_for_one_task_runs_in_the_order_it_was_given(lanes):
    seen: list[int] = []
    futures = [lanes.submit_for("task-a", seen.append, i) for i in range(200)]
    for f in futures:
        f.result(5)
    assert seen == list(range(200))


def test_different_tasks_run_at_the_same_time(lanes):
    # Given two keys that land on different lanes
    keys = [f"task-{i}" for i in range(50)]
    by_lane: dict[int, str] = {}
    for key in keys:
        by_lane.setdefault(hash_lane(key, lanes.lanes), key)
    first, second = list(by_lane.values())[:2]
    both_in = threading.Barrier(2, timeout=5)
    # When each waits for the other inside its work, both finish: they overlap
    a = lanes.submit_for(first, both_in.wait)
    b = lanes.submit_for(second, both_in.wait)
    a.result(5), b.result(5)


def test_exclusive_work_waits_for_the_lanes_and_holds_them(lanes):
    running = threading.Event()
    release = threading.Event()
    order: list[str] = []
    slow = lanes.submit_for("busy", lambda: (running.set(), release.wait(5), order.append("slow")))
    assert running.wait(5)
    alone = lanes.submit(lambda: order.append("exclusive"))
    later = [lanes.submit_for(f"k{i}", order.append, f"after-{i}") for i in range(8)]
    time.sleep(0.1)
    assert order == []  # the exclusive work waits for the busy lane; the later work for it
    release.set()
    slow.result(5)
    alone.result(5)
    for f in later:
        f.result(5)
    assert order[:2] == ["slow", "exclusive"]
    assert sorted(order[2:]) == sorted(f"after-{i}" for i in range(8))


def test_exclusive_work_returns_its_result_and_raises_its_error(lanes):
    assert lanes.submit(lambda: 42).result(5) == 42
    with pytest.raises(ZeroDivisionError):
        lanes.submit(lambda: 1 / 0).result(5)
    assert lanes.submit_for("x", lambda: "still serving").result(5) == "still serving"


def test_two_threads_submitting_exclusive_work_do_not_deadlock(lanes):
    done: list[int] = []
    threads = [
        threading.Thread(target=lambda i=i: lanes.submit(done.append, i).result(10))
        for i in range(20)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join(15)
    assert sorted(done) == list(range(20))


def test_a_lane_count_below_one_is_refused():
    with pytest.raises(ValueError, match="at least 1"):
        LaneExecutor(0)


def hash_lane(key: str, lanes: int) -> int:
    import zlib

    return zlib.crc32(key.encode()) % lanes
