"""Build pymongo clients for Skalds and turn pymongo errors into Skalds errors.

Shared by the store and the seed's ``MongoProxy`` so both connect the same way: a
short server selection timeout (a closed port fails in seconds, never hangs) and the
same one-line, password-free messages that name the server's address.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl, unquote, urlsplit

import pymongo
from pymongo.errors import (
    ConfigurationError,
    ConnectionFailure,
    InvalidURI,
    OperationFailure,
    PyMongoError,
)

from skalds.errors import BackendUnavailableError, ConfigError, SkaldsError
from skalds_mongo.errors import MongoStoreError
from skalds_mongo.plugin import SCHEMES

__all__ = [
    "DEFAULT_DB_NAME",
    "DEFAULT_SERVER_SELECTION_TIMEOUT_MS",
    "SCHEMES",
    "address_of_url",
    "database_of_url",
    "make_client",
    "mongo_errors",
    "translate_error",
]

DEFAULT_DB_NAME = "skalds"
DEFAULT_SERVER_SELECTION_TIMEOUT_MS = 3000

_AUTH_FAILED = 18
_UNAUTHORIZED = 13


def _check_scheme(url: str) -> None:
    scheme = urlsplit(url).scheme
    if scheme not in SCHEMES:
        raise ConfigError(f"not a MongoDB URL (mongodb:// or mongodb+srv://): {scheme}://...")


def address_of_url(url: str) -> str:
    """Return the URL's hosts (``host:port[,host:port]``) without user or password."""
    netloc = urlsplit(url).netloc
    hosts = netloc.rpartition("@")[2]
    if urlsplit(url).scheme == "mongodb+srv":
        return f"mongodb+srv://{hosts}"
    return ",".join(h if ":" in h.rpartition("]")[2] else f"{h}:27017" for h in hosts.split(","))


def database_of_url(url: str) -> str | None:
    """Return the database named in the URL's path, ``None`` when there is none."""
    name = unquote(urlsplit(url).path.lstrip("/"))
    return name or None


def _url_options(url: str) -> set[str]:
    return {key.lower() for key, _ in parse_qsl(urlsplit(url).query, keep_blank_values=True)}


def make_client(
    url: str,
    *,
    server_selection_timeout_ms: int = DEFAULT_SERVER_SELECTION_TIMEOUT_MS,
    **options: Any,
) -> pymongo.MongoClient[dict[str, Any]]:
    """Return a client for ``url`` that has not connected yet.

    Options written in the URL (``?serverSelectionTimeoutMS=500``) win over the
    keyword arguments, which only fill the gaps.

    Args:
        url: ``mongodb://[user:password@]host[:port][/database][?options]`` or
            ``mongodb+srv://``.
        server_selection_timeout_ms: how long an operation waits for a reachable
            server before it fails with ``BackendUnavailableError``.
        **options: further ``pymongo.MongoClient`` keyword arguments.

    Raises:
        ConfigError: the URL is not a MongoDB URL or an option in it is invalid.
    """
    _check_scheme(url)
    given = _url_options(url)
    defaults: dict[str, Any] = {
        "serverSelectionTimeoutMS": server_selection_timeout_ms,
        "connectTimeoutMS": min(server_selection_timeout_ms, 5000),
        "appname": "skalds",
    }
    kwargs = {k: v for k, v in defaults.items() if k.lower() not in given}
    kwargs.update(options)
    try:
        return pymongo.MongoClient(url, connect=False, **kwargs)
    except (ConfigurationError, InvalidURI, ValueError, TypeError) as exc:
        raise ConfigError(f"invalid MongoDB URL for {address_of_url(url)}: {exc}") from exc


def _one_line(text: str) -> str:
    return " ".join(text.split())


def _short_reason(exc: PyMongoError, address: str) -> str:
    # pymongo appends its timeouts and the whole topology description: keep the cause.
    text = str(exc).split(" (configured timeouts", 1)[0].split(", Timeout:", 1)[0]
    for host in address.split(","):
        text = text.removeprefix(f"{host}: ")
    return _one_line(text)


def _hint_for_login(message: str) -> str:
    if "Unsupported authentication mechanism" in message:
        # FerretDB without authentication only offers PLAIN (and does not check it).
        return (
            " (a server without authentication, e.g. FerretDB: leave user and password"
            " out of the URL, or add ?authMechanism=PLAIN)"
        )
    return " (check the user, password and authSource in the URL)"


def translate_error(exc: PyMongoError, address: str) -> SkaldsError:
    """Return the Skalds error that says what ``exc`` means for the user.

    Unreachable or timed out: ``BackendUnavailableError``; a refused login or a
    missing right: ``ConfigError``; anything else: ``MongoStoreError``.
    """
    if isinstance(exc, ConnectionFailure) or getattr(exc, "timeout", False):
        return BackendUnavailableError(
            f"MongoDB store unreachable at {address}: {_short_reason(exc, address)}"
        )
    if isinstance(exc, OperationFailure):
        message = _one_line(str((exc.details or {}).get("errmsg") or exc))
        if exc.code == _AUTH_FAILED:
            return ConfigError(
                f"MongoDB at {address} refused the login: {message}{_hint_for_login(message)}"
            )
        if exc.code == _UNAUTHORIZED:
            return ConfigError(
                f"MongoDB at {address} refused the operation: {message}"
                " (give a user and password in the URL)"
            )
        return MongoStoreError(f"MongoDB at {address}: {message}")
    if isinstance(exc, ConfigurationError):
        return ConfigError(f"MongoDB at {address}: {_one_line(str(exc))}")
    return MongoStoreError(f"MongoDB at {address}: {_one_line(str(exc))}")


@contextlib.contextmanager
def mongo_errors(address: str) -> Iterator[None]:
    """Raise pymongo errors from the block as the Skalds errors of :func:`translate_error`."""
    try:
        yield
    except PyMongoError as exc:
        raise translate_error(exc, address) from exc
