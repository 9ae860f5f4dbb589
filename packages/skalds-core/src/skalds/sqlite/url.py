"""``sqlite:`` URLs and the database file paths they name."""

from __future__ import annotations

import os
from urllib.parse import quote, unquote, urlsplit

from skalds.errors import ConfigError

__all__ = ["SCHEME", "path_of_url", "url_of_path"]

SCHEME = "sqlite"


def path_of_url(url: str) -> str | None:
    """Return the database file a ``sqlite:`` URL names; ``None`` for other schemes.

    ``sqlite:///abs/path.db`` names an absolute path, ``sqlite:relative.db`` a path
    relative to the working directory. ``%``-escapes are decoded (``%23`` is ``#``).

    Args:
        url: a backend URL.

    Returns:
        The file path, or ``None`` when ``url`` is not a ``sqlite:`` URL.

    Raises:
        ConfigError: a ``sqlite:`` URL with a host, a query or no path.
    """
    parts = urlsplit(url)
    if parts.scheme != SCHEME:
        return None
    usage = "use sqlite:///absolute/path.db or sqlite:relative/path.db"
    if parts.netloc:
        raise ConfigError(f"store URL {url!r}: a SQLite database has no host; {usage}")
    if parts.query or parts.fragment:
        raise ConfigError(
            f"store URL {url!r}: unexpected '?' or '#' (write them as %3F and %23); {usage}"
        )
    if not parts.path:
        raise ConfigError(f"store URL {url!r}: no database file; {usage}")
    return unquote(parts.path)


def url_of_path(path: str | os.PathLike[str]) -> str:
    """Return the ``sqlite:///`` URL of ``path``, made absolute against the working directory.

    Args:
        path: the database file (``~`` is expanded).

    Returns:
        A URL that :func:`path_of_url` turns back into the absolute path.
    """
    absolute = os.path.abspath(os.path.expanduser(os.fspath(path)))
    return f"{SCHEME}://{quote(absolute, safe='/')}"
