"""``Skald`` (alias ``Skalds``): one node, in edge, node or single_process mode.

Typical use (seed API)::

    app = Skald(SkaldConfig(skald_mode="node", skald_id="skald_123"))
    app.register_task_worker(MyWorker)
    app.run()          # blocks until SIGINT/SIGTERM

Tests and embedding code use :meth:`start` / :meth:`stop` instead of :meth:`run`, and
may pass ready-made backends (``Skald(config, backends=...)``) so several nodes and a
controller share in-memory backends.
"""

from __future__ import annotations

import signal
import threading
import time
from collections.abc import Sequence
from types import FrameType
from typing import Any, TypeVar

import pluggy

from skalds.config.skald_config import SkaldConfig
from skalds.errors import BackendUnavailableError, ConfigError, SkaldsError
from skalds.node.convergence import Convergence
from skalds.node.edge import EdgeRunner
from skalds.node.events import NODE_TOPICS, NodeEventHandler
from skalds.node.lanes import DEFAULT_LANES, LaneExecutor
from skalds.node.reporter import NodeReporter
from skalds.node.single import run_single_process
from skalds.node.supervisor import TaskSupervisor
from skalds.plugins import Backends, make_backends, make_plugin_manager, unreachable
from skalds.ports.cache import Cache
from skalds.ports.event_bus import EventBus
from skalds.ports.runtime import WorkerListener, WorkerOutcome
from skalds.ports.store import Store
from skalds.shared_subscription import SharedSubscription
from skalds.utils.logging import configure_logging, logger
from skalds.worker.registry import WorkerRegistry

__all__ = ["Skald", "Skalds"]

W = TypeVar("W", bound=type)
_HEALTH_CHECK_SECONDS = 2.0
_SUBSCRIBE_WAIT_SECONDS = 60.0
"""How long start() waits for the node's bus subscription (a Kafka group join)."""
_MAX_CONNECT_BACKOFF = 30.0
_RECONCILE_WAIT_SECONDS = 60.0
"""How long a reconcile waits for its fixes (each on its task's lane) before it goes on."""


class _ListenerRelay:
    """The runtime's listener, handing on to the supervisor once it exists.

    The runtime starts (forks its fork server) before the backends are built, and
    the supervisor needs the backends; no worker runs, so nothing is reported, before
    :attr:`target` is set.
    """

    def __init__(self) -> None:
        self.target: WorkerListener | None = None

    def _listener(self) -> WorkerListener:
        if self.target is None:
            raise SkaldsError("a worker reported before the node finished starting")
        return self.target

    def worker_started(self, task_id: str, pid: int) -> None:
        self._listener().worker_started(task_id, pid)

    def worker_heartbeat(self, task_id: str, value: int) -> None:
        self._listener().worker_heartbeat(task_id, value)

    def worker_update_applied(
        self, task_id: str, seq: int, error: str | None, version: int | None = None
    ) -> None:
        self._listener().worker_update_applied(task_id, seq, error, version)

    def worker_exited(self, task_id: str, outcome: WorkerOutcome) -> None:
        self._listener().worker_exited(task_id, outcome)


