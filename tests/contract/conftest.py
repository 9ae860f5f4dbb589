"""Backend fixtures for the contract suites: one parameter per backend.

Each suite asks for ``event_bus``, ``cache`` or ``store`` and runs once per backend in
the lists below; adapters add their names and a ``<name>_<port>`` fixture.
"""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.ports import Cache, EventBus, Store

EVENT_BUS_BACKENDS = ["memory"]
CACHE_BACKENDS = ["memory"]
STORE_BACKENDS = ["memory"]


@pytest.fixture
def memory_event_bus() -> Iterator[EventBus]:
    bus = MemoryEventBus()
    yield bus
    bus.close()


@pytest.fixture
def memory_cache() -> Iterator[Cache]:
    yield MemoryCache()


@pytest.fixture
def memory_store() -> Iterator[Store]:
    yield MemoryStore()


@pytest.fixture(params=EVENT_BUS_BACKENDS)
def event_bus(request: pytest.FixtureRequest) -> EventBus:
    return request.getfixturevalue(f"{request.param}_event_bus")


@pytest.fixture(params=CACHE_BACKENDS)
def cache(request: pytest.FixtureRequest) -> Cache:
    return request.getfixturevalue(f"{request.param}_cache")


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")
