"""The monitor: which nodes are alive, and what happens to the tasks of those that are not.

A node is online while its field in ``skalds:hash`` lives (nodes renew it every
``report_interval``, five times per ``node_ttl_seconds`` TTL at least), so a node that
dies drops out within its TTL; the monitor looks several times a second.

What it does about it (only while it holds the monitor lease, so two controllers
never act twice on one observation; each change is a compare-and-set anyway):

* a node that went offline: its Assigning/Running/Paused tasks are taken back —
  persistent ones go back to Created without executor (``task.created`` wakes the
  dispatcher, which places them on another node), the others become Failed with
  "node X went offline" (a retry policy may then try them again). Tasks of an edge
  node's YAML file are never moved: they restart with their node.
* a worker that fell silent while its node is alive (its ``task:{id}:heartbeat``
  key expired although the node lists it as Running): Failed with the reason, and a
  ``task.cancel`` so the node stops the hung process.
* tasks left Running on nodes that are not online (e.g. the node died while no
  controller ran): treated like the tasks of a node that just went offline.

A cache that does not answer proves nothing: the monitor then does nothing, and
after the cache answers again it waits ``grace`` seconds (nodes re-register within
one heartbeat) before it believes an absence. Everything vanishing at once is taken
for a cache that lost its data, not for every node dying together.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from typing import Any

from skalds.model.task import ModeEnum, Task, TaskLifecycleStatus
from skalds.node import keys
from skalds.plugins import Backends
from skalds.ports.event_bus import Topic
from skalds.ports.store import TaskQuery
from skalds.utils.logging import logger
from skalds_controller.lease import Lease
from skalds_controller.settings import ControllerSettings, or_setting
from skalds_controller.transitions import Transitions

__all__ = ["Monitor", "NodeListener"]

S = TaskLifecycleStatus
NodeListener = Callable[[str, bool], None]
"""Called with ``(node_id, online)`` when a node joins or leaves (monitor thread)."""

_TAKEN_BACK = frozenset({S.ASSIGNING, S.RUNNING, S.PAUSED})


class _CacheDown(Exception):
    """The cache did not answer: no conclusion may be drawn from this look."""


class Monitor:
    """Watches node liveness and worker heartbeats; acts on deaths and stalls.

    Args:
        backends: the shared event bus, cache and store.
        settings: the timings below default to its ``monitor_*`` fields;
            ``node_ttl_seconds`` and ``heartbeat_interval`` set the default grace.
        controller_id: names this controller in the events it publishes.
        lease: the monitor lease; ``None`` acts unconditionally.
        poll_every: seconds between looks at the node registry.
        stall_check_every: seconds between looks at worker heartbeats; a worker is
            stalled after two looks in a row found its key expired.
        orphan_sweep_every: seconds between scans for tasks on nodes not online.
        grace: seconds the cache must have answered before an absence counts.
    """

    def __init__(
        self,
        backends: Backends,
        settings: ControllerSettings,
        *,
        controller_id: str,
        lease: Lease | None = None,
        poll_every: float | None = None,
        stall_check_every: float | None = None,
        orphan_sweep_every: float | None = None,
        grace: float | None = None,
    ) -> None:
        self.backends = backends
        self.lease = lease
        self.poll_every = or_setting(poll_every, settings.monitor_poll_interval)
        self.stall_check_every = or_setting(
            stall_check_every, settings.monitor_stall_check_interval
        )
        self.orphan_sweep_every = or_setting(
            orphan_sweep_every, settings.monitor_orphan_sweep_interval
        )
        if grace is None:
            grace = settings.monitor_grace_seconds  # may be unset too: then derived
        self.grace = (
            grace
            if grace is not None
            else max(settings.node_ttl_seconds, 2 * settings.heartbeat_interval)
        )
        self.transitions = Transitions(backends, controller_id)
        self._listeners: list[NodeListener] = []
        self._online: frozenset[str] = frozenset()
        self._suspects: set[str] = set()
        self._healthy_since: float | None = None
        self._silent_before: set[tuple[str, str]] = set()
        self._beating: set[str] = set()
        # node → the task ids it last reported (read with the stall checks, every second)
        self._reported: dict[str, list[str]] = {}
        self._next_stall_check = 0.0
        self._next_sweep = 0.0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._failing: str | None = None
        self.counts: dict[str, int] = {"nodesLost": 0, "requeued": 0, "failed": 0, "stalled": 0}

    # -- control ------------------------------------------------------------------------

    @property
    def acting(self) -> bool:
        """Whether this monitor may change tasks now (it holds the lease)."""
        return self.lease is None or self.lease.held

    def online_nodes(self) -> frozenset[str]:
        """The nodes online at the last successful look."""
        return self._online

    def add_listener(self, listener: NodeListener) -> None:
        """Call ``listener(node_id, online)`` when a node joins or leaves."""
        self._listeners.append(listener)

    def start(self) -> None:
        self._thread = threading.Thread(target=self._loop, name="skalds-monitor", daemon=True)
        self._thread.start()

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=10)

    def describe(self) -> dict[str, Any]:
        """The monitor's state for status pages."""
        return {
            "acting": self.acting,
            "cacheHealthy": self._healthy_since is not None,
            "online": sorted(self._online),
            **self.counts,
        }

    # -- the loop ---------------------------------------------------------------------------

    def _loop(self) -> None:
        while True:
            try:
                self.check_once()
            except Exception as exc:
                self._trouble("check", exc)
            else:
                if self._failing is not None:
                    logger.info("monitor: backends answer again")
                self._failing = None
            if self._stop.wait(self.poll_every):
                return

    def _trouble(self, what: str, exc: Exception) -> None:
        if self._failing != what:
            logger.error("monitor: %s failed (%s); retrying", what, exc)
        self._failing = what

    def check_once(self) -> None:
        """One look: node registry; when settled and leading, deaths, orphans, stalls."""
        now = time.monotonic()
        try:
            online = frozenset(self._read(self.backends.cache.hash_get_all, keys.SKALDS_HASH))
            self._track(online, now)
            if self._healthy_since is None or now - self._healthy_since < self.grace:
                return
            if not self.acting:
                self._silent_before = set()
                return
            for node_id in sorted(self._suspects - online):
                self._take_back_tasks_of(node_id)
                self._suspects.discard(node_id)
            if now >= self._next_sweep:
                self._sweep_orphans(online)
                self._next_sweep = now + self.orphan_sweep_every
            if now >= self._next_stall_check:
                self._check_stalls(online)
                self._next_stall_check = now + self.stall_check_every
        except _CacheDown as exc:
            if self._healthy_since is not None:
                logger.warning("monitor: the cache does not answer (%s); judging nothing", exc)
            self._healthy_since = None
            self._silent_before = set()

    def _read(self, fn: Callable[[str], Any], key: str) -> Any:
        try:
            return fn(key)
        except Exception as exc:
            raise _CacheDown(str(exc)) from exc

    def _track(self, online: frozenset[str], now: float) -> None:
        if self._healthy_since is None:
            self._healthy_since = now
            if self._online:
                logger.info("monitor: the cache answers again; waiting %.1f s to judge", self.grace)
        joined, left = online - self._online, self._online - online
        if left and not online and len(left) > 1:
            logger.warning(
                "monitor: all %d nodes left the registry at once; taking it for a cache "
                "that lost its data and waiting %.1f s before judging",
                len(left),
                self.grace,
            )
            self._healthy_since = now
        self._online = online
        for node_id in sorted(joined):
            self._suspects.discard(node_id)
            logger.info("monitor: node %s is online", node_id)
            self._notify(node_id, True)
        for node_id in sorted(left):
            self._suspects.add(node_id)
            logger.warning("monitor: node %s is offline (no heartbeat within its TTL)", node_id)
            self._notify(node_id, False)

    def _notify(self, node_id: str, online: bool) -> None:
        for listener in list(self._listeners):
            try:
                listener(node_id, online)
            except Exception:
                logger.exception("monitor: a node listener failed")

    # -- dead nodes -----------------------------------------------------------------------

    def _take_back_tasks_of(self, node_id: str) -> None:
        """Re-queue the persistent tasks of an offline node, fail the others.

        The tasks the node last reported go first, each read by id: the query for all
        of its tasks is a scan of the whole collection on stores without usable
        indexes (FerretDB), which after a busy hour takes long enough to matter to how
        soon a persistent task runs again. The query then finds any task the node took
        after its last report.
        """
        reported = self._reported.pop(node_id, [])
        taken = sum(self._taken_back(task_id, node_id) for task_id in reported)
        rest = self.backends.store.list_tasks(TaskQuery(executor=node_id, statuses=_TAKEN_BACK))
        seen = set(reported)
        taken += sum(self._taken_back(t.id, node_id) for t in rest if t.id not in seen)
        if taken:
            self.counts["nodesLost"] += 1
            logger.warning("monitor: node %s went offline with %d unfinished tasks", node_id, taken)

    def _taken_back(self, task_id: str, node_id: str) -> bool:
        """Read ``task_id`` and take it back if it is still an unfinished task of ``node_id``."""
        task = self.backends.store.get_task(task_id)
        if task is None or task.executor != node_id or task.lifecycle_status not in _TAKEN_BACK:
            return False  # gone, moved or ended meanwhile
        self._take_back(task, node_id)
        return True

    def _take_back(self, task: Task, node_id: str) -> None:
        was = task.lifecycle_status
        if task.is_persistent and task.mode is not ModeEnum.ACTIVE:
            reason = (
                f"node {node_id} went offline while the task was {was.value}; "
                "re-queued for another node"
            )
            moved = self.transitions.move_run(
                task, {was}, S.CREATED, reason, executor=None, not_before=None
            )
            if moved is not None:  # the store says Created: the event is a hint
                self.transitions.publish(Topic.TASK_CREATED, task.id, wait=False)
                self.counts["requeued"] += 1
                logger.warning("task %s: %s", task.id, reason)
            return
        reason = f"node {node_id} went offline while the task was {was.value}"
        if task.mode is ModeEnum.ACTIVE:
            reason += " (a task of the node's YAML file: it restarts with the node)"
        if self.transitions.move_run(task, {was}, S.FAILED, reason) is not None:
            self.counts["failed"] += 1
            logger.warning("task %s failed: %s", task.id, reason)

    def _sweep_orphans(self, online: frozenset[str]) -> None:
        active = self.backends.store.list_tasks(TaskQuery(statuses=_TAKEN_BACK))
        orphaned = sorted({t.executor for t in active if t.executor and t.executor not in online})
        for node_id in orphaned:
            logger.warning("monitor: node %s is not online but has tasks; taking them", node_id)
            self._take_back_tasks_of(node_id)

    # -- stalled workers --------------------------------------------------------------------

    def _check_stalls(self, online: frozenset[str]) -> None:
        silent: set[tuple[str, str]] = set()
        listed: set[str] = set()
        for node_id in sorted(online):
            for entry in self._running_tasks_of(node_id):
                task_id = str(entry.get("id"))
                listed.add(task_id)
                if _as_int(entry.get("heartbeat")) > 0:
                    self._beating.add(task_id)
                # A worker beats only once its initialize() returned; before its first
                # beat a silent key proves nothing.
                if task_id not in self._beating:
                    continue
                if self._read(self.backends.cache.get, keys.task_heartbeat(task_id)) is None:
                    silent.add((node_id, task_id))
        self._beating &= listed
        confirmed, self._silent_before = silent & self._silent_before, silent
        for node_id, task_id in sorted(confirmed):
            self._fail_stalled(node_id, task_id)

    def _running_tasks_of(self, node_id: str) -> list[dict[str, Any]]:
        raw = self._read(self.backends.cache.get, keys.skald_info(node_id))
        if not raw:
            return []
        try:
            info = json.loads(raw)
            tasks = [t for t in info.get("tasks", []) if isinstance(t, dict)]
        except (ValueError, AttributeError):
            return []  # a node writing garbage is not evidence against its workers
        self._reported[node_id] = [str(t["id"]) for t in tasks if t.get("id")]
        return [t for t in tasks if t.get("status") == S.RUNNING.value and t.get("id")]

    def _fail_stalled(self, node_id: str, task_id: str) -> None:
        task = self.backends.store.get_task(task_id)
        if task is None or task.lifecycle_status is not S.RUNNING or task.executor != node_id:
            return
        reason = (
            f"the worker stopped sending heartbeats: task:{task_id}:heartbeat expired "
            f"while node {node_id} is online (the worker hangs or was stopped)"
        )
        if self.transitions.move_run(task, {S.RUNNING}, S.FAILED, reason) is not None:
            self.transitions.publish(
                Topic.TASK_CANCEL, task_id, recipient=node_id, incarnation=task.incarnation
            )
            self.counts["stalled"] += 1
            logger.error("task %s failed: %s", task_id, reason)


def _as_int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0
