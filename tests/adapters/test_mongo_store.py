"""The MongoDB store on a real FerretDB: what is stored, what reads back, what fails how."""

from __future__ import annotations

import logging
import socket
import threading
import time
import uuid
from collections.abc import Iterator

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.errors import (
    BackendUnavailableError,
    ConfigError,
    SkaldsError,
    TaskExistsError,
    TaskNotFoundError,
)
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.plugins import make_backends, make_plugin_manager
from skalds.ports import Increment, TaskQuery
from tests.backends.mongo import require_mongo

S = TaskLifecycleStatus


@pytest.fixture
def url() -> str:
    return require_mongo()


@pytest.fixture
def mstore(url: str) -> Iterator:
    """A MongoStore on a database of its own, dropped afterwards."""
    from skalds_mongo import MongoStore

    store = MongoStore(url, db_name=f"skalds_test_{uuid.uuid4().hex[:10]}")
    yield store
    store.client.drop_database(store.db.name)
    store.close()


@pytest.fixture
def skalds_log() -> Iterator[list[logging.LogRecord]]:
    records: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            records.append(record)

    handler = Keep(level=logging.DEBUG)
    logger = logging.getLogger("skalds")
    logger.addHandler(handler)
    yield records
    logger.removeHandler(handler)


def closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_documents_are_stored_in_the_camel_case_layout(mstore):
    from pydantic import BaseModel, ConfigDict, Field

    class Params(BaseModel):
        model_config = ConfigDict(populate_by_name=True)
        rtsp_url: str = Field(alias="rtspUrl")

    mstore.create_task(
        Task(id="doc-1", class_name="CamWorker", priority=4, attachments=Params(rtsp_url="r"))
    )
    mstore.update_task("doc-1", {"lifecycle_status": S.RUNNING, "executor": "node-a"})
    raw = mstore.db.tasks.find_one({"id": "doc-1"}, {"_id": 0})
    assert raw["className"] == "CamWorker" and raw["lifecycleStatus"] == "Running"
    assert raw["executor"] == "node-a" and raw["attachments"] == {"rtspUrl": "r"}
    assert raw["isPersistent"] is False and raw["mode"] == "Passive"
    for key in ("createDateTime", "updateDateTime", "deadlineDateTime"):
        assert isinstance(raw[key], int) and raw[key] > 1_600_000_000_000  # ms, not datetimes
    assert not any("_" in key for key in raw), raw  # no snake_case keys


def test_a_document_in_the_old_skalds_layout_reads_back_and_keeps_unknown_fields(mstore):
    # What Skalds 0.x's TaskRepository wrote: model_dump(by_alias=True) of its Task,
    # without errorMessage, plus a field this version does not know.
    mstore.db.tasks.insert_one(
        {
            "id": "task_123",
            "className": "MySimpleWorker",
            "source": "TestingScript",
            "name": None,
            "description": None,
            "executor": "skald_123",
            "dependencies": None,
            "mode": "Passive",
            "createDateTime": 1735689600000,
            "updateDateTime": 1735689600000,
            "deadlineDateTime": 1736294400000,
            "lifecycleStatus": "Running",
            "isPersistent": False,
            "priority": 0,
            "attachments": {"rtspUrl": "rtsp://example.com/stream", "fixFrame": 10},
            "legacyNote": "kept",
        }
    )
    task = mstore.get_task("task_123")
    assert task is not None and task.lifecycle_status is S.RUNNING
    assert task.create_date_time == 1735689600000 and task.executor == "skald_123"
    assert task.attachments == {"rtspUrl": "rtsp://example.com/stream", "fixFrame": 10}
    assert [t.id for t in mstore.list_tasks(TaskQuery(executor="skald_123"))] == ["task_123"]
    moved = mstore.update_task(
        "task_123", {"lifecycle_status": S.PAUSED}, expected_status={S.RUNNING}
    )
    assert moved is not None and moved.lifecycle_status is S.PAUSED
    assert mstore.db.tasks.find_one({"id": "task_123"})["legacyNote"] == "kept"


