"""The seed's Redis helper: ``skalds.proxy.redis.RedisConfig`` and ``RedisProxy``.

User scripts written against the original Skalds read and write its Redis keys
(``skalds:hash``, ``task:{id}:heartbeat``...) through this small API, so the names
and arguments stay. Two things differ on purpose: values come back as ``str``
(never bytes), and a server that cannot be reached raises
:class:`~skalds.errors.BackendUnavailableError` instead of silently returning
``None``, so a script can tell "no value" from "no Redis".

Hash fields written with a TTL expire one by one on every server: through
``HPEXPIRE`` where the server has it, emulated otherwise (exactly as the node's
cache does it, so both see the same fields).
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from types import TracebackType
from typing import cast

from pydantic import BaseModel, ConfigDict, Field

from skalds.ports.cache import HashDelete, HashSet, ListSet, Set
from skalds_redis import _field_ttl
from skalds_redis._client import (
    DEFAULT_CONNECT_TIMEOUT,
    DEFAULT_SOCKET_TIMEOUT,
    backend_errors,
    make_client,
    ttl_ms,
)
from skalds_redis.cache import RedisCache

__all__ = ["RedisConfig", "RedisProxy"]

_GLOB_SPECIAL = re.compile(r"([*?\[\]\\])")


class RedisConfig(BaseModel):
    """Where and how to connect (the seed's ``RedisConfig(host, port, password)``, extended).

    The password is left out of ``repr`` so a logged config never shows it.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    host: str = "localhost"
    port: int = Field(default=6379, ge=1, le=65535)
    password: str | None = Field(default=None, repr=False)
    db: int = Field(default=0, ge=0)
    username: str | None = None
    ssl: bool = Field(default=False, description="TLS (rediss://)")
    ssl_ca_file: str | None = Field(default=None, description="CA bundle for TLS")
    socket_timeout: float = Field(default=DEFAULT_SOCKET_TIMEOUT, gt=0)
    socket_connect_timeout: float = Field(default=DEFAULT_CONNECT_TIMEOUT, gt=0)

    def url(self) -> str:
        """Return the server's URL without credentials, e.g. ``redis://localhost:6379/0``."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        scheme = "rediss" if self.ssl else "redis"
        return f"{scheme}://{host}:{self.port}/{self.db}"


def _ttl(ttl: float | None) -> float | None:
    """The seed's convention: a TTL of 0 (or ``None``) means "never expires"."""
    return ttl if ttl else None


class RedisProxy:
    """Read and write Skalds' Redis keys from scripts and dashboards.

    Connects lazily (the first call) and reconnects by itself after an outage.

    Usage::

        proxy = RedisProxy(RedisConfig(host="localhost", port=6379))
        proxy.set_message("task:t1:heartbeat", "5", ttl=10)
        proxy.get_all_hash("skalds:hash")   # {"skald-1": "1718000000000", ...}

    Args:
        redis_config: connection settings (default: ``localhost:6379``, db 0).

    Raises:
        BackendUnavailableError: from any method, when the server cannot be reached
            or rejects the credentials (the message names the address).
    """

    def __init__(self, redis_config: RedisConfig | None = None) -> None:
        self.config = redis_config or RedisConfig()
        cfg = self.config
        client = make_client(
            cfg.url(),
            username=cfg.username or None,
            password=cfg.password or None,
            ssl_ca_certs=cfg.ssl_ca_file,
            socket_timeout=cfg.socket_timeout,
            socket_connect_timeout=cfg.socket_connect_timeout,
        )
        self.cache = RedisCache(client)
        self._client = client
        self._address = self.cache.address

    # -- hashes --------------------------------------------------------------------

    def set_hash(
        self, key: str, field: str, value: str | int | float, ttl: float | None = None
    ) -> None:
        """Set one field of hash ``key``; with ``ttl`` (seconds) that field alone expires."""
        self.cache.apply([HashSet(key, {field: str(value)}, _ttl(ttl))])

    def get_hash(self, key: str, field: str) -> str | None:
        """Return one live field of hash ``key`` (``None`` when missing or expired)."""
        return self.cache.hash_get(key, field)

    def get_all_hash(self, key: str) -> dict[str, str]:
        """Return every live field of hash ``key`` (``{}`` when missing)."""
        return self.cache.hash_get_all(key)

    def delete_hash(self, key: str, field: str) -> None:
        """Remove one field of hash ``key``."""
        self.cache.apply([HashDelete(key, (field,))])

    # -- lists ---------------------------------------------------------------------

    def push_list(self, key: str, value: str | Sequence[str], ttl: float | None = None) -> int:
        """Append one value, or every value of a list, to the end of list ``key``.

        Args:
            key: the list.
            value: a string, or a list of strings appended in order.
            ttl: when given, the whole list expires this many seconds from now.

        Returns:
            The list's length afterwards.
        """
        values = [value] if isinstance(value, str) else list(value)
        with backend_errors(self._address):
            pipe = self._client.pipeline(transaction=False)
            if values:
                pipe.rpush(key, *values)
            else:
                pipe.llen(key)
            seconds = _ttl(ttl)
            if seconds is not None:
                pipe.pexpire(key, ttl_ms(seconds))
            return int(pipe.execute()[0])

    def get_list(self, key: str, start: int = 0, end: int = -1) -> list[str]:
        """Return the items ``start``..``end`` (inclusive; default all) of list ``key``."""
        if (start, end) == (0, -1):
            return self.cache.list_get(key)
        with backend_errors(self._address):
            return cast("list[str]", self._client.lrange(key, start, end))

    def overwrite_list(self, key: str, values: Sequence[str], ttl: float | None = None) -> None:
        """Replace list ``key`` with ``values`` (an empty list deletes it)."""
        self.cache.apply([ListSet(key, list(values), _ttl(ttl))])

    # -- strings and keys ------------------------------------------------------------

    def set_message(self, key: str, value: str | int | float, ttl: float | None = None) -> None:
        """Set string ``key``; with ``ttl`` (seconds) it expires."""
        self.cache.apply([Set(key, str(value), _ttl(ttl))])

    def get_message(self, key: str) -> str | None:
        """Return string ``key`` (``None`` when missing or expired)."""
        return self.cache.get(key)

    def delete_key(self, key: str) -> int:
        """Delete ``key`` whatever its type; return 1 when it existed, else 0."""
        with backend_errors(self._address):
            pipe = self._client.pipeline(transaction=False)
            pipe.delete(key)
            pipe.delete(_field_ttl.deadlines(key))
            return int(pipe.execute()[0])

    def get_sub_keys(self, root_key: str) -> list[str]:
        """Return every key that starts with ``root_key`` (walks SCAN, never KEYS)."""
        pattern = _GLOB_SPECIAL.sub(r"\\\1", root_key) + "*"
        with backend_errors(self._address):
            found = self._client.scan_iter(match=pattern, count=1000)
            return sorted(k for k in found if not k.endswith(_field_ttl.DEADLINES_SUFFIX))

    # -- lifecycle -----------------------------------------------------------------

    def ping(self) -> bool:
        """Return True when the server answers."""
        return self.cache.ping()

    def close(self) -> None:
        """Close the connections (a later call reconnects)."""
        self.cache.close()

    def __enter__(self) -> RedisProxy:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"RedisProxy({self._address!r})"
