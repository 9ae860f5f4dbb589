"""Skalds Redis adapter: the cache port on Redis or Valkey, and the seed's ``RedisProxy``.

Installing the package registers :mod:`skalds_redis.plugin` under the
``skalds.plugins`` entry point, which answers for ``redis://`` and ``rediss://``
cache URLs; ``skalds.proxy.redis`` re-exports :mod:`skalds_redis.proxy`.
"""

from __future__ import annotations

from skalds_redis.cache import RedisCache
from skalds_redis.proxy import RedisConfig, RedisProxy

__all__ = ["RedisCache", "RedisConfig", "RedisProxy"]
