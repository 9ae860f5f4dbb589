"""The SQLite task store as a default plugin: it answers ``sqlite:`` store URLs.

``trylast`` like the in-memory defaults, so an installed plugin that wants
``sqlite:`` URLs for itself answers first.
"""

from __future__ import annotations

from skalds.hookspecs import hookimpl
from skalds.sqlite.store import SqliteStore
from skalds.sqlite.url import path_of_url

__all__ = ["skalds_make_store"]


@hookimpl(trylast=True)
def skalds_make_store(url: str) -> SqliteStore | None:
    """Open a :class:`SqliteStore` for ``sqlite:///abs/path.db`` or ``sqlite:relative.db``.

    Each call opens the file anew (a store per node or controller); the file is
    created when missing, its directory is not.
    """
    path = path_of_url(url)
    return None if path is None else SqliteStore(path)
