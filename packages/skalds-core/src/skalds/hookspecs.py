"""The plugin contract of Skalds: the map of the system.

Adapters and extensions implement these hooks and register through the entry-point
group ``skalds.plugins``; the in-memory defaults are ordinary plugins too
(:data:`skalds.plugins.DEFAULT_PLUGINS`), marked ``trylast`` so an adapter answers
first for its own URL schemes.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import pluggy

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds.ports.cache import Cache
    from skalds.ports.event_bus import EventBus
    from skalds.ports.runtime import WorkerListener, WorkerRuntime
    from skalds.ports.store import Store
    from skalds.worker.registry import WorkerRegistry

__all__ = ["PROJECT_NAME", "hookimpl", "hookspec"]

PROJECT_NAME = "skalds"

hookspec = pluggy.HookspecMarker(PROJECT_NAME)
hookimpl = pluggy.HookimplMarker(PROJECT_NAME)


@hookspec(firstresult=True)
def skalds_make_event_bus(url: str, config: SkaldConfig) -> EventBus | None:
    """Build the event bus for ``url``; first non-None wins.

    :param url: backend URL such as ``memory://`` or ``kafka://127.0.0.1:9092``.
    :param config: the node's or controller's configuration.
    :return: an :class:`~skalds.ports.event_bus.EventBus`, or ``None`` when the
        scheme is not this plugin's.
    """


@hookspec(firstresult=True)
def skalds_make_cache(url: str, config: SkaldConfig) -> Cache | None:
    """Build the cache for ``url``; first non-None wins.

    :param url: backend URL such as ``memory://`` or ``redis://localhost:6379/0``.
    :param config: the node's or controller's configuration.
    :return: a :class:`~skalds.ports.cache.Cache`, or ``None`` for other schemes.
    """


@hookspec(firstresult=True)
def skalds_make_store(url: str, config: SkaldConfig) -> Store | None:
    """Build the task store for ``url``; first non-None wins.

    :param url: backend URL such as ``memory://``, ``sqlite:///var/skalds.db`` or
        ``mongodb://host:27017/``.
    :param config: the node's or controller's configuration.
    :return: a :class:`~skalds.ports.store.Store`, or ``None`` for other schemes.
    """


@hookspec(firstresult=True)
def skalds_make_worker_runtime(
    url: str, config: SkaldConfig, registry: WorkerRegistry, listener: WorkerListener
) -> WorkerRuntime | None:
    """Build the runtime that starts worker processes; first non-None wins.

    :param url: runtime URL; ``local://`` runs workers as local processes.
    :param config: the node's configuration (grace periods, log settings...).
    :param registry: the worker classes this node may run.
    :param listener: receives started/heartbeat/update/exit reports.
    :return: a :class:`~skalds.ports.runtime.WorkerRuntime`, or ``None``.
    """


@hookspec
def skalds_register_workers() -> list[type]:  # type: ignore[empty-body]
    """Return TaskWorker classes to register on every node; results from all plugins add up.

    :return: a list of :class:`~skalds.worker.baseclass.AbstractTaskWorker` subclasses.
    """


@hookspec
def skalds_task_status_changed(
    task_id: str, status: str, skald_id: str, reason: str | None
) -> None:
    """Tell plugins that a task on this node changed status (metrics, audit, alerts).

    Called on the node's supervisor thread: keep it quick and never raise; an
    exception is logged and does not stop the node.

    :param task_id: the task.
    :param status: the new :class:`~skalds.model.task.TaskLifecycleStatus` value.
    :param skald_id: the node reporting it.
    :param reason: why, for Failed and Cancelled (exception text, exit signal...).
    """