@pytest.mark.parametrize("locks", [True, False], ids=["write-locks", "atomic"])
def test_documents_written_before_incarnations_are_incarnation_0(url, locks):
    """Tasks stored by earlier versions have no incarnation or attachments version:
    they count as 0, a node's fenced write finds them, and a placement adds one."""
    from skalds_mongo import MongoStore

    store = MongoStore(url, db_name=f"skalds_test_{uuid.uuid4().hex[:10]}", write_locks=locks)
    try:
        for task_id in ("old-1", "old-2", "old-3"):
            store.db.tasks.insert_one(
                {
                    "_id": task_id,
                    "id": task_id,
                    "className": "MySimpleWorker",
                    "executor": "skald_123" if task_id == "old-1" else None,
                    "lifecycleStatus": "Running" if task_id == "old-1" else "Created",
                    "createDateTime": 1735689600000,
                    "updateDateTime": 1735689600000,
                    "attachments": {"fixFrame": 10},
                }
            )
        old = store.get_task("old-1")
        assert (old.incarnation, old.attachments_version) == (0, 0)
        assert (
            store.update_task(
                "old-1",
                {"lifecycle_status": S.FINISHED},
                expected_status={S.RUNNING},
                expected_executor="skald_123",
                expected_incarnation=1,
            )
            is None
        )
        done = store.update_task(
            "old-1",
            {"lifecycle_status": S.FINISHED, "attachments": {"fixFrame": 3}},
            expected_status={S.RUNNING},
            expected_executor="skald_123",
            expected_incarnation=0,
        )
        assert done is not None and done.lifecycle_status is S.FINISHED
        assert done.attachments_version == 1
        placed = store.update_tasks(
            ["old-2", "old-3"],
            {"lifecycle_status": S.ASSIGNING, "executor": "n1", "incarnation": Increment(1)},
            expected_status={S.CREATED},
            expected_incarnations={"old-2": 0, "old-3": 1},
        )
        assert placed == ["old-2"]
        assert store.get_task("old-2").incarnation == 1
        assert store.get_task("old-3").lifecycle_status is S.CREATED
    finally:
        store.client.drop_database(store.db.name)
        store.close()


def test_the_indexes_exist_and_creating_them_again_changes_nothing(mstore, url):
    from skalds_mongo import MongoStore

    mstore.ensure_indexes()
    indexes = mstore.db.tasks.index_information()
    keys = {tuple(ix["key"]): ix.get("unique", False) for ix in indexes.values()}
    assert keys[(("id", 1),)] is True
    assert (("executor", 1), ("lifecycleStatus", 1)) in keys
    assert (("lifecycleStatus", 1), ("priority", -1)) in keys
    again = MongoStore(url, db_name=mstore.db.name)
    again.ensure_indexes()
    assert again.db.tasks.index_information() == indexes
    again.close()


@pytest.mark.parametrize("prefix", [".*", "a[(", "^$", "a.b", "(?i)A", "\\", "ü😀"])
def test_a_hostile_id_prefix_matches_literally(mstore, prefix):
    ids = [f"{prefix}-1", f"{prefix}{chr(0x10FFFF)}", "a", "ab", "a[", "x.*", "A", "ü", "😀"]
    for task_id in dict.fromkeys(ids):
        mstore.create_task(Task(id=task_id, class_name="W"))
    found = {t.id for t in mstore.list_tasks(TaskQuery(id_prefix=prefix))}
    assert found == {i for i in ids if i.startswith(prefix)}
    assert mstore.count_tasks(TaskQuery(id_prefix=prefix)) == len(found)


def test_filter_values_can_never_be_query_operators(mstore):
    mstore.create_task(Task(id="victim", class_name="W"))
    with pytest.raises(TypeError):
        mstore.delete_task({"$ne": None})  # type: ignore[arg-type]
    with pytest.raises(TypeError):
        mstore.list_tasks(TaskQuery(executor={"$ne": None}))  # type: ignore[arg-type]
    assert mstore.get_task("victim") is not None


def test_an_invalid_document_fails_only_that_task(mstore, skalds_log):
    mstore.create_task(Task(id="inv-good", class_name="W", priority=1))
    mstore.db.tasks.insert_one({"id": "inv-bad", "lifecycleStatus": "Created", "priority": 5})
    listed = mstore.list_tasks(TaskQuery(id_prefix="inv-"))
    assert [t.id for t in listed] == ["inv-good"]
    assert any("inv-bad" in r.getMessage() and "className" in r.getMessage() for r in skalds_log)
    with pytest.raises(SkaldsError, match=r"'inv-bad'.*className"):
        mstore.get_task("inv-bad")
    assert mstore.get_task("inv-good") is not None
    assert mstore.count_tasks(TaskQuery(id_prefix="inv-")) == 2  # counted, not hidden


