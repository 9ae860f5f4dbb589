"""Serve the controller's API with uvicorn: ``skalds controller`` and ``skalds up`` use this.

The server refuses to listen beyond this machine without an API token, reports the
address it really listens on (``port=0`` picks a free one), and turns SIGINT/SIGTERM
into a clean stop that returns normally, so callers can stop what they started too.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType
from typing import Any

import uvicorn
from fastapi import FastAPI

from skalds.errors import SkaldsError
from skalds_controller.bind import InsecureBindError, check_bind
from skalds_controller.settings import ControllerSettings

__all__ = [
    "ControllerServer",
    "InsecureBindError",
    "ServerStartError",
    "check_bind",
    "serve",
]

_GRACEFUL_SHUTDOWN_SECONDS = 3
"""Open streams (SSE, followed logs) get this long to end before the server closes them."""


class ServerStartError(SkaldsError):
    """uvicorn could not start (address in use, application start-up failed)."""


def _format_url(host: str, port: int) -> str:
    shown = "127.0.0.1" if host in ("0.0.0.0", "") else host
    if ":" in shown:
        shown = f"[{shown}]"  # an IPv6 literal
    return f"http://{shown}:{port}"


class _Server(uvicorn.Server):
    """A uvicorn server that says when it is ready, and on which port."""

    def __init__(self, config: uvicorn.Config, on_started: Callable[[int], None]) -> None:
        super().__init__(config)
        self._on_started = on_started

    async def startup(self, sockets: Any = None) -> None:
        await super().startup(sockets=sockets)
        if self.started:
            port = int(self.servers[0].sockets[0].getsockname()[1])
            self._on_started(port)


class ControllerServer:
    """One uvicorn server for one controller application.

    Use :meth:`run` in the foreground (it handles SIGINT/SIGTERM when called from the
    main thread), or call it on a thread and end it with :meth:`stop` (tests, benchmarks).
    """

    def __init__(
        self,
        settings: ControllerSettings,
        app: FastAPI,
        *,
        access_log: bool = False,
        on_ready: Callable[[str], None] | None = None,
    ) -> None:
        """Prepare the server; nothing listens before :meth:`run`.

        Args:
            settings: host, port, log level (and the token check).
            app: the application, usually ``create_app(settings, ...)``.
            access_log: log one line per request.
            on_ready: called with the base URL once the server accepts requests.

        Raises:
            InsecureBindError: see :func:`check_bind`.
        """
        check_bind(settings)
        self.settings = settings
        self.url: str | None = None
        self.ready = threading.Event()
        self._on_ready = on_ready
        self._stop_requested = False
        config = uvicorn.Config(
            app,
            host=settings.host,
            port=settings.port,
            log_level=settings.log_level.lower(),
            access_log=access_log,
            lifespan="on",
            timeout_graceful_shutdown=_GRACEFUL_SHUTDOWN_SECONDS,
        )
        self._server = _Server(config, self._started)

    def _started(self, port: int) -> None:
        self.url = _format_url(self.settings.host, port)
        self.ready.set()
        if self._stop_requested:  # a signal came before uvicorn took over the handlers
            self._server.should_exit = True
        if self._on_ready is not None:
            self._on_ready(self.url)

    def run(self) -> None:
        """Serve until :meth:`stop`, SIGINT or SIGTERM; return once the server is down.

        Raises:
            ServerStartError: the address is taken or the application failed to start.
        """
        in_main = threading.current_thread() is threading.main_thread()
        # uvicorn re-raises the signal it caught once it has shut down, for the handler
        # that was there before it. Ours only notes it, so that the caller's clean-up
        # runs and the process exits 0 instead of being killed by its own signal.
        previous = (
            {sig: signal.signal(sig, self._note_signal) for sig in (signal.SIGINT, signal.SIGTERM)}
            if in_main
            else {}
        )
        try:
            self._server.run()
        except SystemExit as exc:  # uvicorn exits when it cannot bind or start the app
            raise ServerStartError(
                f"the controller could not start on {self.settings.host}:{self.settings.port} "
                "(see the error above)"
            ) from exc
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)
        if not self.ready.is_set() and not self._stop_requested:
            raise ServerStartError("the controller stopped before it was ready (see the log above)")

    def _note_signal(self, signum: int, frame: FrameType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Ask the server to finish (open requests get a short grace period)."""
        self._stop_requested = True
        self._server.should_exit = True


def serve(
    settings: ControllerSettings,
    app: FastAPI | None = None,
    *,
    access_log: bool = False,
    on_ready: Callable[[str], None] | None = None,
) -> None:
    """Run the controller in the foreground until SIGINT/SIGTERM.

    Args:
        settings: the controller's settings (host, port, mode, backends...).
        app: the application; by default ``create_app(settings)``, which makes the
            backends that ``settings`` name.
        access_log: log one line per request.
        on_ready: called with the base URL once the server accepts requests.

    Raises:
        InsecureBindError: a non-loopback host without ``SKALDS_API_TOKEN``.
        ServerStartError: the address is taken or the application failed to start.
    """
    check_bind(settings)  # before any backend is built
    if app is None:
        from skalds_controller.app import create_app

        app = create_app(settings)
    ControllerServer(settings, app, access_log=access_log, on_ready=on_ready).run()
