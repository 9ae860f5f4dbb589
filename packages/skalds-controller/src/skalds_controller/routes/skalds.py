"""Routes of the skalds resource (to be filled in)."""

from __future__ import annotations

from fastapi import APIRouter

router = APIRouter(tags=["skalds"])
