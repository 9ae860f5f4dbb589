"""The adapter's hook implementation: a MongoDB task store for ``mongodb://`` URLs.

Registered under the ``skalds.plugins`` entry-point group, so installing
``skalds-mongo`` (``pip install "skalds[mongo]"``) is all a node or controller needs.
"""

from __future__ import annotations

from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from skalds.hookspecs import hookimpl
from skalds_mongo._connection import SCHEMES
from skalds_mongo.store import MongoStore

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig

__all__ = ["skalds_make_store"]


@hookimpl
def skalds_make_store(url: str, config: SkaldConfig) -> MongoStore | None:
    """Build a :class:`MongoStore` for ``mongodb://`` and ``mongodb+srv://`` URLs, else ``None``.

    The database is the config's ``db_name`` when it was set (argument or
    ``DB_NAME``), else the one in the URL's path, else ``skalds``. Nothing connects
    until first use, so a server that is down does not stop the node from being
    built (it waits on :meth:`MongoStore.ping`). A short server selection timeout
    can be changed in the URL: ``?serverSelectionTimeoutMS=1000``.
    """
    if urlsplit(url).scheme not in SCHEMES:
        return None
    explicit = config.db_name if "db_name" in config.model_fields_set else None
    return MongoStore(url, db_name=explicit)
