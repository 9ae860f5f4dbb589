"""What the controller knows about nodes: read from the cache keys nodes write."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from skalds.node import keys
from skalds.ports.cache import Cache
from skalds.utils.time import now_ms

__all__ = ["NodeDirectory", "NodeInfo", "node_resources"]


def _parse_info(raw: str | None) -> dict[str, Any]:
    """A node's info JSON; anything garbled counts as "nothing reported"."""
    if not raw:
        return {}
    try:
        info = json.loads(raw)
    except ValueError:
        return {}
    if not isinstance(info, dict):
        return {}
    if not isinstance(info.get("workers", []), list) or not all(
        isinstance(w, dict) and isinstance(w.get("className"), str) for w in info.get("workers", [])
    ):
        info["workers"] = []
    if not isinstance(info.get("tasks", []), list):
        info["tasks"] = []
    if not isinstance(info.get("capacity", {}), dict):
        info["capacity"] = {}
    return info


def _int_or_none(value: str) -> int | None:
    try:
        return int(value)
    except ValueError:
        return None


@dataclass
class NodeInfo:
    """One node as last reported (``online`` while its registry field has not expired)."""

    id: str
    mode: str
    online: bool
    last_heartbeat_ms: int | None
    info: dict[str, Any] = field(default_factory=dict)

    @property
    def workers(self) -> dict[str, dict[str, Any]]:
        """className → {schema, supportsUpdate, source} for the classes it runs."""
        return {w["className"]: w for w in self.info.get("workers", [])}

    @property
    def capacity(self) -> dict[str, Any]:
        return dict(self.info.get("capacity", {}))

    @property
    def task_ids(self) -> list[str]:
        return [t["id"] for t in self.info.get("tasks", []) if isinstance(t, dict) and "id" in t]

    def to_json(self) -> dict[str, Any]:
        age = None if self.last_heartbeat_ms is None else max(0, now_ms() - self.last_heartbeat_ms)
        return {
            "id": self.id,
            "mode": self.mode,
            "status": "online" if self.online else "offline",
            "lastHeartbeat": self.last_heartbeat_ms,
            "heartbeatAgeMs": age,
            "capacity": self.capacity,
            "resources": node_resources(self.info),
            "classNames": sorted(self.workers),
            "tasks": self.info.get("tasks", []),
        }


def node_resources(info: Mapping[str, Any]) -> dict[str, float]:
    """The resources a node reports (``{"gpu": 2}``); ``{}`` when it reports none."""
    raw = info.get("resources")
    if raw is None:
        raw = (info.get("capacity") or {}).get("resources")
    if not isinstance(raw, Mapping):
        return {}
    out: dict[str, float] = {}
    for name, amount in raw.items():
        try:
            out[str(name)] = float(amount)
        except (TypeError, ValueError):
            continue  # a malformed figure offers nothing rather than breaking dispatch
    return out


class NodeDirectory:
    """Lists nodes from ``skalds:hash`` / ``skalds:mode:hash`` / ``skalds:{id}:info``.

    A node whose field in ``skalds:hash`` expired is gone from the hash; the directory
    remembers nodes it saw, so they are reported offline rather than forgotten.
    """

    SCHEMAS_MAX_AGE = 1.0
    """Seconds :meth:`schemas` may answer from its last read (see there)."""

    def __init__(self, cache: Cache) -> None:
        self.cache = cache
        self._schemas: tuple[float, dict[str, dict[str, Any]]] | None = None
        self._seen: dict[str, NodeInfo] = {}
        self._beats: dict[str, str] = {}  # node id → the stamp its info was read at
        self._lock = threading.Lock()

    def list(self) -> list[NodeInfo]:
        """Every node seen, online or not; a node's info is re-read only when it beat.

        A node writes its info with each heartbeat stamp, so an unchanged stamp means
        an unchanged info: the dispatcher and the API call this for every task, and a
        busy node's info (its task list) is large.
        """
        beats = self.cache.hash_get_all(keys.SKALDS_HASH)
        modes = self.cache.hash_get_all(keys.SKALDS_MODE_HASH)
        fresh = {}
        for node_id, beat in beats.items():
            with self._lock:
                known = self._seen.get(node_id)
            if known is not None and known.online and self._beats.get(node_id) == beat:
                info = known.info
            else:
                info = _parse_info(self.cache.get(keys.skald_info(node_id)))
                self._beats[node_id] = beat
            mode = modes.get(node_id) or str(info.get("mode", "node"))
            fresh[node_id] = NodeInfo(node_id, mode, True, _int_or_none(beat), info)
        with self._lock:
            self._seen.update(fresh)
            for node_id, node in self._seen.items():
                if node_id not in beats:
                    node.online = False
            return sorted(self._seen.values(), key=lambda n: n.id)

    def get(self, node_id: str) -> NodeInfo | None:
        return next((n for n in self.list() if n.id == node_id), None)

    def schemas(self, *, max_age: float = 0.0) -> dict[str, dict[str, Any]]:
        """className → JSON Schema, from the online nodes (any node's copy).

        Args:
            max_age: answer from the last read if it is at most this many seconds
                old. Creating a task checks its attachments against these schemas,
                and reading them costs cache round trips on every request; a class
                missing from an older answer should be looked up again fresh (a node
                that just came up), which callers do by asking with ``max_age=0``.
        """
        last = self._schemas
        if last is not None and max_age > 0 and time.monotonic() - last[0] <= max_age:
            return last[1]
        read_at = time.monotonic()
        out: dict[str, dict[str, Any]] = {}
        for node in self.list():
            if node.online:
                for name, worker in node.workers.items():
                    out.setdefault(name, worker.get("schema", {}))
        self._schemas = (read_at, out)
        return out
