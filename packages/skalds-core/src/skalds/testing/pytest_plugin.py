"""Pytest fixtures for testing your own workers on the in-memory backends.

Installed with skalds (``pytest11`` entry point), so in any project::

    def test_my_worker(skalds_node_factory):
        node = skalds_node_factory(workers=[MyWorker])
        ...

The fixtures build fresh backends per test; nothing is shared between tests.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

import pytest

from skalds.config.skald_config import SkaldConfig
from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.plugins import Backends

__all__ = ["skalds_backends", "skalds_node_factory"]


@pytest.fixture
def skalds_backends() -> Iterator[Backends]:
    """Fresh in-memory event bus, cache and store."""
    backends = Backends(MemoryEventBus(), MemoryCache(), MemoryStore())
    yield backends
    backends.close()


@pytest.fixture
def skalds_node_factory(skalds_backends: Backends, tmp_path: Any) -> Iterator[Callable[..., Any]]:
    """Return ``make(workers=[...], **config)`` that starts nodes on the shared backends.

    Nodes are stopped at the end of the test. Entry-point workers are not loaded unless
    ``load_entry_points=True`` is passed.
    """
    from skalds.node.skald import Skald

    nodes: list[Skald] = []

    def make(workers: Sequence[type] = (), **settings: Any) -> Skald:
        settings.setdefault("skald_id", f"test-{uuid.uuid4().hex[:6]}")
        settings.setdefault("skald_mode", "node")
        settings.setdefault("load_entry_points", False)
        settings.setdefault("log_path", str(tmp_path / "logs"))
        settings.setdefault("cancel_grace_seconds", 2.0)
        node = Skald(SkaldConfig(**settings), backends=skalds_backends)
        for cls in workers:
            node.register_task_worker(cls)
        node.start()
        nodes.append(node)
        return node

    yield make
    for node in reversed(nodes):
        node.stop()
