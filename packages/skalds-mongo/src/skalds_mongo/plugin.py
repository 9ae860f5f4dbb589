"""The adapter's hook implementation: a MongoDB task store for ``mongodb://`` URLs.

Registered under the ``skalds.plugins`` entry-point group, so installing
``skalds-mongo`` (``pip install "skalds[mongo]"``) is all a node or controller needs.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING
from urllib.parse import urlsplit

from skalds.errors import ConfigError
from skalds.hookspecs import hookimpl

if TYPE_CHECKING:
    from skalds.config.skald_config import SkaldConfig
    from skalds_mongo.store import MongoStore

__all__ = ["SCHEMES", "WRITE_LOCKS_ENV", "skalds_make_store", "write_locks_setting"]

SCHEMES = ("mongodb", "mongodb+srv")
"""The store URLs this adapter answers (checked before the client library is imported)."""

WRITE_LOCKS_ENV = "MONGO_WRITE_LOCKS"
_WRITE_LOCKS = {"auto": None, "on": True, "off": False}


def write_locks_setting() -> bool | None:
    """``MONGO_WRITE_LOCKS``: ``auto`` (default: locks on FerretDB only), ``on`` or ``off``.

    ``off`` is for a FerretDB that applies each write atomically, as MongoDB does
    (the one ``scripts/services`` builds: see its ``atomic-writes.patch``); on a
    stock FerretDB it would let two compare-and-sets of one task both win.

    Raises:
        ConfigError: any other value.
    """
    raw = os.environ.get(WRITE_LOCKS_ENV, "auto").strip().lower() or "auto"
    if raw not in _WRITE_LOCKS:
        raise ConfigError(
            f"{WRITE_LOCKS_ENV}={raw!r}: use one of {', '.join(_WRITE_LOCKS)} "
            "(auto: lock on FerretDB, not on MongoDB)"
        )
    return _WRITE_LOCKS[raw]


@hookimpl
def skalds_make_store(url: str, config: SkaldConfig) -> MongoStore | None:
    """Build a :class:`MongoStore` for ``mongodb://`` and ``mongodb+srv://`` URLs, else ``None``.

    The database is the config's ``db_name`` when it was set (argument or
    ``DB_NAME``), else the one in the URL's path, else ``skalds``. Nothing connects
    until first use, so a server that is down does not stop the node from being
    built (it waits on :meth:`MongoStore.ping`). A short server selection timeout
    can be changed in the URL: ``?serverSelectionTimeoutMS=1000``. Per-task write
    locks follow ``MONGO_WRITE_LOCKS`` (:func:`write_locks_setting`).
    """
    if urlsplit(url).scheme not in SCHEMES:
        return None
    from skalds_mongo.store import MongoStore  # here: finding the plugin imports no client

    explicit = config.db_name if "db_name" in config.model_fields_set else None
    return MongoStore(url, db_name=explicit, write_locks=write_locks_setting())
