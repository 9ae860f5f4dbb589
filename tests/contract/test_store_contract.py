"""What every store backend guarantees (run against each backend)."""

from __future__ import annotations

import threading
import time
import uuid

import pytest
from pydantic import BaseModel, ConfigDict, Field

from skalds.errors import TaskExistsError, TaskNotFoundError
from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
from skalds.ports import Increment, Store, TaskQuery

S = TaskLifecycleStatus


class CameraParams(BaseModel):
    model_config = ConfigDict(populate_by_name=True)
    rtsp_url: str = Field(alias="rtspUrl")
    fix_frame: int = Field(alias="fixFrame")


def new_id(prefix: str = "t") -> str:
    return f"{prefix}-{uuid.uuid4().hex[:10]}"


def make_task(**fields) -> Task:
    fields.setdefault("id", new_id())
    fields.setdefault("class_name", "CameraWorker")
    fields.setdefault("source", "test")
    return Task(**fields)


def test_a_created_task_reads_back_with_its_fields(store: Store):
    task = make_task(
        name="camera 1",
        priority=7,
        dependencies=["a", "b"],
        is_persistent=True,
        mode=ModeEnum.PASSIVE,
        attachments=CameraParams(rtsp_url="rtsp://x/1", fix_frame=10),
    )
    store.create_task(task)
    got = store.get_task(task.id)
    assert got is not None
    assert (got.id, got.class_name, got.name, got.priority) == (
        task.id,
        "CameraWorker",
        "camera 1",
        7,
    )
    assert got.dependencies == ["a", "b"] and got.is_persistent is True
    assert got.lifecycle_status is S.CREATED
    assert got.create_date_time == task.create_date_time
    # attachments come back as a dict by alias (the worker's model validates them)
    assert got.attachments == {"rtspUrl": "rtsp://x/1", "fixFrame": 10}


def test_a_missing_task_is_none(store: Store):
    assert store.get_task(new_id("missing")) is None


def test_creating_a_task_twice_is_refused(store: Store):
    task = make_task()
    store.create_task(task)
    with pytest.raises(TaskExistsError, match=task.id):
        store.create_task(task)


def test_update_changes_fields_and_the_update_time(store: Store):
    task = make_task(update_date_time=1000)
    store.create_task(task)
    updated = store.update_task(task.id, {"executor": "node-1", "priority": 3})
    assert updated is not None
    assert (updated.executor, updated.priority) == ("node-1", 3)
    assert updated.update_date_time > 1000
    again = store.get_task(task.id)
    assert again is not None and again.executor == "node-1"


def test_update_stores_new_attachments_by_alias(store: Store):
    task = make_task(attachments={"rtspUrl": "a", "fixFrame": 1})
    store.create_task(task)
    store.update_task(task.id, {"attachments": CameraParams(rtsp_url="b", fix_frame=2)})
    got = store.get_task(task.id)
    assert got is not None and got.attachments == {"rtspUrl": "b", "fixFrame": 2}


def test_status_change_is_compare_and_set(store: Store):
    task = make_task()
    store.create_task(task)
    moved = store.update_task(
        task.id, {"lifecycle_status": S.ASSIGNING}, expected_status={S.CREATED}
    )
    assert moved is not None and moved.lifecycle_status is S.ASSIGNING
    # a second, stale transition from Created is refused and changes nothing
    stale = store.update_task(
        task.id, {"lifecycle_status": S.RUNNING, "executor": "other"}, expected_status={S.CREATED}
    )
    assert stale is None
    got = store.get_task(task.id)
    assert got is not None and got.lifecycle_status is S.ASSIGNING and got.executor is None


