"""The SQLite task store: tasks kept in one local file, across restarts.

Standard library only. ``skalds up --db PATH`` (or the store URL
``sqlite:///abs/path.db``) uses it in place of the in-memory store.
"""

from skalds.sqlite.store import SqliteStore
from skalds.sqlite.url import path_of_url, url_of_path

__all__ = ["SqliteStore", "path_of_url", "url_of_path"]
