"""Skalds MongoDB adapter: the task store and the seed's ``MongoConfig``/``MongoProxy``.

Installing it registers the ``skalds.plugins`` entry point ``mongo``, which answers
``skalds_make_store`` for ``mongodb://`` and ``mongodb+srv://`` URLs. Works with
MongoDB and with FerretDB (whose updates are made atomic with per-task locks).

These names are imported on first use (:func:`skalds.utils.lazy.lazy_attributes`):
finding the plugin, as every node does, imports no client library.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from skalds.utils.lazy import lazy_attributes

if TYPE_CHECKING:
    from skalds_mongo.errors import MongoStoreError, TaskDocumentError, TaskLockTimeoutError
    from skalds_mongo.proxy import MongoConfig, MongoProxy
    from skalds_mongo.store import MongoStore

__all__ = [
    "MongoConfig",
    "MongoProxy",
    "MongoStore",
    "MongoStoreError",
    "TaskDocumentError",
    "TaskLockTimeoutError",
]

__getattr__ = lazy_attributes(
    __name__,
    {
        "MongoConfig": "skalds_mongo.proxy",
        "MongoProxy": "skalds_mongo.proxy",
        "MongoStore": "skalds_mongo.store",
        "MongoStoreError": "skalds_mongo.errors",
        "TaskDocumentError": "skalds_mongo.errors",
        "TaskLockTimeoutError": "skalds_mongo.errors",
    },
)