def test_invalid_changes_raise_before_anything_is_written(mstore):
    mstore.create_task(Task(id="chg", class_name="W"))
    before = mstore.db.tasks.find_one({"id": "chg"})
    for bad in ({"priority": 11}, {"lifecycle_status": "Exploded"}, {"no_such_field": 1}):
        with pytest.raises(ValueError):
            mstore.update_task("chg", bad)
    with pytest.raises(ValueError, match="id"):
        mstore.update_task("chg", {"id": "other"})
    assert mstore.db.tasks.find_one({"id": "chg"}) == before


def test_a_status_mismatch_is_none_and_a_missing_task_raises(mstore):
    mstore.create_task(Task(id="cas", class_name="W"))
    assert mstore.update_task("cas", {"priority": 3}, expected_status={S.RUNNING}) is None
    assert mstore.update_task("cas", {"priority": 3}, expected_status=set()) is None
    assert mstore.get_task("cas").priority == 0
    with pytest.raises(TaskNotFoundError, match="nope"):
        mstore.update_task("nope", {"priority": 3}, expected_status={S.CREATED})


def run_together(fn, args: list[tuple]) -> None:
    """Run ``fn(*a)`` for each ``a`` in its own thread, all released at once."""
    barrier = threading.Barrier(len(args))

    def run(*a) -> None:
        barrier.wait()
        fn(*a)

    threads = [threading.Thread(target=run, args=a) for a in args]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def test_concurrent_updates_of_different_fields_all_survive(either_store):
    """FerretDB rewrites whole documents; write locks (or its atomic writes) keep every change."""
    mstore = either_store
    mstore.create_task(Task(id="many", class_name="W"))
    changes = [{"priority": 7}, {"name": "n"}, {"description": "d"}, {"executor": "e"}]
    for _ in range(5):
        run_together(lambda change: mstore.update_task("many", change), [(c,) for c in changes])
        got = mstore.get_task("many")
        assert (got.priority, got.name, got.description, got.executor) == (7, "n", "d", "e")
        mstore.update_task("many", {"priority": 0, "name": None, "description": None})


def test_repeated_concurrent_claims_have_exactly_one_winner(either_store):
    mstore = either_store
    for round_no in range(10):
        task_id = f"claim-{round_no}"
        mstore.create_task(Task(id=task_id, class_name="W"))
        winners: list[str] = []

        def claim(task_id: str, node: str, winners: list[str] = winners) -> None:
            if mstore.update_task(
                task_id,
                {"lifecycle_status": S.ASSIGNING, "executor": node},
                expected_status={S.CREATED},
            ):
                winners.append(node)

        run_together(claim, [(task_id, f"n{i}") for i in range(8)])
        assert len(winners) == 1
        assert mstore.get_task(task_id).executor == winners[0]
    assert list(mstore.db.tasks_locks.find()) == []  # every lock was released


def test_an_unreachable_server_fails_quickly_naming_its_address():
    from skalds_mongo import MongoStore

    port = closed_port()
    store = MongoStore(f"mongodb://user:s3cret@127.0.0.1:{port}/", server_selection_timeout_ms=300)
    started = time.monotonic()
    with pytest.raises(BackendUnavailableError) as info:
        store.get_task("t")
    assert time.monotonic() - started < 3
    message = str(info.value)
    assert f"127.0.0.1:{port}" in message and "s3cret" not in message and "\n" not in message
    assert store.ping() is False
    store.close()


def test_the_plugin_builds_the_store_for_mongodb_urls(url):
    from skalds_mongo import MongoStore
    from skalds_mongo.plugin import skalds_make_store

    db = f"skalds_test_{uuid.uuid4().hex[:10]}"
    backends = make_backends(make_plugin_manager(), SkaldConfig(store_url=url, db_name=db))
    try:
        assert isinstance(backends.store, MongoStore) and backends.store.db.name == db
        assert backends.store.ping()
    finally:
        backends.store.client.drop_database(db)
        backends.close()
    assert skalds_make_store(url="redis://127.0.0.1:6379/0", config=SkaldConfig()) is None
    srv = skalds_make_store(url="mongodb+srv://user:pw@cluster.example/app", config=SkaldConfig())
    assert isinstance(srv, MongoStore) and "pw" not in srv.address


