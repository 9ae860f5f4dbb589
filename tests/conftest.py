"""Fixtures shared by every test module."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

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


# -- shared by the fencing and convergence tests (modules may define their own) --------------


@pytest.fixture
def controller(skalds_backends) -> Iterator[Callable[..., Any]]:
    """``start(**settings)``: a controller's API (a TestClient) and background on the
    test's backends; stopped at the end."""
    from fastapi.testclient import TestClient

    from skalds_controller import ControllerSettings, create_app
    from skalds_controller.background import Background, start_background

    started: list[Background] = []

    def start(**settings: Any) -> tuple[TestClient, Background]:
        settings.setdefault("load_entry_points", False)
        app = create_app(ControllerSettings(**settings), backends=skalds_backends)
        background = start_background(app.state.context)
        started.append(background)
        return TestClient(app), background

    yield start
    for background in started:
        background()


@pytest.fixture
def make_node(skalds_node_factory) -> Callable[..., Any]:
    """``make(**config)``: a started node running ProbeWorker, with a short grace period."""
    from tests.workers import ProbeWorker

    def make(**config: Any) -> Any:
        config.setdefault("cancel_grace_seconds", 0.5)
        return skalds_node_factory(workers=[ProbeWorker], **config)

    return make


@pytest.fixture
def traces(tmp_path) -> Iterator[Callable[[str], Path]]:
    """``trace(task_id)``: a task's ProbeWorker trace file; its leftover worker processes
    are killed at the end (after a failure)."""
    from tests.fencing_helpers import kill_leftovers

    made: list[Path] = []

    def trace(task_id: str) -> Path:
        path = tmp_path / f"{task_id}.trace"
        made.append(path)
        return path

    yield trace
    for path in made:
        kill_leftovers(path)
