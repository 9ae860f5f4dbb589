"""Benchmarks on the real services (Kafka, Redis, FerretDB on loopback).

Used by ``python bench/run.py --json --services``; the services come from
``scripts/services up`` and the adapters must be installed.
"""

from __future__ import annotations

import statistics
import tempfile
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from bench_workers import IdleWorker
from service_urls import CACHE_URL, EVENT_BUS_URL, mongo_url, require_services

from skalds.config.skald_config import SkaldConfig
from skalds.model.event import TaskEvent
from skalds.model.task import Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.node.skald import Skald
from skalds.plugins import make_backends, make_plugin_manager
from skalds.ports import BusMessage, HashSet, ListSet, Set, Topic

S = TaskLifecycleStatus


def _config(**extra: Any) -> SkaldConfig:
    return SkaldConfig(
        event_bus_url=EVENT_BUS_URL,
        cache_url=CACHE_URL,
        store_url=mongo_url(),
        db_name=f"skalds_bench_{uuid.uuid4().hex[:8]}",
        log_level="ERROR",
        **extra,
    )


def bus_event_ms(rounds: int, pct: Any) -> dict[str, float]:
    """publish() called → subscriber's handler entered, through Kafka."""
    pm = make_plugin_manager()
    backends = make_backends(pm, _config())
    bus = backends.event_bus
    topic = f"bench.{uuid.uuid4().hex[:8]}"
    bus.ensure_topics([topic])
    got: dict[str, float] = {}
    arrived = threading.Event()

    def handler(msg: BusMessage) -> None:
        got[msg.value.decode()] = time.monotonic()
        arrived.set()

    sub = bus.subscribe([topic], handler, group=f"bench-{uuid.uuid4().hex[:8]}")
    sent: dict[str, float] = {}
    try:
        for i in range(rounds):
            arrived.clear()
            sent[str(i)] = time.monotonic()
            bus.publish(topic, "k", str(i))
            arrived.wait(5)
    finally:
        sub.close()
        backends.close()
    return pct([(got[k] - sent[k]) * 1000 for k in sent if k in got])


def update_e2e_ms(rounds: int, pct: Any) -> dict[str, float]:
    """Store updated + task.update.attachment published → the worker's handler entered."""
    cfg = _config(skald_id=f"bench-{uuid.uuid4().hex[:6]}")
    node = Skald(cfg)
    node.register_task_worker(IdleWorker)
    node.start()
    tmp = Path(tempfile.mkdtemp(prefix="skalds-bench-", dir="/dev/shm"))
    out = str(tmp / "updates.txt")
    try:
        task = Task(
            id=f"upd-{uuid.uuid4().hex[:6]}",
            class_name="IdleWorker",
            executor=cfg.skald_id,
            attachments={"out": out},
        )
        node.store.create_task(task)
        node.event_bus.publish(
            Topic.TASK_ASSIGN, task.id, TaskEvent(task_ids=[task.id]).model_dump_json()
        )
        deadline = time.monotonic() + 30
        while task.id not in node.supervisor.tasks and time.monotonic() < deadline:
            time.sleep(0.01)
        time.sleep(0.5)
        sent: dict[int, int] = {}
        event = TaskEvent(task_ids=[task.id]).model_dump_json()
        for seq in range(rounds):
            sent[seq] = time.monotonic_ns()
            node.store.update_task(task.id, {"attachments": {"out": out, "seq": seq}})
            node.event_bus.publish(Topic.TASK_UPDATE_ATTACHMENT, task.id, event)
            time.sleep(0.02)
        time.sleep(1.0)
        entered = {}
        for line in Path(out).read_text().splitlines():
            seq_s, ts = line.split()
            entered[int(seq_s)] = int(ts)
        return pct([(entered[s] - sent[s]) / 1e6 for s in sent if s in entered])
    finally:
        node.stop()
        _drop_db(cfg.db_name)


def heartbeat_write_ms_per_100(rounds: int) -> float:
    """One node report (node keys + 100 task heartbeats) as one Redis pipeline."""
    pm = make_plugin_manager()
    backends = make_backends(pm, _config())
    cache = backends.cache
    sid = f"bench-{uuid.uuid4().hex[:6]}"
    ops = [
        HashSet(keys.SKALDS_HASH, {sid: "1"}, 3.0),
        HashSet(keys.SKALDS_MODE_HASH, {sid: "node"}, 3.0),
        Set(keys.skald_heartbeat(sid), "1", 3.0),
        ListSet(keys.skald_all_tasks(sid), [f"t{i}" for i in range(100)], 3.0),
    ] + [Set(keys.task_heartbeat(f"{sid}-t{i}"), str(i), 10.0) for i in range(100)]
    took = []
    try:
        for _ in range(rounds):
            t0 = time.perf_counter()
            cache.apply(ops)
            took.append((time.perf_counter() - t0) * 1000)
    finally:
        backends.close()
    return round(statistics.median(took), 3)


def _drop_db(name: str) -> None:
    import pymongo

    client: pymongo.MongoClient[Any] = pymongo.MongoClient(
        mongo_url(), serverSelectionTimeoutMS=3000
    )
    try:
        client.drop_database(name)
    finally:
        client.close()


def run(pct: Any) -> dict[str, Any]:
    require_services()
    return {
        "bus_event_ms": bus_event_ms(200, pct),
        "update_e2e_ms": update_e2e_ms(200, pct),
        "heartbeat_write_ms_per_100": heartbeat_write_ms_per_100(200),
    }