def test_mongo_write_locks_follow_the_environment(monkeypatch, url):
    from skalds_mongo.plugin import skalds_make_store

    def locks() -> bool:
        store = skalds_make_store(url=url, config=SkaldConfig())
        try:
            return store.uses_write_locks()
        finally:
            store.close()

    monkeypatch.delenv("MONGO_WRITE_LOCKS", raising=False)
    assert locks() is True  # auto: the test server is FerretDB
    monkeypatch.setenv("MONGO_WRITE_LOCKS", "off")
    assert locks() is False
    monkeypatch.setenv("MONGO_WRITE_LOCKS", "ON")
    assert locks() is True
    monkeypatch.setenv("MONGO_WRITE_LOCKS", "sometimes")
    with pytest.raises(
        ConfigError, match=r"MONGO_WRITE_LOCKS='sometimes': use one of auto, on, off"
    ):
        skalds_make_store(url=url, config=SkaldConfig())


def test_the_database_is_the_configs_then_the_urls_then_skalds():
    from skalds_mongo.plugin import skalds_make_store

    def db_of(url: str, **config) -> str:
        store = skalds_make_store(url=url, config=SkaldConfig(**config))
        store.close()
        return store.db.name

    assert db_of("mongodb://127.0.0.1:27017/") == "skalds"
    assert db_of("mongodb://127.0.0.1:27017/fromurl") == "fromurl"
    assert db_of("mongodb://127.0.0.1:27017/fromurl", db_name="fromconfig") == "fromconfig"


def test_a_write_lock_held_elsewhere_makes_an_update_wait_then_give_up(url):
    from skalds_mongo import MongoStore, TaskLockTimeoutError

    store = MongoStore(
        url,
        db_name=f"skalds_test_{uuid.uuid4().hex[:10]}",
        write_locks=True,
        lock_wait_seconds=0.3,
    )
    try:
        store.create_task(Task(id="held", class_name="W"))
        far = int(time.time() * 1000) + 60_000
        store.db.tasks_locks.insert_one({"_id": "held", "owner": "other", "expiresAt": far})
        started = time.monotonic()
        with pytest.raises(TaskLockTimeoutError, match="'held'"):
            store.update_task("held", {"priority": 1})
        assert 0.3 <= time.monotonic() - started < 2
        assert store.get_task("held").priority == 0
    finally:
        store.client.drop_database(store.db.name)
        store.close()


def test_an_expired_write_lock_of_a_dead_writer_is_taken_over(url, skalds_log):
    from skalds_mongo import MongoStore

    store = MongoStore(url, db_name=f"skalds_test_{uuid.uuid4().hex[:10]}", write_locks=True)
    try:
        store.create_task(Task(id="orphan", class_name="W"))
        past = int(time.time() * 1000) - 1
        store.db.tasks_locks.insert_one({"_id": "orphan", "owner": "dead", "expiresAt": past})
        moved = store.update_task(
            "orphan", {"lifecycle_status": S.ASSIGNING}, expected_status={S.CREATED}
        )
        assert moved is not None and moved.lifecycle_status is S.ASSIGNING
        assert any("expired" in r.getMessage() and "orphan" in r.getMessage() for r in skalds_log)
        assert list(store.db.tasks_locks.find()) == []
    finally:
        store.client.drop_database(store.db.name)
        store.close()


def test_a_new_task_is_stored_under_its_id_as_the_document_id(mstore):
    mstore.create_task(Task(id="keyed", class_name="W"))
    raw = mstore.db.tasks.find_one({"_id": "keyed"})
    assert raw is not None and raw["id"] == "keyed"  # the public field stays


@pytest.fixture(params=[True, False], ids=["write-locks", "server-atomic"])
def either_store(request: pytest.FixtureRequest, url: str) -> Iterator:
    """A MongoStore updating under write locks (FerretDB's way) or by the server alone."""
    from skalds_mongo import MongoStore

    store = MongoStore(
        url, db_name=f"skalds_test_{uuid.uuid4().hex[:10]}", write_locks=request.param
    )
    yield store
    store.client.drop_database(store.db.name)
    store.close()


def insert_old_document(store, task_id: str, status: str = "Created") -> None:
    """Insert as earlier Skalds versions and scripts did: the server picks an ObjectId."""
    doc = Task(id=task_id, class_name="W", lifecycle_status=status).to_document()
    store.db.tasks.insert_one(doc)


