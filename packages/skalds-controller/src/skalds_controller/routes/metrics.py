"""``/metrics``: the controller's figures in the Prometheus text format.

Served from a registry of this application's own (never the process-global one), so
two controllers in one process, or the tests, never mix their numbers.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import APIRouter, FastAPI, Request, Response
from prometheus_client import CONTENT_TYPE_LATEST
from starlette.concurrency import run_in_threadpool

from skalds_controller.live_metrics import install_metrics, metrics_of

__all__ = ["router"]


@asynccontextmanager
async def _lifespan(app: FastAPI) -> AsyncIterator[None]:
    """Make sure the metrics exist (and count uptime) from the application's start."""
    install_metrics(app)
    yield


router = APIRouter(tags=["metrics"], lifespan=_lifespan)


@router.get(
    "/metrics",
    response_class=Response,
    responses={200: {"content": {CONTENT_TYPE_LATEST: {}}, "description": "Prometheus text"}},
)
async def prometheus(request: Request) -> Response:
    """Tasks by status, nodes online, events handled/failed, dispatch latency histogram."""
    body = await run_in_threadpool(metrics_of(request.app).render)
    return Response(body, media_type=CONTENT_TYPE_LATEST)
