"""The FastAPI application of the System Controller, built from instances (no globals)."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

import pluggy
from fastapi import FastAPI
from fastapi.middleware.cors import CORSMiddleware

from skalds.__about__ import __version__
from skalds.plugins import Backends, make_backends, make_plugin_manager
from skalds.shared_subscription import SharedSubscription
from skalds_controller.auth import GuardMiddleware
from skalds_controller.background import start_background
from skalds_controller.deps import Context
from skalds_controller.errors import install_error_handlers
from skalds_controller.live_metrics import install_metrics
from skalds_controller.nodes import NodeDirectory
from skalds_controller.routes import events, metrics, skalds, system, tasks
from skalds_controller.routes.dashboard import install_dashboard
from skalds_controller.service import TaskService
from skalds_controller.settings import ControllerSettings
from skalds_controller.topics import CONTROLLER_TOPICS

__all__ = ["create_app"]


def create_app(
    settings: ControllerSettings | None = None,
    *,
    backends: Backends | None = None,
    plugin_manager: pluggy.PluginManager | None = None,
    bus_events: SharedSubscription | None = None,
) -> FastAPI:
    """Build the API for ``settings``; pass ``backends`` to share them (tests, ``skalds up``).

    Args:
        settings: the controller's settings (default: from the environment).
        backends: the event bus, cache and store to use (default: made from settings).
        plugin_manager: the plugins that make the backends.
        bus_events: a bus subscription to follow instead of one of the controller's own
            (``skalds up`` shares its node's): it must consume ``CONTROLLER_TOPICS``;
            its owner closes it.
    """
    settings = settings or ControllerSettings()
    if backends is None:
        pm = plugin_manager or make_plugin_manager(load_entry_points=True)
        backends = make_backends(pm, settings)
    controller_id = settings.controller_id or f"controller-{uuid.uuid4().hex[:8]}"
    nodes = NodeDirectory(backends.cache)
    context = Context(
        settings,
        backends,
        nodes,
        TaskService(backends, nodes, initiator=controller_id),
        # One consumer group for the dispatcher and the live events: each event reaches
        # this controller once (see skalds.shared_subscription).
        events=bus_events
        or SharedSubscription(
            backends.event_bus,
            f"{controller_id}.events",
            CONTROLLER_TOPICS,
            name="controller events",
        ),
    )

    @asynccontextmanager
    async def lifespan(app: FastAPI) -> AsyncIterator[None]:
        context.background = stop = start_background(context, observer=install_metrics(app))
        try:
            yield
        finally:
            stop()
            if bus_events is None and context.events is not None:
                context.events.close()  # after the live events stopped (their lifespan is inside)

    app = FastAPI(
        lifespan=lifespan,
        title="Skalds System Controller",
        version=__version__,
        docs_url="/api/docs",
        redoc_url=None,
        openapi_url="/api/openapi.json",
    )
    app.state.context = context
    install_error_handlers(app)
    app.add_middleware(
        GuardMiddleware, token=settings.api_token, max_body_bytes=settings.max_body_bytes
    )
    if settings.cors_origins:
        app.add_middleware(
            CORSMiddleware,
            allow_origins=settings.cors_origins,
            allow_methods=["*"],
            allow_headers=["*"],
        )
    for module in (system, tasks, skalds, events, metrics):
        app.include_router(module.router)
    install_dashboard(app)
    return app
