"""Skalds Redis adapter: the cache port on Redis or Valkey, and the seed's ``RedisProxy``.

Installing the package registers :mod:`skalds_redis.plugin` under the
``skalds.plugins`` entry point, which answers for ``redis://`` and ``rediss://``
cache URLs; ``skalds.proxy.redis`` re-exports :mod:`skalds_redis.proxy`.

These names are imported on first use (:func:`skalds.utils.lazy.lazy_attributes`):
finding the plugin, as every node does, imports no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skalds.utils.lazy import lazy_attributes

if TYPE_CHECKING:
    from skalds_redis.cache import RedisCache
    from skalds_redis.proxy import RedisConfig, RedisProxy

__all__ = ["RedisCache", "RedisConfig", "RedisProxy"]

__getattr__ = lazy_attributes(
    __name__,
    {
        "RedisCache": "skalds_redis.cache",
        "RedisConfig": "skalds_redis.proxy",
        "RedisProxy": "skalds_redis.proxy",
    },
)
