"""The controller's background parts: monitor and dispatcher, chosen by the mode.

:func:`start_background` runs at application start-up and returns a
:class:`Background`: calling it stops what it started. Nothing runs in
``CONTROLLER`` mode; ``MONITOR`` runs the monitor; ``DISPATCHER`` runs both.

Each part acts only while it holds its lease in the cache (``monitor`` and
``dispatcher`` are separate leases, so a MONITOR-mode controller never keeps a
DISPATCHER-mode one from dispatching). Every controller keeps watching, so the
other one takes over within a lease TTL when the leader dies.
"""

from __future__ import annotations

from typing import Any

from skalds.utils.logging import logger
from skalds_controller.deps import Context
from skalds_controller.dispatcher import Dispatcher, DispatchObserver
from skalds_controller.lease import Lease
from skalds_controller.monitor import Monitor
from skalds_controller.settings import ControllerMode, DispatchStrategy

__all__ = ["Background", "start_background"]


class Background:
    """What :func:`start_background` started; call it (no arguments) to stop everything."""

    def __init__(self) -> None:
        self.monitor: Monitor | None = None
        self.dispatcher: Dispatcher | None = None
        self.leases: list[Lease] = []
        self._stopped = False

    def set_strategy(self, name: DispatchStrategy | str) -> DispatchStrategy:
        """Switch the dispatch strategy at runtime.

        Raises:
            RuntimeError: this controller runs no dispatcher (mode below DISPATCHER).
            ValueError: ``name`` is not a strategy.
        """
        if self.dispatcher is None:
            raise RuntimeError("this controller runs no dispatcher (SYSTEM_CONTROLLER_MODE)")
        return self.dispatcher.set_strategy(name)

    def describe(self) -> dict[str, Any]:
        """State of the monitor and dispatcher, for status pages."""
        return {
            "monitor": self.monitor.describe() if self.monitor else None,
            "dispatcher": self.dispatcher.describe() if self.dispatcher else None,
        }

    def __call__(self) -> None:
        """Stop the dispatcher, then the monitor, then hand the leases back."""
        if self._stopped:
            return
        self._stopped = True
        for part in (self.dispatcher, self.monitor):
            if part is not None:
                part.stop()
        for lease in self.leases:
            lease.stop()


def start_background(context: Context, *, observer: DispatchObserver | None = None) -> Background:
    """Start the monitor and/or dispatcher that ``context.settings.mode`` asks for.

    Args:
        context: the application's settings, backends and services.
        observer: receives dispatch latencies and bus event counts (the app's metrics).

    Returns:
        What was started; call it to stop everything (the app's lifespan does).
    """
    settings = context.settings
    background = Background()
    if not settings.runs(ControllerMode.MONITOR):
        return background
    backends = context.backends
    controller_id = context.tasks.initiator
    monitor_lease = Lease(backends.cache, "monitor", controller_id, ttl=settings.lease_ttl)
    monitor = Monitor(
        backends,
        settings,
        controller_id=controller_id,
        lease=monitor_lease,
    )
    background.monitor = monitor
    background.leases.append(monitor_lease)
    if settings.runs(ControllerMode.DISPATCHER):
        dispatch_lease = Lease(backends.cache, "dispatcher", controller_id, ttl=settings.lease_ttl)
        dispatcher = Dispatcher(
            backends,
            settings,
            controller_id=controller_id,
            lease=dispatch_lease,
            observer=observer,
            events=context.events,
        )
        monitor.add_listener(dispatcher.on_node_change)
        context.tasks.on_created.append(dispatcher.offer)
        if settings.dispatcher_place_on_create:
            context.tasks.placer = dispatcher
        background.dispatcher = dispatcher
        background.leases.append(dispatch_lease)
    for lease in background.leases:
        lease.start()
    monitor.start()
    if background.dispatcher is not None:
        background.dispatcher.start()
    logger.info(
        "controller %s: %s running (%s)",
        controller_id,
        "monitor and dispatcher" if background.dispatcher else "monitor",
        settings.dispatcher_strategy.value if background.dispatcher else "no dispatching",
    )
    return background
