"""``skalds up``: the controller and a node in one process, on one set of backends.

The default is the embedded setup (in-memory event bus, cache and store, shared by
the API and the node because they are the same instances); with Kafka/Redis/Mongo
settings the same two parts run on the real services. The node starts first: it forks
its fork server at start, before the web server and its threads exist.

With a SQLite store (``skalds up --db PATH``, a ``sqlite:`` store URL) the tasks outlive
the process, and so must the node's id: the node restarts the tasks the store says
are its own (Running, Assigning... with ``executor`` = its id) through its reconcile at
start. The id is therefore kept in the database file itself (not derived from its
path, so a moved or renamed file keeps its tasks): the first run keeps its id there,
later runs read it back. An id given explicitly (``--skald-id``, ``SKALD_ID``) wins and
is kept for the runs after it. One ``skalds up`` per database file.
"""

from __future__ import annotations

import os
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType
from typing import TYPE_CHECKING, TextIO

import pluggy

from skalds.errors import SkaldsError
from skalds.node.skald import Skald
from skalds.plugins import Backends, make_plugin_manager, redact_url
from skalds.sqlite import SqliteStore, path_of_url
from skalds.utils.logging import configure_logging, logger
from skalds_controller.bind import check_bind
from skalds_controller.settings import ControllerSettings
from skalds_controller.topics import CONTROLLER_TOPICS

if TYPE_CHECKING:
    from fastapi import FastAPI

    from skalds_controller.server import ControllerServer

__all__ = ["EmbeddedSkalds"]


