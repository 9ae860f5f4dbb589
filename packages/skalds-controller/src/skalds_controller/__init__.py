"""Skalds System Controller: REST API, monitor and dispatcher (FastAPI)."""

from __future__ import annotations

from skalds_controller.app import create_app
from skalds_controller.settings import ControllerMode, ControllerSettings, DispatchStrategy

__all__ = ["ControllerMode", "ControllerSettings", "DispatchStrategy", "create_app"]
