"""Seed import path ``skalds.proxy.redis``: re-exported from the ``skalds-redis`` adapter.

Without the adapter installed, importing this module raises an ``ImportError`` that
says what to install (``pip install "skalds[redis]"``).
"""

from __future__ import annotations

from skalds.errors import MissingExtraError

try:
    from skalds_redis.proxy import RedisConfig, RedisProxy
except ImportError as exc:  # the adapter (or its client library) is not installed
    raise MissingExtraError("Redis", "redis") from exc

__all__ = ["RedisConfig", "RedisProxy"]
