"""The node's once-a-second report to the cache: registry entry, capacity, task heartbeats.

One batch of writes per interval (one round trip on Redis). A task's heartbeat key
is only refreshed when its worker actually sent a heartbeat since the last report,
so a silent (stalled) worker's key expires and a monitor can tell.
"""

from __future__ import annotations

import json
import os
import socket
import threading
import time
from collections.abc import Callable
from typing import Any

import psutil

from skalds.__about__ import __version__
from skalds.config.skald_config import SkaldConfig
from skalds.model.task import TaskLifecycleStatus
from skalds.node import keys
from skalds.node.supervisor import TaskSupervisor
from skalds.ports.cache import Cache, CacheOp, Delete, HashDelete, HashSet, ListSet, Set
from skalds.utils.logging import logger, worker_log_path
from skalds.utils.time import now_ms
from skalds.worker.registry import WorkerRegistry

__all__ = ["NodeReporter"]


class NodeReporter:
    """Writes the node's presence and its tasks' liveness to the cache periodically."""

    def __init__(
        self,
        config: SkaldConfig,
        registry: WorkerRegistry,
        supervisor: TaskSupervisor,
        cache: Cache,
        on_gap: Callable[[float], None] = lambda seconds: None,
    ) -> None:
        """Args:
        on_gap: called with the seconds this node did not run (its reports stopped
            for longer than its TTL: it was stopped, suspended or starved), after
            which the controllers may have moved its tasks.
        """
        self.config = config
        self.on_gap = on_gap
        self.registry = registry
        self.supervisor = supervisor
        self.cache = cache
        self.started_ms = now_ms()
        self._beat = 0
        self._reported: dict[str, float] = {}
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._workers = [w.describe() for w in registry]
        self._process = psutil.Process()
        psutil.cpu_percent(interval=None)

    def start(self) -> None:
        """Report now, then every ``config.report_interval`` seconds on a thread."""
        self.report_once()
        self._thread = threading.Thread(target=self._loop, name="skalds-reporter", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        """Stop reporting and remove the node from the registry keys."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        self.leave()

    def _loop(self) -> None:
        failing = False
        interval = self.config.report_interval
        last = time.monotonic()
        while not self._stop.wait(interval):
            now = time.monotonic()
            if now - last > interval + self.config.node_ttl_seconds:
                self.on_gap(now - last - interval)
            last = now
            try:
                self.report_once()
                if failing:
                    logger.info("cache reachable again; node heartbeats resumed")
                failing = False
            except Exception as exc:
                if not failing:
                    logger.error("cannot write node heartbeat to the cache: %s", exc)
                failing = True

    def info(self) -> dict[str, Any]:
        """Return what the node publishes about itself (the dispatcher's view)."""
        tasks = self.supervisor.snapshot()
        mem = psutil.virtual_memory()
        cfg = self.config
        return {
            "id": cfg.skald_id,
            "mode": cfg.skald_mode,
            "version": __version__,
            "hostname": socket.gethostname(),
            "pid": os.getpid(),
            "startedAt": self.started_ms,
            "heartbeatAt": now_ms(),
            "capacity": {
                "maxWorkers": cfg.max_workers,
                "running": len(tasks),
                "free": max(0, cfg.max_workers - len(tasks)),
                "cpuCount": psutil.cpu_count() or 1,
                "cpuPercent": psutil.cpu_percent(interval=None),
                "memoryTotal": mem.total,
                "memoryAvailable": mem.available,
                "nodeRss": self._process.memory_info().rss,
            },
            "resources": dict(cfg.resources),
            "workers": self._workers,
            "tasks": [
                {
                    "id": t.task_id,
                    "className": t.class_name,
                    "status": t.status.value,
                    "pid": t.pid,
                    "heartbeat": t.heartbeat,
                    "incarnation": t.incarnation,
                    "attachmentsVersion": t.applied_version,
                    "startedAt": t.started_ms,
                    "logFile": self._log_file(t.task_id),
                }
                for t in tasks
            ],
        }

    def _log_file(self, task_id: str) -> str | None:
        if not self.config.log_split_with_worker_id:
            return None
        return str(worker_log_path(self.config.log_path, task_id).resolve())

    def report_once(self) -> None:
        """Write one report (node registry entry, capacity, live task heartbeats)."""
        cfg = self.config
        sid = cfg.skald_id
        ttl = cfg.node_ttl_seconds
        info = self.info()
        self._beat = (self._beat + 1) % 200
        ops: list[CacheOp] = [
            HashSet(keys.SKALDS_HASH, {sid: str(info["heartbeatAt"])}, ttl),
            HashSet(keys.SKALDS_MODE_HASH, {sid: cfg.skald_mode}, ttl),
            Set(keys.skald_heartbeat(sid), str(self._beat), ttl),
            ListSet(keys.skald_allowed_classes(sid), self.registry.names(), ttl),
            ListSet(keys.skald_all_tasks(sid), [t["id"] for t in info["tasks"]], ttl),
            Set(keys.skald_info(sid), json.dumps(info, separators=(",", ":")), ttl),
        ]
        live = set()
        for task in self.supervisor.snapshot():
            live.add(task.task_id)
            fresh = task.last_beat > self._reported.get(task.task_id, 0.0)
            if fresh or task.status is TaskLifecycleStatus.PAUSED:
                ops.append(
                    Set(
                        keys.task_heartbeat(task.task_id), str(task.heartbeat), cfg.task_ttl_seconds
                    )
                )
                ops.append(
                    Set(keys.task_status(task.task_id), task.status.value, cfg.task_ttl_seconds)
                )
                self._reported[task.task_id] = time.monotonic()
        for gone in set(self._reported) - live:
            del self._reported[gone]
        self.cache.apply(ops)

    def leave(self) -> None:
        """Remove this node from the registry keys (a clean shutdown, not a crash)."""
        sid = self.config.skald_id
        try:
            self.cache.apply(
                [
                    HashDelete(keys.SKALDS_HASH, (sid,)),
                    HashDelete(keys.SKALDS_MODE_HASH, (sid,)),
                    Delete(
                        (
                            keys.skald_heartbeat(sid),
                            keys.skald_allowed_classes(sid),
                            keys.skald_all_tasks(sid),
                            keys.skald_info(sid),
                        )
                    ),
                ]
            )
        except Exception as exc:
            logger.warning("could not remove node %s from the cache: %s", sid, exc)
