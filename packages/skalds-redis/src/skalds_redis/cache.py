"""The cache port on Redis or Valkey: one pipeline round trip per batch of writes.

A node reports once a second (its registry entry, capacity, every live task's
heartbeat): hundreds of writes that must cost one network round trip, so
:meth:`RedisCache.apply` queues the whole batch in a non-transactional pipeline.

Per-field hash expiry (``HashSet(..., ttl=)``, used by ``skalds:hash``) takes the
server's own ``HPEXPIRE`` where it exists (Redis 7.4+, Valkey 9) and is emulated
on older servers (see :mod:`skalds_redis._field_ttl`). Which one applies is found
out once per cache by asking the server, never by parsing its version string.
"""

from __future__ import annotations

import threading
import uuid
from collections.abc import Sequence
from typing import Any, cast

import redis

from skalds.ports.cache import Cache, CacheOp, Delete, HashDelete, HashSet, ListSet, Set
from skalds_redis import _field_ttl
from skalds_redis._client import (
    UNAVAILABLE_ERRORS,
    address_of,
    backend_errors,
    make_client,
    ttl_ms,
)

__all__ = ["RedisCache"]


def _is_wrong_type(exc: redis.ResponseError) -> bool:
    return str(exc).startswith("WRONGTYPE")


class RedisCache(Cache):
    """:class:`~skalds.ports.cache.Cache` on a Redis or Valkey server.

    Thread-safe (redis-py's connection pool); survives server restarts without being
    rebuilt: a call during an outage raises
    :class:`~skalds.errors.BackendUnavailableError`, the next call after it
    reconnects.

    Args:
        client: a ``redis.Redis`` built with ``decode_responses=True`` (see
            :meth:`from_url`); the cache owns it and closes it in :meth:`close`.
        native_field_ttl: ``True`` to use ``HPEXPIRE``, ``False`` to emulate
            per-field expiry, ``None`` (default) to ask the server on first use.
    """

    def __init__(self, client: redis.Redis, *, native_field_ttl: bool | None = None) -> None:
        self._client = client
        self._address = address_of(client)
        self._native = native_field_ttl
        self._detect_lock = threading.Lock()

    @classmethod
    def from_url(
        cls, url: str, *, native_field_ttl: bool | None = None, **options: Any
    ) -> RedisCache:
        """Build a cache for ``redis://`` or ``rediss://`` ``url``; connects on first use.

        Args:
            url: ``redis://[[user]:password@]host[:port][/db][?socket_timeout=...]``.
            native_field_ttl: see the class.
            **options: ``username``, ``password``, ``db``, ``ssl_ca_certs``,
                ``socket_timeout``, ``socket_connect_timeout`` or any ``redis.Redis``
                argument (the URL's own values win).

        Raises:
            ConfigError: the URL is not a usable Redis URL.
        """
        return cls(make_client(url, **options), native_field_ttl=native_field_ttl)

    @property
    def address(self) -> str:
        """Where the cache connects, without credentials (used in error messages)."""
        return self._address

    @property
    def client(self) -> redis.Redis:
        """The underlying redis-py client (for tools; Skalds itself uses the port)."""
        return self._client

    @property
    def native_field_ttl(self) -> bool | None:
        """Whether hash fields expire through ``HPEXPIRE``; ``None`` until first asked."""
        return self._native

    def detect_field_ttl(self) -> bool:
        """Return (asking the server once) whether it has per-field hash expiry.

        Raises:
            BackendUnavailableError: the server cannot be reached.
        """
        with backend_errors(self._address):
            return self._field_ttl_is_native()

    def _field_ttl_is_native(self) -> bool:
        if self._native is None:
            with self._detect_lock:
                if self._native is None:
                    self._native = self._probe_hpexpire()
        return self._native

    def _probe_hpexpire(self) -> bool:
        # Try the command itself on a key that cannot exist: a server that knows it
        # answers "no such key" (-2) and changes nothing; an older one says
        # "unknown command". Unlike COMMAND INFO this also works for ACL users that
        # may not run COMMAND. Any refusal means "emulate": the emulation is correct
        # on every server, only less direct.
        probe = f"skalds:__probe__:{uuid.uuid4().hex}"
        try:
            self._client.hpexpire(probe, 1, "f")
        except redis.ResponseError:
            return False
        return True

    # -- writes ----------------------------------------------------------------------

    def apply(self, ops: Sequence[CacheOp]) -> None:
        """Apply the writes in order, in one pipeline round trip.

        Raises:
            BackendUnavailableError: the server cannot be reached.
            redis.ResponseError: a write hit a key of another type (``WRONGTYPE``).
        """
        if not ops:
            return
        with backend_errors(self._address):
            native = self._field_ttl_is_native()
            pipe = self._client.pipeline(transaction=False)
            for op in ops:
                self._queue(pipe, op, native)
            pipe.execute()

    def _queue(self, pipe: redis.client.Pipeline, op: CacheOp, native: bool) -> None:
        if isinstance(op, Set):
            if op.ttl is None:
                pipe.set(op.key, op.value)
            elif op.ttl > 0:
                pipe.set(op.key, op.value, px=ttl_ms(op.ttl))
            else:  # already expired
                pipe.delete(op.key)
        elif isinstance(op, Delete):
            if op.keys:
                companions = () if native else tuple(map(_field_ttl.deadlines, op.keys))
                pipe.delete(*op.keys, *companions)
        elif isinstance(op, HashSet):
            self._queue_hash_set(pipe, op, native)
        elif isinstance(op, HashDelete):
            self._queue_hash_delete(pipe, op.key, op.fields, native)
        elif isinstance(op, ListSet):
            pipe.delete(op.key)
            if op.items and (op.ttl is None or op.ttl > 0):
                pipe.rpush(op.key, *op.items)
                if op.ttl is not None:
                    pipe.pexpire(op.key, ttl_ms(op.ttl))
        else:  # pragma: no cover - guarded by the type checker
            raise TypeError(f"unknown cache operation {op!r}")

    def _queue_hash_set(self, pipe: redis.client.Pipeline, op: HashSet, native: bool) -> None:
        if not op.fields:
            return
        if op.ttl is not None and op.ttl <= 0:  # already expired
            self._queue_hash_delete(pipe, op.key, tuple(op.fields), native)
            return
        pairs = [item for field in op.fields.items() for item in field]
        if native:
            # HSET clears a field's TTL, so a write without ttl makes it permanent.
            pipe.hset(op.key, items=pairs)
            if op.ttl is not None:
                pipe.hpexpire(op.key, ttl_ms(op.ttl), *op.fields)
        else:
            ttl = "" if op.ttl is None else str(ttl_ms(op.ttl))
            pipe.eval(_field_ttl.HASH_SET, 2, op.key, _field_ttl.deadlines(op.key), ttl, *pairs)

    def _queue_hash_delete(
        self, pipe: redis.client.Pipeline, key: str, fields: Sequence[str], native: bool
    ) -> None:
        if not fields:
            return
        if native:
            pipe.hdel(key, *fields)
        else:
            pipe.eval(_field_ttl.HASH_DELETE, 2, key, _field_ttl.deadlines(key), *fields)

    # -- reads -----------------------------------------------------------------------

    def get(self, key: str) -> str | None:
        """Return a string value, ``None`` when missing, expired or not a string."""
        with backend_errors(self._address):
            try:
                return cast("str | None", self._client.get(key))
            except redis.ResponseError as exc:
                if _is_wrong_type(exc):
                    return None
                raise

    def list_get(self, key: str) -> list[str]:
        """Return a list's items, ``[]`` when missing, expired or not a list."""
        with backend_errors(self._address):
            try:
                return cast("list[str]", self._client.lrange(key, 0, -1))
            except redis.ResponseError as exc:
                if _is_wrong_type(exc):
                    return []
                raise

    def hash_get_all(self, key: str) -> dict[str, str]:
        """Return the live fields of a hash, ``{}`` when missing or not a hash."""
        with backend_errors(self._address):
            if not self._field_ttl_is_native():
                flat = cast(
                    "list[str]",
                    self._client.eval(_field_ttl.HASH_GET_ALL, 2, key, _field_ttl.deadlines(key)),
                )
                return dict(zip(flat[::2], flat[1::2], strict=True))
            try:
                return cast("dict[str, str]", self._client.hgetall(key))
            except redis.ResponseError as exc:
                if _is_wrong_type(exc):
                    return {}
                raise

    def hash_get(self, key: str, field: str) -> str | None:
        """Return one live field of a hash (not in the port: for :class:`RedisProxy`)."""
        with backend_errors(self._address):
            if not self._field_ttl_is_native():
                script = _field_ttl.HASH_GET
                value = self._client.eval(script, 2, key, _field_ttl.deadlines(key), field)
                return cast("str | None", value)
            try:
                return cast("str | None", self._client.hget(key, field))
            except redis.ResponseError as exc:
                if _is_wrong_type(exc):
                    return None
                raise

    # -- lifecycle -------------------------------------------------------------------

    def ping(self) -> bool:
        """Return True when the server answers, False when it cannot be reached."""
        try:
            return bool(self._client.ping())
        except UNAVAILABLE_ERRORS:
            return False

    def close(self) -> None:
        """Close the pooled connections (a later call would simply reconnect)."""
        self._client.close()

    def __repr__(self) -> str:
        mode = {None: "undetected", True: "native", False: "emulated"}[self._native]
        return f"RedisCache({self._address!r}, field_ttl={mode})"
