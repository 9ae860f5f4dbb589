"""The retry sweep reads Failed tasks a page at a time and never skips one it may retry."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from typing import Any

import pytest

from skalds.model.task import Task, TaskLifecycleStatus
from skalds.ports.store import TaskQuery
from skalds.utils.time import now_ms
from skalds_controller.retries import Retries
from skalds_controller.transitions import Transitions
from tests.helpers import collected_log

S = TaskLifecycleStatus
POLICY = {"maxAttempts": 3, "backoffSeconds": 0}


@pytest.fixture
def debug_lines() -> Iterator[list[str]]:
    with collected_log(logging.DEBUG) as lines:
        yield lines


@pytest.fixture
def queries(skalds_backends, monkeypatch) -> list[TaskQuery]:
    """Every query the store is asked (the store still answers them)."""
    store = skalds_backends.store
    asked: list[TaskQuery] = []
    real = store.list_tasks

    def list_tasks(query: TaskQuery | None = None) -> list[Task]:
        asked.append(query or TaskQuery())
        return real(query)

    monkeypatch.setattr(store, "list_tasks", list_tasks)
    return asked


def failed(store: Any, task_id: str, **fields: Any) -> None:
    store.create_task(Task(id=task_id, class_name="ProbeWorker"))
    store.update_task(task_id, {"lifecycle_status": S.FAILED, **fields})


def status(store: Any, task_id: str) -> TaskLifecycleStatus:
    return store.get_task(task_id).lifecycle_status


def test_the_sweep_pages_through_failed_tasks_and_retries_each_that_may_be(
    skalds_backends, queries, debug_lines
):
    # Given 26 Failed tasks of which only 4 may be retried (two of them side by side)
    store = skalds_backends.store
    may_retry = {"f03", "f04", "f12", "f25"}
    for i in range(26):
        task_id = f"f{i:02d}"
        if task_id in may_retry:
            failed(store, task_id, retry_policy=POLICY, attempts=1)
        elif i % 3 == 0:
            failed(store, task_id, retry_policy=POLICY, attempts=3)  # no tries left
        elif i % 3 == 1:
            failed(store, task_id, retry_policy=POLICY, attempts=1, deadline_date_time=1)
        else:
            failed(store, task_id)  # no retry policy
    retries = Retries(
        store,
        Transitions(skalds_backends, "c1"),
        sweep_every=3600,
        page_size=4,
        pages_per_run=2,
    )

    # When the dispatcher runs it pass after pass
    retried = [retries.run(now_ms()) for _ in range(5)]

    # Then no query reads more than a page, a pass reads two pages at most, the four are
    # retried within one sweep (26 tasks: four passes), and the fifth pass reads nothing
    assert sum(retried) == 4 and retried[4] == 0
    assert all(q.limit == 4 and q.statuses == {S.FAILED} for q in queries)
    assert len(queries) == 7  # pages of 4, 4 | 4, 4 | 4, 4 | 2 (the end)
    assert {t for t in may_retry if status(store, t) is S.CREATED} == may_retry
    assert store.count_tasks(TaskQuery(statuses={S.FAILED})) == 22
    swept = [line for line in debug_lines if line.startswith("retries: swept")]
    assert swept[0] == "retries: swept 8 failed tasks (2 could be retried, 2 retried); " + (
        "going on from 6 at the next pass"
    )
    assert swept[-1] == "retries: swept 2 failed tasks (1 could be retried, 1 retried)"


def test_a_new_leader_sweeps_from_the_start_at_once(skalds_backends, queries):
    store = skalds_backends.store
    for i in range(10):
        failed(store, f"f{i}")
    retries = Retries(
        store, Transitions(skalds_backends, "c1"), sweep_every=3600, page_size=4, pages_per_run=1
    )
    retries.run(now_ms())
    retries.run(now_ms())
    assert [q.offset for q in queries] == [0, 4]
    retries.sweep_soon()
    failed(store, "late", retry_policy=POLICY, attempts=1)
    assert retries.run(now_ms()) == 0 and queries[-1].offset == 0
    while status(store, "late") is S.FAILED and len(queries) < 10:
        retries.run(now_ms())
    assert status(store, "late") is S.CREATED


def test_a_noted_failure_is_retried_without_waiting_for_the_sweep(skalds_backends, queries):
    store = skalds_backends.store
    retries = Retries(store, Transitions(skalds_backends, "c1"), sweep_every=3600)
    retries.run(now_ms())  # the first sweep: nothing yet
    failed(store, "t", retry_policy=POLICY, attempts=1)
    retries.note_failed(["t"])
    assert retries.run(now_ms()) == 1 and status(store, "t") is S.CREATED
    assert len(queries) == 1
