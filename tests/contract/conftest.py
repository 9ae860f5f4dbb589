"""Backend fixtures for the contract suites: one parameter per backend.

Each suite asks for ``event_bus``, ``cache`` or ``store`` and runs once per backend.
The in-memory backends and the SQLite store (a file under ``tmp_path``) are defined
here; each adapter's fixtures live in ``tests/backends/<adapter>.py``, which names its
backends in ``BACKEND_NAMES`` (``("event_bus", "kafka")`` → fixture ``kafka_event_bus``).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from skalds.memory import MemoryCache, MemoryEventBus, MemoryStore
from skalds.ports import Cache, EventBus, Store
from skalds.sqlite import SqliteStore
from tests.backends import kafka as _kafka
from tests.backends import mongo as _mongo
from tests.backends import redis as _redis
from tests.backends.kafka import *  # noqa: F403 - adapter fixtures
from tests.backends.mongo import *  # noqa: F403
from tests.backends.redis import *  # noqa: F403

_ADAPTERS = [*_kafka.BACKEND_NAMES, *_redis.BACKEND_NAMES, *_mongo.BACKEND_NAMES]
EVENT_BUS_BACKENDS = ["memory"] + [name for port, name in _ADAPTERS if port == "event_bus"]
CACHE_BACKENDS = ["memory"] + [name for port, name in _ADAPTERS if port == "cache"]
STORE_BACKENDS = ["memory", "sqlite"] + [name for port, name in _ADAPTERS if port == "store"]


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


@pytest.fixture
def sqlite_store(tmp_path: Path) -> Iterator[Store]:
    store = SqliteStore(str(tmp_path / "tasks.db"))
    yield store
    store.close()


@pytest.fixture(params=EVENT_BUS_BACKENDS)
def event_bus(request: pytest.FixtureRequest) -> EventBus:
    return request.getfixturevalue(f"{request.param}_event_bus")


@pytest.fixture(params=CACHE_BACKENDS)
def cache(request: pytest.FixtureRequest) -> Cache:
    return request.getfixturevalue(f"{request.param}_cache")


@pytest.fixture(params=STORE_BACKENDS)
def store(request: pytest.FixtureRequest) -> Store:
    return request.getfixturevalue(f"{request.param}_store")