class EmbeddedSkalds:
    """Runs a controller (every part its mode selects) and a node until stopped.

    Typical use::

        EmbeddedSkalds(ControllerSettings()).run()  # blocks until SIGINT/SIGTERM
    """

    def __init__(
        self,
        settings: ControllerSettings,
        *,
        workers: Sequence[type] = (),
        plugin_manager: pluggy.PluginManager | None = None,
        access_log: bool = False,
        out: TextIO | None = None,
    ) -> None:
        """Prepare; nothing starts before :meth:`run`.

        Args:
            settings: controller and node settings in one (the node runs in node mode).
            workers: worker classes to register besides the installed ones.
            plugin_manager: the plugins to use (default: the installed ones).
            access_log: log one line per API request.
            out: where the "it is up" banner goes (default: stdout).

        Raises:
            InsecureBindError: a non-loopback host without ``SKALDS_API_TOKEN``.
            ConfigError: the SQLite database of a ``sqlite:`` store cannot be opened.
        """
        check_bind(settings)
        if settings.skald_mode != "node":
            settings = settings.model_copy(update={"skald_mode": "node"})
        settings = _with_kept_node_id(settings)
        self.settings = settings
        self.workers = tuple(workers)
        self.pm = plugin_manager or make_plugin_manager(
            load_entry_points=settings.load_entry_points
        )
        self.access_log = access_log
        self.out = out
        self.node: Skald | None = None
        self.server: ControllerServer | None = None
        self._stop = threading.Event()

    def run(self) -> int:
        """Start the node, then serve the API until SIGINT/SIGTERM; stop both; return 0.

        Raises:
            UnknownBackendError: a backend URL needs an adapter that is not installed.
            ServerStartError: the API could not listen (address in use...).
        """
        configure_logging(self.settings.log_level, self.settings.skald_id)
        in_main = threading.current_thread() is threading.main_thread()
        previous = (
            {sig: signal.signal(sig, self._on_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main
            else {}
        )
        backends: Backends | None = None
        try:
            self.node = Skald(self.settings, plugin_manager=self.pm)
            for cls in self.workers:
                self.node.register_task_worker(cls)
            # The controller follows the node's bus subscription: one consumer group,
            # each event delivered to this process once.
            self.node.share_events(CONTROLLER_TOPICS)
            try:
                # Forks the fork server, then builds the backends and waits (retrying)
                # until each answers: the fork server has not imported their clients.
                self.node.start()
            except SkaldsError:
                if self._stop.is_set():
                    return 0  # stopped while waiting for the backends
                raise
            backends = self.node.backends
            # The web stack only now: the node's fork server (forked in start()) is
            # then a copy of a process without it, so each task's fork copies less.
            from skalds_controller.app import create_app
            from skalds_controller.server import ControllerServer

            if not self._stop.is_set():
                app = create_app(
                    self.settings,
                    backends=backends,
                    plugin_manager=self.pm,
                    bus_events=self.node.events,
                )
                self.server = ControllerServer(
                    self.settings,
                    app,
                    access_log=self.access_log,
                    on_ready=lambda url: self._banner(url, app),
                )
                if not self._stop.is_set():
                    self.server.run()
        finally:
            logger.info("stopping: the workers run their release handlers first")
            if self.node is not None:
                self.node.stop()
            if backends is not None:
                backends.close()
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        return 0

    def stop(self) -> None:
        """Ask :meth:`run` to finish (safe from a signal handler or another thread)."""
        self._stop.set()
        if self.node is not None:
            self.node.request_stop()  # ends its wait for the backends, if it waits
        if self.server is not None:
            self.server.stop()

    def _on_signal(self, signum: int, frame: FrameType | None) -> None:
        logger.info("signal %s received; stopping", signum)
        self.stop()

    def _banner(self, url: str, app: FastAPI) -> None:
        """Tell the person who typed ``skalds up`` where to go and what to try."""
        s = self.settings
        urls = (s.resolved_event_bus_url(), s.resolved_cache_url(), s.resolved_store_url())
        db_path = path_of_url(urls[2])
        if all(u.startswith("memory://") for u in urls):
            where = "embedded (in-memory backends: tasks last as long as this process)"
        elif db_path is not None and all(u.startswith("memory://") for u in urls[:2]):
            where = "embedded (in-memory event bus and cache; tasks kept in SQLite)"
        else:
            where = ", ".join(redact_url(u) for u in urls)
        names = self.node.registry.names() if self.node is not None else []
        example = (
            "skalds task create MultiStageJobWorker --set jobId=demo "
            '--set \'subTasks=[{"name": "download", "duration": 1}]\' --wait'
            if "MultiStageJobWorker" in names
            else "skalds task create <ClassName> --set key=value --wait"
        )
        if url != "http://127.0.0.1:8000":
            example += f" --url {url}"
        if s.api_token:
            example += "  (with SKALDS_API_TOKEN set)"
        from skalds_controller.routes.dashboard import DASHBOARD_PATH as dashboard_path

        lines = [
            f"Skalds is up: controller ({s.mode.value} mode) and node {s.skald_id}",
            f"  backends   {where}",
            *([f"  database   {os.path.abspath(db_path)}"] if db_path is not None else []),
            f"  API        {url}/api/docs",
            f"  dashboard  {url}{dashboard_path}",
            f"  workers    {', '.join(names) or 'none installed (pass --worker module:Class)'}",
            f"  try        {example}",
            "Ctrl-C stops everything (running workers get their release handlers).",
        ]
        out = self.out or sys.stdout
        print("\n".join(lines), file=out, flush=True)


_NODE_ID_KEY = "embedded_node_id"


def _with_kept_node_id(settings: ControllerSettings) -> ControllerSettings:
    """``settings`` with the node id kept in the SQLite store's file, if the store is one.

    Raises:
        ConfigError: the database cannot be opened.
    """
    path = path_of_url(settings.resolved_store_url())
    if path is None:
        return settings
    explicit = "skald_id" in settings.model_fields_set
    store = SqliteStore(path)
    try:
        node_id = store.remember(_NODE_ID_KEY, settings.skald_id, overwrite=explicit)
    finally:
        store.close()
    return settings.model_copy(update={"skald_id": node_id})