def test_compare_and_set_can_require_the_executor(store: Store):
    task = make_task(executor="node-a", lifecycle_status=S.ASSIGNING)
    store.create_task(task)
    # another node's stale assign event: the executor differs, nothing changes
    assert (
        store.update_task(
            task.id,
            {"lifecycle_status": S.RUNNING},
            expected_status={S.ASSIGNING},
            expected_executor="node-b",
        )
        is None
    )
    got = store.get_task(task.id)
    assert got is not None and got.lifecycle_status is S.ASSIGNING
    # the right executor but a status that does not match: refused too
    assert (
        store.update_task(
            task.id,
            {"lifecycle_status": S.RUNNING},
            expected_status={S.CREATED},
            expected_executor="node-a",
        )
        is None
    )
    moved = store.update_task(
        task.id,
        {"lifecycle_status": S.RUNNING},
        expected_status={S.ASSIGNING},
        expected_executor="node-a",
    )
    assert moved is not None and moved.lifecycle_status is S.RUNNING
    assert moved.executor == "node-a"
    unassigned = make_task()  # no executor at all never matches an expected one
    store.create_task(unassigned)
    assert store.update_task(unassigned.id, {"priority": 2}, expected_executor="node-a") is None


def test_an_increment_adds_to_the_stored_number(store: Store):
    task = make_task(attempts=2)
    store.create_task(task)
    moved = store.update_task(
        task.id,
        {"lifecycle_status": S.RUNNING, "attempts": Increment(1)},
        expected_status={S.CREATED},
    )
    assert moved is not None and moved.attempts == 3 and moved.lifecycle_status is S.RUNNING
    store.update_task(task.id, {"attempts": Increment(2)})
    got = store.get_task(task.id)
    assert got is not None and got.attempts == 5
    # a refused compare-and-set increments nothing
    assert (
        store.update_task(task.id, {"attempts": Increment(1)}, expected_status={S.CREATED}) is None
    )
    got = store.get_task(task.id)
    assert got is not None and got.attempts == 5
    with pytest.raises(ValueError, match="not a number"):
        store.update_task(task.id, {"class_name": Increment(1)})
    with pytest.raises(TypeError):
        Increment("1")  # type: ignore[arg-type]


