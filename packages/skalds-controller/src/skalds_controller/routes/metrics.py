"""Routes of the metrics resource (to be filled in)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["metrics"])
