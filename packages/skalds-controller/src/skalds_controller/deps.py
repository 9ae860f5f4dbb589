"""What routes get from the application (instances, never globals)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from fastapi import Request

from skalds.plugins import Backends
from skalds.shared_subscription import SharedSubscription
from skalds_controller.nodes import NodeDirectory
from skalds_controller.service import TaskService
from skalds_controller.settings import ControllerSettings

if TYPE_CHECKING:
    from skalds_controller.background import Background

__all__ = ["Context", "get_context"]


@dataclass
class Context:
    """Everything a request handler may use."""

    settings: ControllerSettings
    backends: Backends
    nodes: NodeDirectory
    tasks: TaskService
    background: Background | None = None
    """The monitor/dispatcher of this app (set at start-up; None before, or in tests)."""
    events: SharedSubscription | None = None
    """The bus subscription the dispatcher and the live events share (None: each makes its own)."""


async def get_context(request: Request) -> Context:
    """FastAPI dependency: the application's context.

    ``async`` although it waits on nothing: FastAPI runs a plain ``def`` dependency
    on its thread pool, a thread hand-off per request for one attribute read.
    """
    context: Context = request.app.state.context
    return context
