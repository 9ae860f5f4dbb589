"""Configuration sources and the per-worker log files."""

from __future__ import annotations

import json
import logging

from skalds.config.skald_config import SkaldConfig
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.ports import Topic
from skalds.utils.logging import worker_log_path
from tests.helpers import wait_for
from tests.workers import ProbeWorker


def test_seed_fields_come_from_env_vars(monkeypatch):
    monkeypatch.setenv("SKALD_MODE", "edge")
    monkeypatch.setenv("SKALD_ID", "edge-7")
    monkeypatch.setenv("YAML_FILE", "w.yml")
    monkeypatch.setenv("LOG_LEVEL", "debug")
    monkeypatch.setenv("KAFKA_HOST", "10.0.0.5")
    monkeypatch.setenv("REDIS_HOST", "cache.local")
    monkeypatch.setenv("MONGO_HOST", "mongodb://root:root@db:27017/")
    cfg = SkaldConfig()
    assert (cfg.skald_mode, cfg.skald_id, cfg.yaml_file, cfg.log_level) == (
        "edge",
        "edge-7",
        "w.yml",
        "DEBUG",
    )
    assert cfg.resolved_event_bus_url() == "kafka://10.0.0.5:9092"
    assert cfg.resolved_cache_url() == "redis://cache.local:6379/0"
    assert cfg.resolved_store_url() == "mongodb://root:root@db:27017/"


def test_arguments_win_over_env_and_env_wins_over_dotenv(monkeypatch, tmp_path):
    (tmp_path / ".env").write_text("SKALD_ID=from-dotenv\nREDIS_PORT=7000\n")
    monkeypatch.chdir(tmp_path)
    assert SkaldConfig().skald_id == "from-dotenv"
    monkeypatch.setenv("SKALD_ID", "from-env")
    assert SkaldConfig().skald_id == "from-env"
    assert SkaldConfig(skald_id="from-arg").skald_id == "from-arg"
    assert SkaldConfig().redis_port == 7000


def test_no_hosts_means_embedded_backends():
    cfg = SkaldConfig()
    assert (
        cfg.resolved_event_bus_url()
        == cfg.resolved_cache_url()
        == cfg.resolved_store_url()
        == "memory://"
    )


def test_explicit_urls_override_host_fields(monkeypatch):
    monkeypatch.setenv("SKALDS_EVENT_BUS", "memory://bus-a")
    cfg = SkaldConfig(kafka_host="x")
    assert cfg.resolved_event_bus_url() == "memory://bus-a"


def test_redis_password_is_put_in_the_url_safely():
    cfg = SkaldConfig(redis_host="h", redis_password="p@ss/word", redis_username="u")
    assert cfg.resolved_cache_url() == "redis://u:p%40ss%2Fword@h:6379/0"


def test_generated_ids_differ_and_bad_ids_are_refused():
    import pytest
    from pydantic import ValidationError

    assert SkaldConfig().skald_id != SkaldConfig().skald_id
    with pytest.raises(ValidationError, match="skald_id"):
        SkaldConfig(skald_id="has space")


def test_each_worker_logs_to_its_own_file_findable_from_its_task_id(skalds_node_factory, tmp_path):
    logs = tmp_path / "worker-logs"
    node = skalds_node_factory(
        workers=[ProbeWorker], log_split_with_worker_id=True, log_path=str(logs)
    )
    for task_id in ("cam/1", "cam-2"):
        node.store.create_task(
            Task(
                id=task_id,
                class_name="ProbeWorker",
                executor=node.skald_id,
                attachments={"traceFile": str(tmp_path / "t"), "mainSeconds": 30},
            )
        )
        node.event_bus.publish(
            Topic.TASK_ASSIGN, task_id, TaskEvent(task_ids=[task_id]).model_dump_json()
        )
    wait_for(lambda: {"cam/1", "cam-2"} <= set(node.supervisor.tasks))
    node.update_task(
        "cam-2", {"traceFile": str(tmp_path / "t"), "label": "hello", "mainSeconds": 30}
    )
    path = worker_log_path(logs, "cam-2")
    wait_for(lambda: path.exists() and "probe updated: label=hello" in path.read_text())
    assert path.parent == logs and worker_log_path(logs, "cam/1").name == "cam_1.log"

    def published() -> dict[str, str]:
        info = json.loads(node.cache.get(keys.skald_info(node.skald_id)) or "{}")
        return {t["id"]: t["logFile"] for t in info.get("tasks", [])}

    wait_for(lambda: "cam-2" in published(), timeout=5)
    assert published()["cam-2"] == str(path.resolve())  # findable from the task id
    text = path.read_text()
    assert f"[{node.skald_id}/cam-2]" in text
    assert "label=hello" not in worker_log_path(logs, "cam/1").read_text()
    node.cancel_task("cam-2")
    wait_for(lambda: node.store.get_task("cam-2").lifecycle_status is TaskLifecycleStatus.CANCELLED)


def test_worker_log_files_rotate(tmp_path):
    from skalds.utils.logging import configure_worker_logging, logger

    log_file = tmp_path / "rot.log"
    configure_worker_logging("t/rot", str(log_file), rotation_mb=1, retention=2)
    try:
        old = logger.level
        logger.setLevel(logging.INFO)
        for _ in range(3000):
            logger.info("x" * 1000)
        files = sorted(p.name for p in tmp_path.iterdir())
        assert files == ["rot.log", "rot.log.1", "rot.log.2"]
        assert log_file.stat().st_size <= 1024 * 1024
    finally:
        configure_worker_logging("skalds", None)
        logger.setLevel(old)


def test_print_output_of_a_worker_lands_in_its_log_file(skalds_node_factory, tmp_path):
    from tests.seeds.intro_my_worker import MyWorker

    logs = tmp_path / "logs"
    node = skalds_node_factory(
        workers=[MyWorker], log_split_with_worker_id=True, log_path=str(logs)
    )
    node.store.create_task(
        Task(
            id="printer",
            class_name="MyWorker",
            executor=node.skald_id,
            attachments={"rtspUrl": "rtsp://cam/7", "fixFrame": 3},
        )
    )
    node.event_bus.publish(
        Topic.TASK_ASSIGN, "printer", TaskEvent(task_ids=["printer"]).model_dump_json()
    )
    path = worker_log_path(logs, "printer")
    wait_for(lambda: path.exists() and "RTSP URL: rtsp://cam/7, Fix Frame: 3" in path.read_text())
    text = path.read_text()
    assert text.count("Starting MyWorker with RTSP URL: rtsp://cam/7") == 1  # not duplicated
