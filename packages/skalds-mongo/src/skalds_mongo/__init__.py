"""Skalds MongoDB adapter: the task store and the seed's ``MongoConfig``/``MongoProxy``.

Installing it registers the ``skalds.plugins`` entry point ``mongo``, which answers
``skalds_make_store`` for ``mongodb://`` and ``mongodb+srv://`` URLs. Works with
MongoDB and with FerretDB (whose updates are made atomic with per-task locks).
"""

from __future__ import annotations

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
