"""What routes get from the application (instances, never globals)."""

from __future__ import annotations

from dataclasses import dataclass

from fastapi import Request

from skalds.plugins import Backends
from skalds_controller.nodes import NodeDirectory
from skalds_controller.service import TaskService
from skalds_controller.settings import ControllerSettings

__all__ = ["Context", "get_context"]


@dataclass
class Context:
    """Everything a request handler may use."""

    settings: ControllerSettings
    backends: Backends
    nodes: NodeDirectory
    tasks: TaskService


def get_context(request: Request) -> Context:
    """FastAPI dependency: the application's context."""
    context: Context = request.app.state.context
    return context
