"""Build redis-py clients for Skalds and turn their connection errors into Skalds errors.

Kept apart from the cache and the proxy so both connect the same way: the same
timeouts (a closed port or a black-holed host fails in seconds, never hangs), the
same short retry (one quick reconnect after a server restart), and the same
one-line, password-free error messages.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import urlsplit

import redis
from redis.backoff import ExponentialBackoff
from redis.retry import Retry

from skalds.errors import BackendUnavailableError, ConfigError
from skalds_redis.plugin import SCHEMES

__all__ = [
    "DEFAULT_CONNECT_TIMEOUT",
    "DEFAULT_SOCKET_TIMEOUT",
    "SCHEMES",
    "UNAVAILABLE_ERRORS",
    "address_of",
    "address_of_url",
    "backend_errors",
    "make_client",
    "ttl_ms",
]

DEFAULT_CONNECT_TIMEOUT = 2.0
DEFAULT_SOCKET_TIMEOUT = 5.0

# Errors that mean "the server cannot be used right now" (refused, timed out, closed
# the socket, still loading its data, rejected our credentials, is not Redis at all).
UNAVAILABLE_ERRORS: tuple[type[Exception], ...] = (
    redis.ConnectionError,
    redis.TimeoutError,
    redis.exceptions.InvalidResponse,
)


def make_client(
    url: str,
    *,
    username: str | None = None,
    password: str | None = None,
    db: int | None = None,
    ssl_ca_certs: str | None = None,
    socket_timeout: float | None = None,
    socket_connect_timeout: float | None = None,
    **options: Any,
) -> redis.Redis:
    """Return a client for ``redis://`` or ``rediss://`` ``url`` (decoded ``str`` replies).

    Values written in the URL (credentials, ``/db``, ``?socket_timeout=``,
    ``?ssl_ca_certs=``) win over the keyword arguments, which fill the gaps; this is
    how a config's ``redis_password`` reaches a URL that names only the host.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db][?option=value...]``, or
            ``rediss://`` for TLS.
        username: ACL user name when the URL has none.
        password: password when the URL has none.
        db: database number when the URL has none.
        ssl_ca_certs: CA bundle that signs the server's certificate (``rediss://`` only).
        socket_timeout: seconds to wait for a reply.
        socket_connect_timeout: seconds to wait for the TCP (and TLS) handshake.
        **options: further ``redis.Redis`` keyword arguments.

    Raises:
        ConfigError: the URL is not a Redis URL or a value in it is invalid.
    """
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"not a Redis URL (redis:// or rediss://): {scheme}://...")
    kwargs: dict[str, Any] = {
        "decode_responses": True,
        "socket_timeout": DEFAULT_SOCKET_TIMEOUT if socket_timeout is None else socket_timeout,
        "socket_connect_timeout": (
            DEFAULT_CONNECT_TIMEOUT if socket_connect_timeout is None else socket_connect_timeout
        ),
        # One quick retry: enough to replace a pooled socket that a server restart
        # closed, short enough that an outage is reported at once.
        "retry": Retry(ExponentialBackoff(cap=0.2, base=0.05), retries=1),
        **options,
    }
    if username is not None:
        kwargs["username"] = username
    if password is not None:
        kwargs["password"] = password
    if db is not None:
        kwargs["db"] = db
    if ssl_ca_certs is not None and scheme == "rediss":
        kwargs["ssl_ca_certs"] = ssl_ca_certs
    try:
        return redis.Redis.from_url(url, **kwargs)
    except ValueError as exc:
        raise ConfigError(f"invalid Redis URL {address_of_url(url)}: {exc}") from exc


def ttl_ms(ttl: float) -> int:
    """Milliseconds for a positive TTL in seconds (at least 1: Redis rejects 0)."""
    return max(1, round(ttl * 1000))


def address_of_url(url: str) -> str:
    """Return ``scheme://host:port`` of a URL, never its credentials."""
    parts = urlsplit(url)
    try:
        port = parts.port or 6379
    except ValueError:
        port = 6379
    return f"{parts.scheme}://{parts.hostname or 'localhost'}:{port}"


def address_of(client: redis.Redis) -> str:
    """Return where ``client`` connects, as ``redis://host:port/db`` (no credentials)."""
    kwargs = client.connection_pool.connection_kwargs
    pool_class = client.connection_pool.connection_class
    scheme = "rediss" if issubclass(pool_class, redis.SSLConnection) else "redis"
    if "path" in kwargs:
        return f"unix://{kwargs['path']}"
    host = kwargs.get("host", "localhost")
    port = kwargs.get("port", 6379)
    return f"{scheme}://{host}:{port}/{kwargs.get('db', 0)}"


def _one_line(exc: BaseException) -> str:
    text = " ".join(str(exc).split())
    return text or type(exc).__name__


@contextlib.contextmanager
def backend_errors(address: str) -> Iterator[None]:
    """Raise :class:`BackendUnavailableError` naming ``address`` when Redis cannot be used.

    Other Redis errors (a wrong type, a command the user may not run) pass through
    unchanged: they are bugs or configuration to fix, not an outage to wait out.
    """
    try:
        yield
    except redis.AuthenticationError as exc:
        raise BackendUnavailableError(
            f"Redis at {address} rejected the credentials: {_one_line(exc)}"
        ) from exc
    except redis.exceptions.InvalidResponse as exc:
        # Something listens there, but it does not speak RESP (a proxy, another service).
        raise BackendUnavailableError(
            f"Redis at {address} did not answer as a Redis server: {_one_line(exc)}"
        ) from exc
    except UNAVAILABLE_ERRORS as exc:
        raise BackendUnavailableError(
            f"Redis at {address} is unreachable: {_one_line(exc)}"
        ) from exc
