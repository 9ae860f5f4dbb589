"""Where the API may listen: a non-loopback address needs an API token.

Kept apart from :mod:`skalds_controller.server` (uvicorn) so ``skalds up`` can check
its settings before importing the web stack, which it does only after the node has
forked its fork server (every task process is a fork of that one: the less it has
imported, the cheaper each task's ``fork()`` and exit).
"""

from __future__ import annotations

from skalds.errors import ConfigError
from skalds_controller.settings import ControllerSettings

__all__ = ["InsecureBindError", "check_bind", "is_loopback"]


class InsecureBindError(ConfigError):
    """The API would be reachable from other machines without a token."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    return host in ("localhost", "::1") or host.startswith("127.")


def check_bind(settings: ControllerSettings) -> None:
    """Refuse a non-loopback address without ``SKALDS_API_TOKEN``.

    Raises:
        InsecureBindError: ``settings.host`` is reachable from other machines and no
            API token is set.
    """
    if settings.api_token or is_loopback(settings.host):
        return
    raise InsecureBindError(
        f"refusing to listen on {settings.host}:{settings.port} without an API token: "
        "anyone who reaches this address could run and stop tasks. Set SKALDS_API_TOKEN "
        "(clients send 'Authorization: Bearer <token>'), or listen on 127.0.0.1."
    )