class Skald:
    """A node that runs registered TaskWorkers as supervised processes."""

    def __init__(
        self,
        config: SkaldConfig | None = None,
        *,
        plugin_manager: pluggy.PluginManager | None = None,
        backends: Backends | None = None,
    ) -> None:
        self.config = config or SkaldConfig()
        self.pm = plugin_manager or make_plugin_manager(
            load_entry_points=self.config.load_entry_points
        )
        self.registry = WorkerRegistry()
        self._backends = backends
        self._supervisor: TaskSupervisor | None = None
        self._convergence: Convergence | None = None
        self._executor: LaneExecutor | None = None
        self._reporter: NodeReporter | None = None
        self._edge: EdgeRunner | None = None
        self._events: SharedSubscription | None = None
        self._shared_topics: tuple[str, ...] = ()
        self._reconcile_stop = threading.Event()
        self._reconcile_now = threading.Event()
        self._reconcile_thread: threading.Thread | None = None
        self._started = False
        self._plugins_loaded = False
        self._last_down: list[str] = []
        self._stop_event = threading.Event()

    # -- registration ---------------------------------------------------------------

    @property
    def skald_id(self) -> str:
        """This node's id."""
        return self.config.skald_id

    def register_task_worker(self, worker_cls: W) -> W:
        """Allow this node to run ``worker_cls`` (usable as a class decorator too).

        Raises:
            WorkerDefinitionError: the class has no main handler or no attachments model.
            DuplicateWorkerError: another class already uses this className.
        """
        if self._started:
            raise SkaldsError("register workers before the node starts (before run()/start())")
        self.registry.register(worker_cls, f"{type(self).__name__}.register_task_worker")
        return worker_cls

    def share_events(self, topics: Sequence[str]) -> None:
        """Before :meth:`start`: also consume ``topics`` in this node's bus subscription.

        For other parts of this process that follow task events, ``skalds up``'s
        controller: they follow :attr:`events` instead of a consumer group of their
        own, so each event reaches the process once (one broker delivery, one thread).

        Raises:
            SkaldsError: the node has started already.
        """
        if self._started:
            raise SkaldsError("share_events() must come before the node starts")
        self._shared_topics = tuple(dict.fromkeys((*self._shared_topics, *topics)))

    @property
    def events(self) -> SharedSubscription:
        """The node's bus subscription (after :meth:`start`), for :meth:`share_events` parts.

        Raises:
            SkaldsError: the node has not started.
        """
        if self._events is None:
            raise SkaldsError("the node has not started: no bus subscription yet")
        return self._events

    def _load_plugin_workers(self) -> None:
        if self._plugins_loaded:
            return
        self._plugins_loaded = True
        for classes in self.pm.hook.skalds_register_workers():
            for cls in classes or []:
                self.registry.register(cls, "plugin hook skalds_register_workers")
        if self.config.load_entry_points:
            self.registry.load_entry_points()

    # -- backends -------------------------------------------------------------------

    @property
    def backends(self) -> Backends:
        """The node's event bus, cache and store (made from the config on first use)."""
        if self._backends is None:
            self._backends = make_backends(self.pm, self.config)
        return self._backends

    def _connect(self) -> Backends:
        """Build the backends and wait until each answers, retrying with back-off.

        A service that is down at start gets one clear line per attempt (which service,
        which address), never a stack trace; ``stop()`` or a signal ends the wait.
        """
        delay = 0.5
        backends = self._backends
        while True:
            if backends is None:
                try:
                    backends = make_backends(self.pm, self.config)
                except BackendUnavailableError as exc:
                    problem = str(exc)
            if backends is not None:
                down = unreachable(backends, self.config)
                if not down:
                    self._backends = backends
                    return backends
                problem = "cannot reach the " + "; the ".join(down)
            logger.error("%s; retrying in %.1f s", problem, delay)
            if self._stop_event.wait(delay):
                if backends is not None and self._backends is None:
                    backends.close()  # built here, never handed out: no client left behind
                raise SkaldsError("node stopped before its backends were reachable")
            delay = min(delay * 2, _MAX_CONNECT_BACKOFF)

    @property
    def store(self) -> Store:
        return self.backends.store

    @property
    def cache(self) -> Cache:
        return self.backends.cache

    @property
    def event_bus(self) -> EventBus:
        return self.backends.event_bus

    @property
    def supervisor(self) -> TaskSupervisor:
        if self._supervisor is None:
            raise SkaldsError("the node is not started")
        return self._supervisor

    @property
    def convergence(self) -> Convergence:
        if self._convergence is None:
            raise SkaldsError("the node is not started")
        return self._convergence

    # -- running --------------------------------------------------------------------

    def run(self) -> int:
        """Run until SIGINT/SIGTERM (single_process: until the task ends); return an exit code.

        In single_process mode a task that did not finish ends the process: 1 when it
        failed, 2 when the YAML file or the worker cannot be used (``SystemExit``), so
        a script ending in ``app.run()`` exits with the task's code; 0 is returned.
        """
        configure_logging(self.config.log_level, self.config.skald_id)
        if self.config.skald_mode == "single_process":
            return self._run_single_process()
        return self._run_node()

    def _run_single_process(self) -> int:
        """single_process mode; the process exits with the task's code (see :meth:`run`)."""
        self._load_plugin_workers()
        if not self.config.yaml_file:
            logger.error("single_process mode needs yaml_file (YAML_FILE)")
            code = 2
        else:
            code = run_single_process(
                self.config.yaml_file,
                self.registry,
                skald_id=self.skald_id,
                log_split=self.config.log_split_with_worker_id,
                log_path=self.config.log_path,
                rotation_mb=self.config.log_rotation_mb,
                retention=self.config.log_retention,
            )
        if code != 0:
            # The seeds end their script with a bare ``app.run()``: a failed job must
            # still end the process with its code (a Kubernetes Job sees the failure).
            raise SystemExit(code)
        return code

    def _run_node(self) -> int:
        stop = self._stop_event

        def on_signal(signum: int, frame: FrameType | None) -> None:
            logger.info("signal %s received; stopping node %s", signum, self.skald_id)
            stop.set()

        previous = {sig: signal.signal(sig, on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
        try:
            try:
                self.start()
            except SkaldsError as exc:
                if stop.is_set():
                    logger.info("%s", exc)
                    return 0
                raise
            while not stop.wait(0.5):
                pass
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
            self.stop()
        return 0

    def start(self) -> None:
        """Start the node without blocking: fork server, reporting, mode runner."""
        if self._started:
            return
        cfg = self.config
        configure_logging(cfg.log_level, cfg.skald_id)
        if cfg.skald_mode == "single_process":
            raise ConfigError("single_process mode runs in the foreground: use run()")
        if cfg.skald_mode == "edge" and not cfg.yaml_file:
            raise ConfigError("edge mode needs yaml_file (YAML_FILE): the workers to run")
        self._load_plugin_workers()
        relay = _ListenerRelay()
        runtime = self.pm.hook.skalds_make_worker_runtime(
            url=cfg.runtime_url, config=cfg, registry=self.registry, listener=relay
        )
        if runtime is None:
            raise ConfigError(f"no plugin provides a worker runtime for {cfg.runtime_url!r}")
        # The fork server starts first: before this node starts any thread, and before
        # it builds its backends. Every task process is a fork of that server, and a
        # fork copies the page tables of all it holds (its exit frees them again): the
        # client libraries the backends import (pymongo, redis-py, confluent-kafka)
        # made each one-shot task cost about a third more CPU. A fresh fork server
        # (FORK_SERVER, runtime/zygote.py) holds none of them anyway; a copy of this
        # process must be taken now.
        runtime.start()
        try:
            backends = self._connect()
        except BaseException:
            runtime.close(cfg.cancel_grace_seconds)
            raise
        self._executor = LaneExecutor(DEFAULT_LANES, name=f"skalds-node-{cfg.skald_id}")
        supervisor = TaskSupervisor(cfg, self.registry, backends, self._executor, self.pm.hook)
        relay.target = supervisor
        supervisor.runtime = runtime
        self._supervisor = supervisor
        self._convergence = Convergence(cfg.skald_id, backends.store, supervisor, self._executor)
        self._started = True
        logger.info(
            "skald %s starting in %s mode; workers: %s",
            cfg.skald_id,
            cfg.skald_mode,
            ", ".join(self.registry.names()) or "none",
        )
        self._reporter = NodeReporter(
            cfg, self.registry, supervisor, backends.cache, on_gap=self._woke_from_gap
        )
        try:
            self._reporter.start()
        except Exception as exc:
            logger.error("cannot write to the cache (%s); heartbeats will retry", exc)
        topics = tuple(dict.fromkeys((*NODE_TOPICS, *self._shared_topics)))
        self._events = SharedSubscription(
            backends.event_bus, f"skalds-node-{cfg.skald_id}", topics, name=f"node {cfg.skald_id}"
        )
        handler = NodeEventHandler(
            cfg.skald_id,
            cfg.skald_mode,
            self._convergence,
            self._executor,
            on_overflow=self.request_reconcile,
        )
        self._events.follow(NODE_TOPICS, handler, wait=_SUBSCRIBE_WAIT_SECONDS)
        if cfg.skald_mode == "edge":
            assert cfg.yaml_file is not None
            self._edge = EdgeRunner(self, cfg.yaml_file, self._executor)
            self._edge.start()
        else:
            self.reconcile(at_start=True)
            self._reconcile_thread = threading.Thread(
                target=self._reconcile_loop, name="skalds-reconcile", daemon=True
            )
            self._reconcile_thread.start()

    def request_stop(self) -> None:
        """Make :meth:`run` return, and a :meth:`start` waiting for its backends give up.

        Only sets a flag, so it is safe in a signal handler; :meth:`stop` does the rest.
        """
        self._stop_event.set()

    def stop(self) -> None:
        """Stop every worker (cancel with the grace period), leave the registry, close."""
        self._stop_event.set()  # also ends a start() still waiting for its backends
        if not self._started:
            return
        self._started = False
        self._reconcile_stop.set()
        self._reconcile_now.set()
        if self._edge is not None:
            self._edge.stop()
        if self._events is not None:
            self._events.close()
        supervisor = self.supervisor
        supervisor.shutting_down = True
        if supervisor.runtime is not None:
            supervisor.runtime.close(self.config.cancel_grace_seconds)
        if self._executor is not None:
            self._executor.shutdown(wait=True)
        if self._reporter is not None:
            self._reporter.stop()
        logger.info("skald %s stopped", self.skald_id)

    # -- reconcile --------------------------------------------------------------------

    def request_reconcile(self) -> None:
        """Reconcile with the store as soon as possible (events were dropped, say)."""
        self._reconcile_now.set()

    def _woke_from_gap(self, seconds: float) -> None:
        logger.warning(
            "node %s did not run for %.1f s (stopped, suspended or starved): its tasks may "
            "have moved meanwhile; reconciling with the store now",
            self.skald_id,
            seconds,
        )
        self.request_reconcile()

    def _reconcile_loop(self) -> None:
        """Reconcile every ``reconcile_interval``, at once when a backend comes back, and
        when asked (:meth:`request_reconcile`)."""
        last = time.monotonic()
        was_healthy = True
        step = min(_HEALTH_CHECK_SECONDS, self.config.reconcile_interval)
        while not self._reconcile_stop.is_set():
            asked = self._reconcile_now.wait(step)
            if asked:  # cleared only then: a request that comes after the wait is kept
                self._reconcile_now.clear()
            if self._reconcile_stop.is_set() or self._executor is None:
                return
            healthy = self._backends_healthy()
            recovered = healthy and not was_healthy
            if recovered:
                logger.info("backends reachable again; reconciling with the store")
            was_healthy = healthy
            due = time.monotonic() - last >= self.config.reconcile_interval
            if not healthy or not (recovered or due or asked):
                continue
            last = time.monotonic()
            try:
                self.reconcile()
            except Exception:
                logger.exception("periodic reconcile failed")

    def _backends_healthy(self) -> bool:
        down = []
        for name, backend in (("store", self.store), ("event bus", self.event_bus)):
            try:
                ok = backend.ping()
            except Exception:
                ok = False
            if not ok:
                down.append(name)
        if down and self._last_down != down:
            logger.warning("cannot reach the %s; workers keep running", " and ".join(down))
        self._last_down = down
        return not down

    def reconcile(self, at_start: bool = False) -> None:
        """Bring local processes in line with the store (the truth), and wait for it.

        Tasks of this node that the store says should run are started (at start also
        those marked Running/Paused: their processes died with the old node); local
        runs the store no longer wants here (over, moved elsewhere, or replaced by a
        later run) are stopped; paused or resumed as the store says; and sent the
        stored attachments when behind. See :mod:`skalds.node.convergence`.
        """
        fixes = self.convergence.reconcile(at_start)
        deadline = time.monotonic() + _RECONCILE_WAIT_SECONDS
        for fix in fixes:
            try:
                fix.result(timeout=max(0.0, deadline - time.monotonic()))
            except TimeoutError:
                logger.warning(
                    "reconcile: %d fixes still queued after %.0f s; going on without them",
                    sum(not f.done() for f in fixes),
                    _RECONCILE_WAIT_SECONDS,
                )
                return
            except Exception:
                logger.exception("reconcile: a fix failed")

    # -- task control -------------------------------------------------------------------

    def cancel_task(self, task_id: str, incarnation: int | None = None) -> bool:
        """Cancel ``task_id``: stop its process if it runs here, mark it Cancelled in the store.

        Args:
            incarnation: the run to cancel (a later run here is left alone).
        """
        return self.convergence.cancel(task_id, incarnation)

    def update_task(self, task_id: str, attachments: Any) -> int:
        """Store new attachments for a task running here and send them; return the update number.

        The attachments are validated first (an invalid change is refused, nothing is
        stored); the store adds one to the task's attachments version, and the worker
        gets that version (a paused worker once it resumes).

        Raises:
            SkaldsError: the task does not run here.
            AttachmentValidationError: names the fields; the worker keeps its parameters.
        """
        dumped = self.supervisor.validated(task_id, attachments)
        stored = self.store.update_task(task_id, {"attachments": dumped})
        if stored is None:  # pragma: no cover - no condition was given
            raise SkaldsError(f"task {task_id!r} could not be updated")
        seq = self.supervisor.send_validated(task_id, dumped, stored.attachments_version)
        logger.info(
            "task %s: update %d (attachments version %d) sent to the worker",
            task_id,
            seq,
            stored.attachments_version,
        )
        return seq

    def pause_task(self, task_id: str, incarnation: int | None = None) -> bool:
        """Pause a running task (its whole process group stops being scheduled)."""
        return self.convergence.pause(task_id, True, incarnation)

    def resume_task(self, task_id: str, incarnation: int | None = None) -> bool:
        """Resume a paused task."""
        return self.convergence.pause(task_id, False, incarnation)


Skalds = Skald
