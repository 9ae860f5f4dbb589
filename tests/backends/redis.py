"""Fixtures for the redis adapter's contract runs: Redis 7.0 and Valkey 9.

The cache contract runs twice, once per server, because they take different paths
for per-field hash expiry: Redis 7.0 has no HPEXPIRE (the adapter emulates it),
Valkey 9 has it. Servers come from ``scripts/services`` (override with
``SKALDS_TEST_REDIS_URL`` / ``SKALDS_TEST_VALKEY_URL``); a missing one skips locally
and fails under ``CI=true``.
"""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Iterator
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

import pytest

from tests.conftest import require_service

if TYPE_CHECKING:
    from skalds_redis import RedisCache

__all__ = ["redis_cache", "valkey_cache"]  # what the contract conftest star-imports

BACKEND_NAMES: list[tuple[str, str]] = [("cache", "redis"), ("cache", "valkey")]

REDIS_URL = os.environ.get("SKALDS_TEST_REDIS_URL", "redis://127.0.0.1:6379/0")
VALKEY_URL = os.environ.get("SKALDS_TEST_VALKEY_URL", "redis://127.0.0.1:6380/0")


def _where(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.hostname}:{parts.port}"


def connect_cache(name: str, url: str) -> RedisCache:
    """Return a cache on the server at ``url``, or skip (fail under CI) when it is down."""
    installed = importlib.util.find_spec("skalds_redis") is not None
    require_service("the skalds-redis adapter", installed, "this environment")
    from skalds_redis import RedisCache

    cache = RedisCache.from_url(url, socket_connect_timeout=1.0, socket_timeout=2.0)
    require_service(name, cache.ping(), _where(url))
    return cache


@pytest.fixture
def redis_cache() -> Iterator[RedisCache]:
    cache = connect_cache("Redis", REDIS_URL)
    yield cache
    cache.close()


@pytest.fixture
def valkey_cache() -> Iterator[RedisCache]:
    cache = connect_cache("Valkey", VALKEY_URL)
    yield cache
    cache.close()
