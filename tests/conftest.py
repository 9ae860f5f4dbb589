"""Fixtures shared by every test module."""

from __future__ import annotations

import os

import pytest

IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")


def require_service(name: str, reachable: bool, where: str) -> None:
    """Skip when a real service is missing locally; fail under CI (``CI=true``)."""
    if reachable:
        return
    message = f"{name} is not reachable at {where}; start it with: scripts/services up"
    if IN_CI:
        pytest.fail(message)
    pytest.skip(message)
