"""Watches the node registry in the cache and says what changed since the last look.

The cache port has no change feed, so the watcher re-reads ``skalds:hash`` often and
re-reads a node's ``skalds:{id}:info`` only when its heartbeat stamp moved. It reports
a node when something a person would notice changed (joined, left, its tasks or
their statuses, its capacity); a heartbeat alone is reported apart, as
``skald.heartbeat``, so views can show heartbeat ages and task heartbeats without
treating it as a change of state.

On the way it keeps, per task, a short heartbeat history and the log file path the
node published: both outlive the task's entry in the node's report.
"""

from __future__ import annotations

import json
import threading
from collections import OrderedDict, deque
from dataclasses import dataclass
from typing import Any

from skalds.node import keys
from skalds.ports.cache import Cache
from skalds.utils.logging import logger
from skalds.utils.time import now_ms
from skalds_controller.nodes import NodeInfo

__all__ = ["LogLocation", "NodeChange", "NodeWatcher"]

_Signature = tuple[Any, ...]


@dataclass(frozen=True)
class LogLocation:
    """Where a node said a task's log file is."""

    node_id: str
    hostname: str | None
    path: str


@dataclass(frozen=True)
class NodeChange:
    """What happened to a node: ``skald.joined``, ``.left``, ``.changed`` or ``.heartbeat``."""

    kind: str
    node: dict[str, Any]


class NodeWatcher:
    """Node registry reader with memory: state per node, heartbeats and log paths per task."""

    def __init__(self, cache: Cache, *, history_len: int = 60, max_tasks: int = 10_000) -> None:
        self.cache = cache
        self.history_len = history_len
        self.max_tasks = max_tasks
        self._lock = threading.Lock()
        self._nodes: dict[str, NodeInfo] = {}
        self._stamps: dict[str, str] = {}
        self._signatures: dict[str, _Signature] = {}
        self._beats_told: dict[str, str] = {}
        self._history: OrderedDict[str, deque[tuple[int, int]]] = OrderedDict()
        self._logs: OrderedDict[str, LogLocation] = OrderedDict()

    # -- polling ----------------------------------------------------------------------

    def poll(self) -> list[NodeChange]:
        """Read the registry; return the nodes whose visible state changed since last asked.

        Only the live-events hub should call this (it consumes the changes); other
        readers call :meth:`refresh`.
        """
        with self._lock:
            self._refresh()
            return self._changes()

    def refresh(self) -> list[NodeInfo]:
        """Read the registry now and return every known node (offline ones included)."""
        with self._lock:
            self._refresh()
            return sorted(self._nodes.values(), key=lambda n: n.id)

    def _refresh(self) -> None:
        beats = self.cache.hash_get_all(keys.SKALDS_HASH)
        modes = self.cache.hash_get_all(keys.SKALDS_MODE_HASH)
        for node_id, stamp in beats.items():
            known = self._nodes.get(node_id)
            if known is not None and known.online and self._stamps.get(node_id) == stamp:
                continue
            info = self._read_info(node_id)
            mode = str(modes.get(node_id) or info.get("mode") or "node")
            node = NodeInfo(node_id, mode, True, _as_int(stamp), info)
            self._nodes[node_id] = node
            self._stamps[node_id] = stamp
            self._remember_tasks(node)
        for node_id, node in self._nodes.items():
            if node_id not in beats:
                node.online = False

    def _changes(self) -> list[NodeChange]:
        changes = []
        for node_id, node in sorted(self._nodes.items()):
            signature = _signature(node)
            before = self._signatures.get(node_id)
            stamp = self._stamps.get(node_id, "")
            if signature == before:
                if node.online and self._beats_told.get(node_id) != stamp:
                    self._beats_told[node_id] = stamp
                    changes.append(NodeChange("skald.heartbeat", node.to_json()))
                continue
            self._beats_told[node_id] = stamp
            self._signatures[node_id] = signature
            if not node.online:
                kind = "skald.left"
            elif before is None or not before[0]:
                kind = "skald.joined"
            else:
                kind = "skald.changed"
            changes.append(NodeChange(kind, node.to_json()))
        return changes

    def _read_info(self, node_id: str) -> dict[str, Any]:
        raw = self.cache.get(keys.skald_info(node_id))
        if not raw:
            return {}
        try:
            info = json.loads(raw)
        except ValueError:
            logger.warning("node %s published an info entry that is not JSON; ignored", node_id)
            return {}
        if not isinstance(info, dict):
            return {}
        # A node of another version (or a stray writer) must not break the API's views.
        info["tasks"] = _entries(info.get("tasks"), "id")
        info["workers"] = _entries(info.get("workers"), "className")
        if not isinstance(info.get("capacity"), dict):
            info["capacity"] = {}
        return info

    def _remember_tasks(self, node: NodeInfo) -> None:
        stamp = node.last_heartbeat_ms or now_ms()
        hostname = node.info.get("hostname")
        for entry in node.info.get("tasks", []):
            task_id = entry["id"]
            beat = entry.get("heartbeat")
            if isinstance(beat, int) and not isinstance(beat, bool):
                self._append_beat(task_id, stamp, beat)
            path = entry.get("logFile")
            if isinstance(path, str) and path:
                host = hostname if isinstance(hostname, str) else None
                _bounded_put(self._logs, task_id, LogLocation(node.id, host, path), self.max_tasks)

    def _append_beat(self, task_id: str, stamp: int, value: int) -> None:
        history = self._history.get(task_id)
        if history is None:
            history = deque(maxlen=self.history_len)
            _bounded_put(self._history, task_id, history, self.max_tasks)
        else:
            self._history.move_to_end(task_id)
        if history and history[-1][0] >= stamp:
            return
        history.append((stamp, value))

    # -- reading ----------------------------------------------------------------------

    def nodes(self) -> list[NodeInfo]:
        """The nodes as of the last poll (offline ones kept)."""
        with self._lock:
            return sorted(self._nodes.values(), key=lambda n: n.id)

    def record_heartbeat(self, task_id: str, value: int) -> None:
        """Add a value read elsewhere (the heartbeat endpoint) to the task's history."""
        with self._lock:
            self._append_beat(task_id, now_ms(), value)

    def heartbeat_history(self, task_id: str) -> list[dict[str, int]]:
        """Oldest first: ``[{"t": ms, "value": heartbeat}]``."""
        with self._lock:
            history = list(self._history.get(task_id, ()))
        return [{"t": t, "value": v} for t, v in history]

    def log_location(self, task_id: str) -> LogLocation | None:
        """Where a node last said the task's log file is; polls once when not known yet."""
        with self._lock:
            found = self._logs.get(task_id)
        if found is None:
            with self._lock:
                self._refresh()
                found = self._logs.get(task_id)
        return found


def _signature(node: NodeInfo) -> _Signature:
    tasks = tuple(sorted((t["id"], str(t.get("status"))) for t in node.info.get("tasks", [])))
    capacity = node.capacity
    return (
        node.online,
        node.mode,
        tasks,
        capacity.get("maxWorkers"),
        tuple(sorted(node.workers)),
    )


def _entries(value: Any, name_key: str) -> list[dict[str, Any]]:
    """The dict items of a list that carry a string ``name_key``; others are dropped."""
    if not isinstance(value, list):
        return []
    return [e for e in value if isinstance(e, dict) and isinstance(e.get(name_key), str)]


def _as_int(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


def _bounded_put(table: OrderedDict[str, Any], key: str, value: Any, limit: int) -> None:
    table[key] = value
    table.move_to_end(key)
    while len(table) > limit:
        table.popitem(last=False)
