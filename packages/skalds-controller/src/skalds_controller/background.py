"""The controller's background parts: monitor and dispatcher, chosen by the mode.

:func:`start_background` runs at application start-up and returns the function that
stops what it started. Nothing runs in ``CONTROLLER`` mode.
"""

from __future__ import annotations

from collections.abc import Callable

from skalds_controller.deps import Context

__all__ = ["start_background"]


def start_background(context: Context) -> Callable[[], None]:
    """Start the monitor and/or dispatcher that ``context.settings.mode`` asks for."""

    def stop() -> None:
        return None

    return stop