def test_documents_with_an_objectid_are_read_updated_and_deleted_by_their_id(either_store):
    store = either_store
    insert_old_document(store, "old-1")
    assert store.get_task("old-1") is not None
    moved = store.update_task("old-1", {"lifecycle_status": S.RUNNING}, expected_status={S.CREATED})
    assert moved is not None and moved.lifecycle_status is S.RUNNING
    assert store.update_task("old-1", {"priority": 5}, expected_status={S.CREATED}) is None
    assert store.get_task("old-1").priority == 0  # a mismatch writes nothing
    assert store.count_by_status(TaskQuery(id_prefix="old-"))[S.RUNNING] == 1
    with pytest.raises(TaskExistsError):
        store.create_task(Task(id="old-1", class_name="W"))  # the unique id index still holds
    assert store.delete_task("old-1") is True
    assert store.get_task("old-1") is None and store.delete_task("old-1") is False
    with pytest.raises(TaskNotFoundError):
        store.update_task("old-1", {"priority": 1}, expected_status={S.RUNNING})


def test_compare_and_set_tells_a_status_mismatch_from_a_missing_task(either_store):
    store = either_store
    store.create_task(Task(id="new-1", class_name="W"))
    assert store.update_task("new-1", {"priority": 3}, expected_status={S.RUNNING}) is None
    assert store.update_task("new-1", {"priority": 3}, expected_status=set()) is None
    moved = store.update_task("new-1", {"priority": 3}, expected_status={S.CREATED, S.PAUSED})
    assert moved is not None and moved.priority == 3
    with pytest.raises(TaskNotFoundError, match="absent"):
        store.update_task("absent", {"priority": 3}, expected_status={S.CREATED})
    with pytest.raises(TaskNotFoundError, match="absent"):
        store.update_task("absent", {"priority": 3})


def test_a_document_whose_objectid_slot_holds_another_id_is_not_that_task(either_store):
    # Put there by hand: _id "twin" but the task "other". The task "twin" is elsewhere.
    store = either_store
    store.db.tasks.insert_one({"_id": "twin", **Task(id="other", class_name="W").to_document()})
    assert store.get_task("twin") is None
    with pytest.raises(TaskNotFoundError):
        store.update_task("twin", {"priority": 1})
    assert store.delete_task("twin") is False
    insert_old_document(store, "twin", status="Running")
    got = store.get_task("twin")
    assert got is not None and got.id == "twin" and got.lifecycle_status is S.RUNNING
    assert store.update_task("twin", {"priority": 2}).priority == 2
    assert store.get_task("other").priority == 0
    assert store.delete_task("twin") is True and store.get_task("other") is not None


def test_count_by_status_leaves_out_documents_of_no_known_status(mstore):
    mstore.create_task(Task(id="cbs-1", class_name="W"))
    mstore.db.tasks.insert_one({"id": "cbs-2", "className": "W", "lifecycleStatus": "Weird"})
    mstore.db.tasks.insert_one({"id": "cbs-3", "className": "W"})
    counts = mstore.count_by_status(TaskQuery(id_prefix="cbs-"))
    assert counts == {s: (1 if s is S.CREATED else 0) for s in S}


def test_a_batch_update_reports_only_the_tasks_it_changed(either_store):
    """Old-layout documents take part; a task already holding the values is not claimed."""
    store = either_store
    for task_id in ("b-1", "b-3"):
        store.create_task(Task(id=task_id, class_name="W"))
    insert_old_document(store, "b-old")
    store.create_task(Task(id="b-2", class_name="W", lifecycle_status=S.ASSIGNING, executor="n1"))
    store.db.tasks.insert_one({"_id": "b-twin", **Task(id="b-other", class_name="W").to_document()})
    changed = store.update_tasks(
        ["b-1", "b-2", "b-old", "b-twin", "b-3"],
        {"lifecycle_status": S.ASSIGNING, "executor": "n1"},
        expected_status={S.CREATED},
    )
    # b-2 already was Assigning on n1 (someone else's claim); b-twin is no task of that id
    assert changed == ["b-1", "b-old", "b-3"]
    for task_id in changed:
        got = store.get_task(task_id)
        assert (got.lifecycle_status, got.executor) == (S.ASSIGNING, "n1")
    assert store.get_task("b-other").lifecycle_status is S.CREATED
