"""Bearer-token authentication and request-size limits for every endpoint."""

from __future__ import annotations

import hmac

from fastapi import Request
from starlette.middleware.base import BaseHTTPMiddleware, RequestResponseEndpoint
from starlette.responses import JSONResponse, Response
from starlette.types import ASGIApp

from skalds_controller.errors import body

__all__ = ["GuardMiddleware", "is_loopback"]

_OPEN_PATHS = frozenset({"/", "/api/system/health"})
_DASHBOARD = "/dashboard"
"""The dashboard's shell and static files: they hold the login screen, and no data."""


def is_loopback(host: str) -> bool:
    """True for addresses only this machine can reach."""
    return host in ("localhost", "::1") or host.startswith("127.")


class GuardMiddleware(BaseHTTPMiddleware):
    """Checks ``Authorization: Bearer <token>`` (constant-time) and the body size.

    SSE clients that cannot set headers (``EventSource``) may pass ``?token=``.
    ``/`` and the health check stay open so load balancers can probe; so does the
    dashboard's page (``/dashboard``, ``/dashboard/...``), which asks for the token itself.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        super().__init__(app)
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def dispatch(self, request: Request, call_next: RequestResponseEndpoint) -> Response:
        length = request.headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            return JSONResponse(
                body("PAYLOAD_TOO_LARGE", f"request body over {self.max_body_bytes} bytes"),
                status_code=413,
            )
        if self.token and not _is_open(request.url.path) and not self._authorized(request):
            return JSONResponse(
                body("UNAUTHORIZED", "missing or wrong API token"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
        return await call_next(request)

    def _authorized(self, request: Request) -> bool:
        assert self.token is not None
        header = request.headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not given and request.url.path.startswith("/api/events/"):
            given = request.query_params.get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())


def _is_open(path: str) -> bool:
    """Paths served without a token: probes and the dashboard's shell, never ``/api``."""
    if path in _OPEN_PATHS:
        return True
    inside = path == _DASHBOARD or path.startswith(_DASHBOARD + "/")
    return inside and ".." not in path.split("/")
