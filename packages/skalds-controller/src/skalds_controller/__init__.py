"""Skalds System Controller: REST API, monitor and dispatcher (FastAPI).

``create_app`` is imported on first use: ``skalds up`` reads the settings first and
loads the web stack only after its node has forked its fork server (see
:mod:`skalds_controller.bind`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skalds.utils.lazy import lazy_attributes
from skalds_controller.settings import ControllerMode, ControllerSettings, DispatchStrategy

if TYPE_CHECKING:
    from skalds_controller.app import create_app

__all__ = ["ControllerMode", "ControllerSettings", "DispatchStrategy", "create_app"]

__getattr__ = lazy_attributes(__name__, {"create_app": "skalds_controller.app"})