def test_concurrent_increments_are_all_counted(store: Store):
    task = make_task()
    store.create_task(task)
    barrier = threading.Barrier(6)

    def bump() -> None:
        barrier.wait()
        for _ in range(5):
            store.update_task(task.id, {"attempts": Increment(1)})

    threads = [threading.Thread(target=bump) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    got = store.get_task(task.id)
    assert got is not None and got.attempts == 30


def test_updating_a_missing_task_raises(store: Store):
    with pytest.raises(TaskNotFoundError):
        store.update_task(new_id("missing"), {"priority": 1})


def test_only_one_of_many_concurrent_compare_and_sets_wins(store: Store):
    task = make_task()
    store.create_task(task)
    winners: list[str] = []
    barrier = threading.Barrier(8)

    def claim(node: str) -> None:
        barrier.wait()
        if store.update_task(
            task.id,
            {"lifecycle_status": S.ASSIGNING, "executor": node},
            expected_status={S.CREATED},
        ):
            winners.append(node)

    threads = [threading.Thread(target=claim, args=(f"node-{i}",)) for i in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(winners) == 1
    got = store.get_task(task.id)
    assert got is not None and got.executor == winners[0]


def test_a_batch_update_changes_each_task_whose_status_matches(store: Store):
    tasks = [make_task() for _ in range(5)]
    for task in tasks:
        store.create_task(task)
    store.update_task(tasks[1].id, {"lifecycle_status": S.CANCELLED})
    ids = [t.id for t in tasks]
    missing = new_id("missing")
    before = store.get_task(tasks[0].id)
    time.sleep(0.002)  # so the update time visibly moves
    changed = store.update_tasks(
        [ids[3], missing, *ids[:3], ids[4]],
        {"lifecycle_status": S.ASSIGNING, "executor": "node-1"},
        expected_status={S.CREATED},
    )
    assert changed == [ids[3], ids[0], ids[2], ids[4]]  # in the order given
    for task_id in changed:
        got = store.get_task(task_id)
        assert got is not None
        assert (got.lifecycle_status, got.executor) == (S.ASSIGNING, "node-1")
    assert got.update_date_time > before.update_date_time
    cancelled = store.get_task(ids[1])
    assert cancelled is not None
    assert (cancelled.lifecycle_status, cancelled.executor) == (S.CANCELLED, None)
    assert store.get_task(missing) is None
    assert store.update_tasks([], {"priority": 1}, expected_status={S.CREATED}) == []
    assert store.update_tasks([ids[0]], {"priority": 1}, expected_status={S.CREATED}) == []


def test_a_batch_update_with_an_invalid_change_changes_nothing(store: Store):
    tasks = [make_task() for _ in range(3)]
    for task in tasks:
        store.create_task(task)
    with pytest.raises(ValueError):
        store.update_tasks([t.id for t in tasks], {"priority": 99}, expected_status={S.CREATED})
    assert [store.get_task(t.id).priority for t in tasks] == [0, 0, 0]


def test_concurrent_batch_updates_give_each_task_to_exactly_one(store: Store):
    """Two dispatchers claiming the same tasks at once: each task is claimed once."""
    ids = [make_task().id for _ in range(12)]
    for task_id in ids:
        store.create_task(make_task(id=task_id))
    claimed: dict[str, list[str]] = {}
    barrier = threading.Barrier(4)

    def claim(node: str, order: list[str]) -> None:
        barrier.wait()
        claimed[node] = store.update_tasks(
            order,
            {"lifecycle_status": S.ASSIGNING, "executor": node},
            expected_status={S.CREATED},
        )

    orders = [ids, ids[::-1], ids[6:] + ids[:6], ids[::2] + ids[1::2]]
    threads = [
        threading.Thread(target=claim, args=(f"node-{i}", order)) for i, order in enumerate(orders)
    ]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    winners = [task_id for got in claimed.values() for task_id in got]
    assert sorted(winners) == sorted(ids)  # every task once, none twice
    for node, got in claimed.items():
        assert all(store.get_task(task_id).executor == node for task_id in got)


def test_compare_and_set_can_require_the_incarnation(store: Store):
    """A node's write names its run: a later run of the task is never changed by it."""
    task = make_task(executor="node-a", lifecycle_status=S.RUNNING, incarnation=3)
    store.create_task(task)
    stale = store.update_task(
        task.id,
        {"lifecycle_status": S.CANCELLED},
        expected_status={S.RUNNING},
        expected_executor="node-a",
        expected_incarnation=2,
    )
    assert stale is None
    assert store.get_task(task.id).lifecycle_status is S.RUNNING
    mine = store.update_task(
        task.id,
        {"lifecycle_status": S.FINISHED},
        expected_status={S.RUNNING},
        expected_executor="node-a",
        expected_incarnation=3,
    )
    assert mine is not None and mine.lifecycle_status is S.FINISHED and mine.incarnation == 3


def test_a_new_task_is_incarnation_0_and_a_placement_adds_one(store: Store):
    task = make_task()
    store.create_task(task)
    assert store.get_task(task.id).incarnation == 0
    placed = store.update_task(
        task.id,
        {"lifecycle_status": S.ASSIGNING, "executor": "node-a", "incarnation": Increment(1)},
        expected_status={S.CREATED},
        expected_incarnation=0,
    )
    assert placed is not None and placed.incarnation == 1
    # the same claim again (a second dispatcher with an old read) is refused
    assert (
        store.update_task(
            task.id,
            {"lifecycle_status": S.ASSIGNING, "executor": "node-b", "incarnation": Increment(1)},
            expected_status={S.CREATED, S.ASSIGNING},
            expected_incarnation=0,
        )
        is None
    )
    assert store.get_task(task.id).executor == "node-a"


def test_a_batch_update_can_require_each_tasks_incarnation(store: Store):
    fresh, requeued, other = (make_task() for _ in range(3))
    for task in (fresh, requeued, other):
        store.create_task(task)
    store.update_task(requeued.id, {"incarnation": 4})
    changed = store.update_tasks(
        [fresh.id, requeued.id, other.id],
        {"lifecycle_status": S.ASSIGNING, "executor": "node-1", "incarnation": Increment(1)},
        expected_status={S.CREATED},
        expected_incarnations={fresh.id: 0, requeued.id: 4, other.id: 7},  # other: stale read
    )
    assert changed == [fresh.id, requeued.id]
    assert store.get_task(fresh.id).incarnation == 1
    assert store.get_task(requeued.id).incarnation == 5
    untouched = store.get_task(other.id)
    assert (untouched.lifecycle_status, untouched.incarnation) == (S.CREATED, 0)


def test_every_change_of_the_attachments_adds_one_to_their_version(store: Store):
    task = make_task(attachments={"rtspUrl": "rtsp://x/1", "fixFrame": 10})
    store.create_task(task)
    assert store.get_task(task.id).attachments_version == 0
    first = store.update_task(task.id, {"attachments": {"rtspUrl": "rtsp://x/1", "fixFrame": 5}})
    assert first is not None and first.attachments_version == 1
    second = store.update_task(
        task.id, {"attachments": CameraParams(rtsp_url="rtsp://x/2", fix_frame=1)}
    )
    assert second is not None and second.attachments_version == 2
    # other changes leave the version alone; the applied version is the node's to write
    store.update_task(task.id, {"priority": 3, "applied_attachments_version": 2})
    got = store.get_task(task.id)
    assert (got.attachments_version, got.applied_attachments_version) == (2, 2)
    # a refused compare-and-set counts nothing
    assert store.update_task(task.id, {"attachments": {}}, expected_status={S.FINISHED}) is None
    assert store.get_task(task.id).attachments_version == 2


def test_concurrent_attachment_changes_each_get_a_version(store: Store):
    task = make_task(attachments={"rtspUrl": "rtsp://x/1", "fixFrame": 1})
    store.create_task(task)
    barrier = threading.Barrier(4)
    versions: list[int] = []
    lock = threading.Lock()

    def change(i: int) -> None:
        barrier.wait()
        for j in range(3):
            got = store.update_task(task.id, {"attachments": {"fixFrame": i * 10 + j}})
            with lock:
                versions.append(got.attachments_version)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sorted(versions) == list(range(1, 13))  # none lost, none shared
    assert store.get_task(task.id).attachments_version == 12


def test_list_filters_by_status_executor_class_and_id_prefix(store: Store):
    prefix = new_id("batch")
    a = make_task(id=f"{prefix}-a", class_name="A", executor="n1")
    b = make_task(id=f"{prefix}-b", class_name="B", executor="n1")
    c = make_task(id=f"{prefix}-c", class_name="A", executor="n2")
    for t in (a, b, c):
        store.create_task(t)
    store.update_task(b.id, {"lifecycle_status": S.RUNNING})

    def ids(**q) -> set[str]:
        return {t.id for t in store.list_tasks(TaskQuery(id_prefix=prefix, **q))}

    assert ids() == {a.id, b.id, c.id}
    assert ids(executor="n1") == {a.id, b.id}
    assert ids(class_name="A") == {a.id, c.id}
    assert ids(statuses={S.RUNNING}) == {b.id}
    assert ids(statuses={S.CREATED}, executor="n2") == {c.id}
    assert store.count_tasks(TaskQuery(id_prefix=prefix, class_name="A")) == 2


def test_list_orders_by_priority_then_age_and_pages(store: Store):
    prefix = new_id("order")
    now = int(time.time() * 1000)
    specs = [
        ("low-old", 1, now - 3000),
        ("high", 9, now - 1000),
        ("low-new", 1, now),
        ("mid", 5, now),
    ]
    for name, prio, created in specs:
        store.create_task(make_task(id=f"{prefix}-{name}", priority=prio, create_date_time=created))
    names = [t.id.removeprefix(prefix + "-") for t in store.list_tasks(TaskQuery(id_prefix=prefix))]
    assert names == ["high", "mid", "low-old", "low-new"]
    page = store.list_tasks(TaskQuery(id_prefix=prefix, offset=1, limit=2))
    assert [t.id.removeprefix(prefix + "-") for t in page] == ["mid", "low-old"]


def test_delete_removes_the_task(store: Store):
    task = make_task()
    store.create_task(task)
    assert store.delete_task(task.id) is True
    assert store.get_task(task.id) is None
    assert store.delete_task(task.id) is False


def test_invalid_changes_are_refused_and_change_nothing(store: Store):
    task = make_task(priority=2)
    store.create_task(task)
    with pytest.raises(ValueError):
        store.update_task(task.id, {"priority": 11})
    got = store.get_task(task.id)
    assert got is not None and got.priority == 2


def test_the_id_of_a_task_cannot_change(store: Store):
    task = make_task()
    store.create_task(task)
    with pytest.raises(ValueError, match="id"):
        store.update_task(task.id, {"id": new_id("other")})
    got = store.get_task(task.id)
    assert got is not None and got.id == task.id


def test_status_queries_follow_every_status_change_and_delete(store: Store):
    prefix = new_id("moves")
    a, b = make_task(id=f"{prefix}-a"), make_task(id=f"{prefix}-b")
    for t in (a, b):
        store.create_task(t)

    def ids(*statuses: S) -> set[str]:
        return {t.id for t in store.list_tasks(TaskQuery(statuses=set(statuses), id_prefix=prefix))}

    store.update_task(a.id, {"lifecycle_status": S.RUNNING}, expected_status={S.CREATED})
    assert (ids(S.CREATED), ids(S.RUNNING)) == ({b.id}, {a.id})
    assert ids(S.CREATED, S.RUNNING) == {a.id, b.id}
    store.update_task(a.id, {"priority": 4})  # a change that keeps the status
    assert ids(S.RUNNING) == {a.id}
    store.delete_task(a.id)
    assert (ids(S.RUNNING), ids(S.CREATED)) == (set(), {b.id})
    assert store.count_tasks(TaskQuery(statuses={S.RUNNING}, id_prefix=prefix)) == 0


def test_count_by_status_counts_every_status_zeros_included(store: Store):
    prefix = new_id("count")
    plan = {S.CREATED: 3, S.RUNNING: 2, S.FINISHED: 1}
    n = 0
    for status, how_many in plan.items():
        for _ in range(how_many):
            n += 1
            store.create_task(make_task(id=f"{prefix}-{n}", executor=f"n{n % 2}"))
            if status is not S.CREATED:
                store.update_task(f"{prefix}-{n}", {"lifecycle_status": status})

    counts = store.count_by_status(TaskQuery(id_prefix=prefix))
    assert counts == {s: plan.get(s, 0) for s in S}
    assert list(counts) == list(S)  # every status, in declaration order
    for status in S:  # the same figures as counting one status at a time
        assert counts[status] == store.count_tasks(TaskQuery(statuses={status}, id_prefix=prefix))


def test_count_by_status_applies_the_filters_and_ignores_paging(store: Store):
    prefix = new_id("countq")
    for i in range(4):
        store.create_task(make_task(id=f"{prefix}-{i}", executor="even" if i % 2 == 0 else "odd"))
    store.update_task(f"{prefix}-0", {"lifecycle_status": S.RUNNING})

    only = store.count_by_status(TaskQuery(statuses={S.RUNNING}, id_prefix=prefix, limit=1))
    assert only == {s: (1 if s is S.RUNNING else 0) for s in S}
    even = store.count_by_status(TaskQuery(executor="even", id_prefix=prefix, offset=5))
    assert (even[S.CREATED], even[S.RUNNING], sum(even.values())) == (1, 1, 2)
    assert sum(store.count_by_status(TaskQuery(id_prefix=new_id("none"))).values()) == 0


def test_the_default_count_by_status_gives_the_same_figures(store: Store):
    """A third-party store without its own ``count_by_status`` inherits a correct one."""
    prefix = new_id("dflt")
    for i, status in enumerate((S.CREATED, S.RUNNING, S.RUNNING, S.FAILED)):
        store.create_task(make_task(id=f"{prefix}-{i}"))
        store.update_task(f"{prefix}-{i}", {"lifecycle_status": status})
    for query in (
        TaskQuery(id_prefix=prefix),
        TaskQuery(id_prefix=prefix, statuses={S.RUNNING, S.FAILED}),
        TaskQuery(id_prefix=prefix, statuses=set()),
    ):
        assert Store.count_by_status(store, query) == store.count_by_status(query)
