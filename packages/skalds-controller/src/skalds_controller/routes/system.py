"""``/`` and ``/api/system``: what runs and whether its backends answer."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Depends

from skalds.__about__ import __version__
from skalds.plugins import redact_url
from skalds_controller.deps import Context, get_context

router = APIRouter(tags=["system"])
Ctx = Annotated[Context, Depends(get_context)]


@router.get("/")
def root(ctx: Ctx) -> dict[str, Any]:
    return {
        "name": "Skalds System Controller",
        "version": __version__,
        "mode": ctx.settings.mode.value,
        "docs": "/api/docs",
    }


@router.get("/api/system/health")
def health(ctx: Ctx) -> dict[str, Any]:
    """Each backend's real state (a ping), and the overall verdict."""
    s = ctx.settings
    checks = {}
    for name, backend, url in (
        ("eventBus", ctx.backends.event_bus, s.resolved_event_bus_url()),
        ("cache", ctx.backends.cache, s.resolved_cache_url()),
        ("store", ctx.backends.store, s.resolved_store_url()),
    ):
        try:
            ok = bool(backend.ping())
        except Exception:
            ok = False
        checks[name] = {"status": "up" if ok else "down", "url": redact_url(url)}
    healthy = all(c["status"] == "up" for c in checks.values())
    return {"status": "healthy" if healthy else "unhealthy", "backends": checks}
