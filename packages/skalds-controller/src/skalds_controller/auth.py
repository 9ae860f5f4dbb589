"""Bearer-token authentication and request-size limits for every endpoint."""

from __future__ import annotations

import hmac

from starlette.datastructures import Headers, QueryParams
from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from skalds_controller.errors import body

__all__ = ["GuardMiddleware"]

_OPEN_PATHS = frozenset({"/", "/api/system/health"})
_DASHBOARD = "/dashboard"
"""The dashboard's shell and static files: they hold the login screen, and no data."""


class GuardMiddleware:
    """Checks ``Authorization: Bearer <token>`` (constant-time) and the body size.

    SSE clients that cannot set headers (``EventSource``) may pass ``?token=``.
    ``/`` and the health check stay open so load balancers can probe; so does the
    dashboard's page (``/dashboard``, ``/dashboard/...``), which asks for the token itself.

    Plain ASGI rather than Starlette's ``BaseHTTPMiddleware``, which wraps every
    request and response in tasks and streams of its own: that cost more CPU than
    creating the task did.
    """

    def __init__(self, app: ASGIApp, token: str | None, max_body_bytes: int) -> None:
        self.app = app
        self.token = token
        self.max_body_bytes = max_body_bytes

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = Headers(scope=scope)
        length = headers.get("content-length")
        if length is not None and (not length.isdigit() or int(length) > self.max_body_bytes):
            refusal = JSONResponse(
                body("PAYLOAD_TOO_LARGE", f"request body over {self.max_body_bytes} bytes"),
                status_code=413,
            )
            await refusal(scope, receive, send)
            return
        path = scope["path"]
        if self.token and not _is_open(path) and not self._authorized(scope, headers, path):
            refusal = JSONResponse(
                body("UNAUTHORIZED", "missing or wrong API token"),
                status_code=401,
                headers={"WWW-Authenticate": "Bearer"},
            )
            await refusal(scope, receive, send)
            return
        await self.app(scope, receive, send)

    def _authorized(self, scope: Scope, headers: Headers, path: str) -> bool:
        assert self.token is not None
        header = headers.get("authorization", "")
        given = header[7:] if header.lower().startswith("bearer ") else ""
        if not given and path.startswith("/api/events/"):
            given = QueryParams(scope.get("query_string", b"")).get("token", "")
        return hmac.compare_digest(given.encode(), self.token.encode())


def _is_open(path: str) -> bool:
    """Paths served without a token: probes and the dashboard's shell, never ``/api``."""
    if path in _OPEN_PATHS:
        return True
    inside = path == _DASHBOARD or path.startswith(_DASHBOARD + "/")
    return inside and ".." not in path.split("/")
