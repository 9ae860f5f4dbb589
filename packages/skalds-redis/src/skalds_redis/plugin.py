"""The adapter's hook implementations: a Redis/Valkey cache for ``redis://`` and ``rediss://``.

Registered under the ``skalds.plugins`` entry-point group, so installing
``skalds-redis`` (``pip install "skalds[redis]"``) is all a node needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from skalds.hookspecs import hookimpl

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds_redis.cache import RedisCache

__all__ = ["SCHEMES", "skalds_make_cache"]

SCHEMES = ("redis", "rediss")
"""The cache URLs this adapter answers (checked before the client library is imported)."""


@hookimpl
def skalds_make_cache(url: str, config: SkaldConfig) -> RedisCache | None:
    """Build a :class:`RedisCache` for ``redis://`` and ``rediss://`` URLs, else ``None``.

    The URL's own credentials and database win; the config's ``redis_username``,
    ``redis_password`` and ``redis_db`` fill what the URL leaves out (so
    ``SKALDS_CACHE=redis://host`` plus ``REDIS_PASSWORD`` works), and a
    ``redis_ssl_ca_file`` setting, when the config has one, is the CA for TLS.
    Connecting happens on first use, so a server that is down does not stop the
    node from being built (it waits on :meth:`RedisCache.ping`).
    """
    parts = urlsplit(url)
    if parts.scheme not in SCHEMES:
        return None
    from skalds_redis.cache import RedisCache  # here: finding the plugin imports no client

    has_db = parts.path.strip("/") != "" or "db=" in parts.query
    return RedisCache.from_url(
        url,
        username=None if parts.username else (config.redis_username or None),
        password=None if parts.password else (config.redis_password or None),
        db=None if has_db else config.redis_db,
        ssl_ca_certs=getattr(config, "redis_ssl_ca_file", None),
    )
