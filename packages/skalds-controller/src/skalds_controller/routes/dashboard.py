"""``/dashboard``: the web dashboard, a single page of plain ES modules shipped in this package.

The shell and its static files load without a token (the login screen is part of
them); every figure the page shows comes from ``/api``, which stays guarded. Any
``/dashboard/...`` path that is not a static file gets the same ``index.html`` so the
page's own router can show it (history routing: links and reloads work).
"""

from __future__ import annotations

from importlib import resources
from pathlib import Path

from fastapi import APIRouter, FastAPI
from fastapi.responses import FileResponse, RedirectResponse
from starlette.types import ASGIApp, Receive, Scope, Send

from skalds_controller.errors import ApiError

__all__ = ["DASHBOARD_PATH", "BrowserRootRedirect", "install_dashboard", "router"]

DASHBOARD_PATH = "/dashboard"
_ROOT = Path(str(resources.files("skalds_controller") / "dashboard"))
_STATIC = _ROOT / "static"
_CONTENT_TYPES = {
    ".js": "text/javascript; charset=utf-8",
    ".css": "text/css; charset=utf-8",
    ".html": "text/html; charset=utf-8",
    ".svg": "image/svg+xml",
    ".png": "image/png",
    ".ico": "image/x-icon",
}
# The page changes with the package; "no-cache" lets browsers revalidate cheaply.
_HEADERS = {"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"}

router = APIRouter(tags=["dashboard"], include_in_schema=False)


def _shell() -> FileResponse:
    return FileResponse(_ROOT / "index.html", media_type=_CONTENT_TYPES[".html"], headers=_HEADERS)


@router.get(DASHBOARD_PATH)
def dashboard() -> FileResponse:
    """The single page; its router shows the overview."""
    return _shell()


@router.get(DASHBOARD_PATH + "/static/{path:path}")
def static_file(path: str) -> FileResponse:
    """A file of the page (modules, styles), with its content type; nothing outside ``static``."""
    target = (_STATIC / path).resolve()
    media_type = _CONTENT_TYPES.get(target.suffix)
    if media_type is None or not target.is_relative_to(_STATIC.resolve()) or not target.is_file():
        raise ApiError(404, "NOT_FOUND", f"no dashboard file {path!r}")
    return FileResponse(target, media_type=media_type, headers=_HEADERS)


@router.get(DASHBOARD_PATH + "/{path:path}")
def dashboard_page(path: str) -> FileResponse:
    """Any other dashboard address (``/dashboard/tasks/abc``): the page routes it itself."""
    return _shell()


class BrowserRootRedirect:
    """Sends a browser that opens ``/`` to the dashboard; API clients still get the JSON.

    A browser asks for ``text/html`` first; ``curl``, ``httpx`` and the tests do not.
    """

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http" and scope["path"] == "/" and scope["method"] in ("GET", "HEAD"):
            accept = dict(scope["headers"]).get(b"accept", b"").decode("latin-1")
            if "text/html" in accept:
                await RedirectResponse(DASHBOARD_PATH, status_code=307)(scope, receive, send)
                return
        await self.app(scope, receive, send)


def install_dashboard(app: FastAPI) -> None:
    """Serve the dashboard on ``app`` and send browsers from ``/`` to it."""
    app.include_router(router)
    app.add_middleware(BrowserRootRedirect)
