"""The names users already type (seed import paths) exist and mean what they should."""

from __future__ import annotations

import importlib

import pytest

import skalds


def test_top_level_names():
    from skalds import Skald, SkaldConfig, Skalds, SkaldsError, hookimpl

    assert Skalds is Skald
    assert SkaldConfig.__name__ == "SkaldConfig"
    assert issubclass(SkaldsError, Exception)
    assert callable(hookimpl)
    assert sorted(skalds.__all__) == sorted(
        ["SkaldConfig", "Skald", "Skalds", "SkaldsError", "__version__", "hookimpl"]
    )


def test_seed_import_paths():
    from skalds.config.skald_config import SkaldConfig
    from skalds.model.event import TaskEvent, UpdateTaskWorkerEvent
    from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
    from skalds.repository.repository import TaskRepository
    from skalds.utils.logging import logger
    from skalds.worker.baseclass import (
        AbstractTaskWorker,
        BaseTaskWorker,
        release_handler,
        run_after_handler,
        run_before_handler,
        run_main_handler,
        update_event_handler,
    )

    assert issubclass(BaseTaskWorker, AbstractTaskWorker)
    for decorator in (
        run_before_handler,
        run_main_handler,
        run_after_handler,
        release_handler,
        update_event_handler,
    ):
        assert callable(decorator)
    assert logger.name == "skalds"
    assert {m.value for m in ModeEnum} == {"Active", "Passive", "PassiveProcess"}
    assert [s.value for s in TaskLifecycleStatus] == [
        "Created",
        "Assigning",
        "Running",
        "Paused",
        "Finished",
        "Failed",
        "Cancelled",
    ]
    assert SkaldConfig().skald_mode == "node"
    assert {Task, TaskEvent, UpdateTaskWorkerEvent, TaskRepository}


def test_task_defaults_and_storage_form_match_the_seeds():
    from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus

    task = Task(id="task_123", class_name="MyWorker", source="TestingScript")
    assert task.lifecycle_status is TaskLifecycleStatus.CREATED
    assert task.mode is ModeEnum.PASSIVE and task.priority == 0 and task.is_persistent is False
    assert isinstance(task.create_date_time, int) and task.create_date_time > 1_600_000_000_000
    doc = task.to_document()
    assert {
        "id",
        "className",
        "lifecycleStatus",
        "createDateTime",
        "updateDateTime",
        "deadlineDateTime",
        "isPersistent",
        "priority",
        "attachments",
    } <= set(doc)
    assert doc["lifecycleStatus"] == "Created" and doc["className"] == "MyWorker"


def test_task_event_accepts_field_names_and_serialises_by_alias():
    from skalds.model.event import TaskEvent

    event = TaskEvent(task_ids=["task_123"], recipient="skald_123")
    assert '"taskIds":["task_123"]' in event.model_dump_json()
    assert TaskEvent.model_validate_json(event.model_dump_json()).task_ids == ["task_123"]


def test_update_event_attachments_must_be_a_model():
    from pydantic import BaseModel, ValidationError

    from skalds.model.event import UpdateTaskWorkerEvent

    class M(BaseModel):
        x: int

    assert UpdateTaskWorkerEvent(attachments=M(x=1)).attachments == M(x=1)
    with pytest.raises(ValidationError, match="must be a Pydantic BaseModel instance"):
        UpdateTaskWorkerEvent(attachments={"x": 1})


@pytest.mark.parametrize(
    ("module", "extra", "names"),
    [
        ("skalds.proxy.kafka", "kafka", ["KafkaConfig", "KafkaProxy", "KafkaTopic", "KafkaAdmin"]),
        ("skalds.proxy.redis", "redis", ["RedisConfig", "RedisProxy"]),
        ("skalds.proxy.mongo", "mongo", ["MongoConfig", "MongoProxy"]),
    ],
)
def test_service_proxies_exist_or_say_which_extra_to_install(module, extra, names):
    try:
        mod = importlib.import_module(module)
    except ImportError as exc:
        assert f'pip install "skalds[{extra}]"' in str(exc)
    else:
        for name in names:
            assert hasattr(mod, name)


def test_errors_share_one_root():
    from skalds import errors

    for name in errors.__all__:
        assert issubclass(getattr(errors, name), errors.SkaldsError), name


@pytest.mark.parametrize(
    ("module", "adapter", "extra"),
    [
        ("skalds.proxy.kafka", "skalds_kafka.proxy", "kafka"),
        ("skalds.proxy.redis", "skalds_redis.proxy", "redis"),
        ("skalds.proxy.mongo", "skalds_mongo.proxy", "mongo"),
    ],
)
def test_a_missing_adapter_names_the_extra_to_install(monkeypatch, module, adapter, extra):
    import sys

    monkeypatch.setitem(sys.modules, adapter, None)  # as if the adapter were not installed
    monkeypatch.delitem(sys.modules, module, raising=False)
    with pytest.raises(ImportError) as info:
        importlib.import_module(module)
    assert str(info.value).endswith(f'support needs: pip install "skalds[{extra}]"')
