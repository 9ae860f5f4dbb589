"""An API client on the in-memory backends, with a node running the test workers."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from fastapi.testclient import TestClient

from skalds_controller import ControllerSettings, create_app
from tests.helpers import collected_log
from tests.workers import ProbeWorker


@pytest.fixture
def node(skalds_node_factory):
    return skalds_node_factory(workers=[ProbeWorker], cancel_grace_seconds=1.0)


@pytest.fixture
def settings() -> ControllerSettings:
    return ControllerSettings(load_entry_points=False)


@pytest.fixture
def client(skalds_backends, node, settings) -> Iterator[TestClient]:
    app = create_app(settings, backends=skalds_backends)
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def log_lines() -> Iterator[list[str]]:
    """Messages of the ``skalds`` logger (INFO and above) during the test."""
    with collected_log() as lines:
        yield lines
