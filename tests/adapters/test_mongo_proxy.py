"""The seed API on FerretDB: ``MongoConfig``, ``MongoProxy`` and ``TaskRepository``."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import pytest

from skalds.errors import ConfigError
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.repository.repository import TaskRepository
from tests.backends.mongo import require_mongo
from tests.seeds.node_update.my_simple_worker import MySimpleDataModel, MySimpleWorker

S = TaskLifecycleStatus
SEED_HOST = "mongodb://root:root@localhost:27017/"  # verbatim from the seed scripts


@pytest.fixture
def proxy() -> Iterator:
    from skalds.proxy.mongo import MongoConfig, MongoProxy

    url = require_mongo()
    mongo_proxy = MongoProxy(
        mongo_config=MongoConfig(host=url, db_name=f"skalds_test_{uuid.uuid4().hex[:10]}")
    )
    yield mongo_proxy
    mongo_proxy.client.drop_database(mongo_proxy.db.name)
    mongo_proxy.close()


def test_the_adapter_exports_what_we_mean():
    import skalds.proxy.mongo
    import skalds_mongo

    assert sorted(skalds_mongo.__all__) == [
        "MongoConfig",
        "MongoProxy",
        "MongoStore",
        "MongoStoreError",
        "TaskDocumentError",
        "TaskLockTimeoutError",
    ]
    assert skalds.proxy.mongo.MongoProxy is skalds_mongo.MongoProxy
    assert skalds.proxy.mongo.MongoConfig is skalds_mongo.MongoConfig


def test_the_seed_scripts_flow_through_task_repository(proxy):
    task_rep = TaskRepository(proxy)
    task = Task(
        id="task_123",
        class_name=MySimpleWorker.__name__,
        source="TestingScript",
        attachments=MySimpleDataModel(rtspUrl="rtsp://example.com/stream", fixFrame=10),
    )
    task_rep.create_task(task)
    task_rep.update_executor(task.id, "skald_123")
    got = task_rep.get_task_by_task_id("task_123")
    assert got is not None and got.executor == "skald_123"
    assert got.attachments == {"rtspUrl": "rtsp://example.com/stream", "fixFrame": 10}

    task_rep.update_attachments(
        "task_123", MySimpleDataModel(rtspUrl="rtsp://example.com/new_stream", fixFrame=60)
    )
    raw = proxy.db.tasks.find_one({"id": "task_123"})  # what scripts reading Mongo see
    assert raw["attachments"] == {"rtspUrl": "rtsp://example.com/new_stream", "fixFrame": 60}
    assert raw["executor"] == "skald_123" and raw["className"] == "MySimpleWorker"

    moved = task_rep.update_lifecycle_status("task_123", S.ASSIGNING, expected_status=[S.CREATED])
    assert moved is not None and moved.lifecycle_status is S.ASSIGNING
    assert task_rep.update_lifecycle_status("task_123", S.RUNNING, [S.CREATED]) is None
    assert [t.id for t in task_rep.get_tasks_by_executor("skald_123")] == ["task_123"]
    assert task_rep.delete_task("task_123") is True


def test_mongo_config_defaults_and_database_choice(monkeypatch):
    from pydantic import ValidationError

    from skalds_mongo import MongoConfig

    monkeypatch.delenv("DB_NAME", raising=False)
    assert MongoConfig().host == SEED_HOST
    assert MongoConfig().resolved_db_name() == "skalds"
    assert MongoConfig(host="mongodb://h:27017/fromurl").resolved_db_name() == "fromurl"
    given = MongoConfig(host="mongodb://h:27017/fromurl", db_name="given")
    assert given.resolved_db_name() == "given"
    monkeypatch.setenv("DB_NAME", "fromenv")
    assert MongoConfig().resolved_db_name() == "fromenv"
    with pytest.raises(ValidationError):
        MongoConfig(hots="typo")  # type: ignore[call-arg]


def test_the_seed_url_works_or_says_exactly_how_to_connect():
    """``mongodb://root:root@localhost:27017/`` as the seeds write it.

    FerretDB started with ``SKALDS_FERRETDB_AUTH=root:root`` accepts it unchanged. A
    FerretDB without authentication refuses the SCRAM login pymongo attempts; the
    error then names the server and the URLs that work, and one of them does.
    """
    from skalds_mongo import MongoConfig, MongoProxy

    require_mongo()
    db_name = f"skalds_test_{uuid.uuid4().hex[:10]}"
    proxy = MongoProxy(mongo_config=MongoConfig(host=SEED_HOST, db_name=db_name))
    try:
        assert TaskRepository(proxy).get_task_by_task_id("task_123") is None
        proxy.client.drop_database(db_name)
        return  # FerretDB with authentication: the seeds run unchanged
    except ConfigError as exc:
        message = str(exc)
    finally:
        proxy.close()
    assert "localhost:27017" in message and "root:root" not in message
    assert "authMechanism=PLAIN" in message and "leave user and password out" in message
    plain = MongoProxy(
        mongo_config=MongoConfig(host=SEED_HOST + "?authMechanism=PLAIN", db_name=db_name)
    )
    try:
        assert TaskRepository(plain).get_task_by_task_id("task_123") is None
        plain.client.drop_database(db_name)
    finally:
        plain.close()
